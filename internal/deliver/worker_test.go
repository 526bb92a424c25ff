package deliver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/deliver/email"
	"github.com/otpd/otpd/internal/deliver/smpp"
	"github.com/otpd/otpd/internal/deliver/smshttp"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/storetest"
	"github.com/otpd/otpd/internal/testlog"
	"github.com/otpd/otpd/internal/testpg"
	"github.com/otpd/otpd/internal/testsmsc"
	"github.com/otpd/otpd/internal/testsmtp"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

// t0 is where every fake clock starts.
var t0 = time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)

// eachStore runs fn once per backend (SQLite, and PostgreSQL where installed), as subtests.
func eachStore(t *testing.T, fn func(t *testing.T, st store.Store)) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		fn(t, storetest.Open(t, b.NewDSN(t)))
	})
}

// fixture is one tenant in a real store with an SMTP server and a keyring.
type fixture struct {
	st     store.Store
	kr     *keys.Keyring
	clk    *clock.Fake
	smtp   *testsmtp.Server
	sender *email.Sender
	tenant string
	logs   *syncBuffer
}

func newFixture(t *testing.T, st store.Store, o testsmtp.Options) *fixture {
	t.Helper()
	key := bytes.Repeat([]byte{7}, keys.MasterKeySize)
	kr, err := keys.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, kr: kr, clk: clock.NewFake(t0), smtp: testsmtp.Start(t, o), logs: &syncBuffer{}}
	f.sender, err = email.New(email.Config{URL: f.smtp.URL(), From: "otpd <no-reply@otpd.example>", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tn := &store.Tenant{ID: uuid.Must(uuid.NewV7()).String(), Name: "t-" + t.Name(), CreatedAt: t0}
	if err := st.CreateTenant(context.Background(), tn); err != nil {
		t.Fatal(err)
	}
	f.tenant = tn.ID
	return f
}

// worker returns a worker on f's store with the given owner. Zero fields keep their defaults.
func (f *fixture) worker(owner string) *deliver.Worker {
	return &deliver.Worker{
		Outbox:  f.st,
		Keys:    f.kr,
		Senders: deliver.Registry{"email": f.sender},
		Clock:   f.clk,
		Owner:   owner,
		Logger:  slog.New(slog.NewTextHandler(f.logs, nil)),
	}
}

// enqueue commits a challenge and its sealed message the way the engine does, and returns the
// message.
func (f *fixture) enqueue(t *testing.T, channel, to, code string, maxAttempts int) *store.Message {
	t.Helper()
	ctx := context.Background()
	now := f.clk.Now()
	c := &store.Challenge{
		ID: uuid.Must(uuid.NewV7()).String(), TenantID: f.tenant, Channel: channel, Recipient: to,
		CodeLength: len(code), Status: store.StatusPending, MaxAttempts: 3, Sends: 1, MaxSends: 5,
		LastSentAt: now, TTL: 10 * time.Minute, Delivery: store.DeliveryQueued,
		CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
	}
	c.CodeHash = f.kr.HashCode(c.ID, code)
	content := deliver.Content{Subject: "Your verification code",
		Text: "Your verification code is " + code + ".",
		HTML: "<p>Your verification code is <b>" + code + "</b>.</p>"}
	plain, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	m := &store.Message{
		ID: uuid.Must(uuid.NewV7()).String(), TenantID: f.tenant, ChallengeID: c.ID, Channel: channel,
		Recipient: to, Status: store.MsgQueued, MaxAttempts: maxAttempts,
		NextAttemptAt: now, CreatedAt: now, UpdatedAt: now,
	}
	if m.Body, err = f.kr.Seal(plain, []byte("messages:"+m.ID)); err != nil {
		t.Fatal(err)
	}
	err = f.st.InTx(ctx, func(q store.Queries) error {
		if err := q.CreateChallenge(ctx, c); err != nil {
			return err
		}
		return q.CreateMessage(ctx, m)
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *fixture) message(t *testing.T, id string) *store.Message {
	t.Helper()
	m, err := f.st.GetMessage(context.Background(), f.tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *fixture) delivery(t *testing.T, m *store.Message) string {
	t.Helper()
	c, err := f.st.GetChallenge(context.Background(), f.tenant, m.ChallengeID)
	if err != nil {
		t.Fatal(err)
	}
	return c.Delivery
}

func (f *fixture) attempts(t *testing.T, id string) []store.MessageAttempt {
	t.Helper()
	as, err := f.st.ListAttempts(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return as
}

func runOnce(t *testing.T, w *deliver.Worker, want int) {
	t.Helper()
	n, err := w.RunOnce(context.Background())
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	if n != want {
		t.Fatalf("RunOnce claimed %d, want %d", n, want)
	}
}

// noSecrets fails if the code appears in the worker's log or in the stored error texts.
func (f *fixture) noSecrets(t *testing.T, code string, msgs ...*store.Message) {
	t.Helper()
	if testlog.Leaks(f.logs.String(), code) {
		t.Errorf("log contains the code:\n%s", f.logs.String())
	}
	for _, m := range msgs {
		got := f.message(t, m.ID)
		if strings.Contains(got.LastError, code) {
			t.Errorf("last_error contains the code: %q", got.LastError)
		}
		for _, a := range f.attempts(t, m.ID) {
			if strings.Contains(a.Error, code) {
				t.Errorf("attempt error contains the code: %q", a.Error)
			}
		}
	}
}

func TestWorkerDelivers(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, testsmtp.Options{})
		reg := prometheus.NewRegistry()
		w := f.worker("w1")
		w.Metrics = deliver.NewMetrics(reg)
		m := f.enqueue(t, "email", "alice@example.com", "482913", 5)

		runOnce(t, w, 1)
		got := f.smtp.WaitFor(t, "alice@example.com", 5*time.Second)
		if !strings.Contains(got.Text, "482913") || !strings.Contains(got.HTML, "<b>482913</b>") {
			t.Errorf("received text %q html %q", got.Text, got.HTML)
		}
		if id := got.Header.Get("Message-ID"); id != "<"+m.ID+"@otpd.example>" {
			t.Errorf("Message-ID = %q", id)
		}

		after := f.message(t, m.ID)
		if after.Status != store.MsgSent || after.Attempts != 1 || after.SentAt == nil {
			t.Errorf("message = status %q attempts %d sent_at %v", after.Status, after.Attempts, after.SentAt)
		}
		if after.Body != nil {
			t.Errorf("body not wiped after sending: %d bytes", len(after.Body))
		}
		if after.ProviderMessageID != m.ID+"@otpd.example" {
			t.Errorf("provider message id = %q", after.ProviderMessageID)
		}
		if d := f.delivery(t, m); d != store.DeliverySent {
			t.Errorf("challenge delivery = %q", d)
		}
		as := f.attempts(t, m.ID)
		if len(as) != 1 || as[0].Outcome != "ok" || as[0].FinishedAt == nil {
			t.Errorf("attempts = %+v", as)
		}
		runOnce(t, w, 0)
		if n := len(f.smtp.Messages()); n != 1 {
			t.Errorf("%d mails, want 1", n)
		}
		if !strings.Contains(f.logs.String(), "a***@example.com") || strings.Contains(f.logs.String(), "alice@") {
			t.Errorf("log does not mask the recipient:\n%s", f.logs.String())
		}
		f.noSecrets(t, "482913", m)
		if v := counter(t, reg, "otpd_delivery_attempts_total", "email", "smtp", "sent"); v != 1 {
			t.Errorf("sent counter = %v", v)
		}
	})
}

func TestWorkerRetriesWithBackoff(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, testsmtp.Options{FailFirst: 1})
		w := f.worker("w1")
		m := f.enqueue(t, "email", "bob@example.com", "105774", 5)

		runOnce(t, w, 1)
		after := f.message(t, m.ID)
		if after.Status != store.MsgQueued || after.Attempts != 1 || after.Body == nil {
			t.Fatalf("after 451: status %q attempts %d body %d bytes", after.Status, after.Attempts, len(after.Body))
		}
		if want := t0.Add(2 * time.Second); !after.NextAttemptAt.Equal(want) {
			t.Errorf("next attempt at %v, want %v (2s backoff)", after.NextAttemptAt, want)
		}
		if !strings.Contains(after.LastError, "451") {
			t.Errorf("last error = %q", after.LastError)
		}
		if d := f.delivery(t, m); d != store.DeliveryQueued {
			t.Errorf("challenge delivery after a retryable error = %q, want unchanged", d)
		}

		runOnce(t, w, 0) // not due yet
		f.clk.Advance(1999 * time.Millisecond)
		runOnce(t, w, 0)
		f.clk.Advance(time.Millisecond)
		runOnce(t, w, 1)
		got := f.smtp.WaitFor(t, "bob@example.com", 5*time.Second)
		if !strings.Contains(got.Text, "105774") {
			t.Errorf("text = %q", got.Text)
		}
		after = f.message(t, m.ID)
		if after.Status != store.MsgSent || after.Attempts != 2 || after.Body != nil {
			t.Errorf("after retry: status %q attempts %d body %d bytes", after.Status, after.Attempts, len(after.Body))
		}
		if d := f.delivery(t, m); d != store.DeliverySent {
			t.Errorf("challenge delivery = %q", d)
		}
		as := f.attempts(t, m.ID)
		if len(as) != 2 || as[0].Outcome != "error" || as[1].Outcome != "ok" {
			t.Errorf("attempts = %+v", as)
		}
		if f.smtp.Attempts() != 2 {
			t.Errorf("SMTP DATA attempts = %d, want 2", f.smtp.Attempts())
		}
		f.noSecrets(t, "105774", m)
	})
}

func TestWorkerPermanentFailure(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, testsmtp.Options{RejectRecipients: []string{"gone@example.com"}})
		w := f.worker("w1")
		m := f.enqueue(t, "email", "gone@example.com", "660021", 5)

		runOnce(t, w, 1)
		after := f.message(t, m.ID)
		if after.Status != store.MsgFailed || after.Attempts != 1 {
			t.Errorf("status %q attempts %d, want failed after 1", after.Status, after.Attempts)
		}
		if after.Body != nil {
			t.Error("body not wiped after failing")
		}
		if !strings.Contains(after.LastError, "550") {
			t.Errorf("last error = %q", after.LastError)
		}
		if d := f.delivery(t, m); d != store.DeliveryFailed {
			t.Errorf("challenge delivery = %q, want failed", d)
		}
		f.clk.Advance(time.Hour)
		runOnce(t, w, 0)
		if f.smtp.Attempts() != 0 || len(f.smtp.Messages()) != 0 {
			t.Errorf("SMTP saw %d DATA, %d mails", f.smtp.Attempts(), len(f.smtp.Messages()))
		}
		f.noSecrets(t, "660021", m)
	})
}

func TestWorkerMaxAttempts(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, testsmtp.Options{FailFirst: 1000})
		w := f.worker("w1")
		w.MaxAttempts = 3
		var waits []time.Duration
		w.Backoff = func(n int) time.Duration {
			d := deliver.DefaultBackoff(n)
			waits = append(waits, d)
			return d
		}
		m := f.enqueue(t, "email", "carol@example.com", "300300", 10) // the worker's bound is lower

		for i := 0; i < 10; i++ {
			if _, err := w.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			f.clk.Advance(10 * time.Minute)
		}
		if got := f.smtp.Attempts(); got != 3 {
			t.Errorf("SMTP DATA attempts = %d, want exactly MaxAttempts = 3", got)
		}
		after := f.message(t, m.ID)
		if after.Status != store.MsgFailed || after.Attempts != 3 || after.Body != nil {
			t.Errorf("status %q attempts %d body %d bytes", after.Status, after.Attempts, len(after.Body))
		}
		if d := f.delivery(t, m); d != store.DeliveryFailed {
			t.Errorf("challenge delivery = %q", d)
		}
		if fmt.Sprint(waits) != "[2s 4s]" {
			t.Errorf("backoff waits = %v, want [2s 4s]", waits)
		}
		if n := len(f.attempts(t, m.ID)); n != 3 {
			t.Errorf("%d attempt rows, want 3", n)
		}

		// The message's own bound applies when it is the smaller one.
		m2 := f.enqueue(t, "email", "dave@example.com", "300301", 2)
		before := f.smtp.Attempts()
		for i := 0; i < 5; i++ {
			if _, err := w.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			f.clk.Advance(10 * time.Minute)
		}
		if got := f.smtp.Attempts() - before; got != 2 {
			t.Errorf("SMTP DATA attempts for a message with max_attempts 2 = %d", got)
		}
		if s := f.message(t, m2.ID).Status; s != store.MsgFailed {
			t.Errorf("status = %q", s)
		}
	})
}

func TestWorkerLeaseExpiry(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, testsmtp.Options{})
		ctx := context.Background()
		m := f.enqueue(t, "email", "erin@example.com", "909090", 5)

		// A worker claims the message and dies before sending or recording anything.
		claimed, err := st.ClaimMessages(ctx, "dead-worker", f.clk.Now(), time.Minute, 16)
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claim: %v, %d messages", err, len(claimed))
		}

		w := f.worker("live-worker")
		w.Lease = time.Minute
		runOnce(t, w, 0) // the lease holds
		f.clk.Advance(59 * time.Second)
		runOnce(t, w, 0)
		f.clk.Advance(2 * time.Second)
		runOnce(t, w, 1)
		f.smtp.WaitFor(t, "erin@example.com", 5*time.Second)

		after := f.message(t, m.ID)
		if after.Status != store.MsgSent || after.Attempts != 2 || after.Body != nil {
			t.Errorf("status %q attempts %d body %d bytes", after.Status, after.Attempts, len(after.Body))
		}
		f.clk.Advance(time.Hour)
		runOnce(t, w, 0)
		if n := len(f.smtp.Messages()); n != 1 {
			t.Errorf("%d mails, want exactly 1", n)
		}
		// The dead worker, should it wake up, cannot overwrite the outcome.
		err = st.FinishAttempt(ctx, "dead-worker", store.AttemptResult{MessageID: m.ID, Attempt: 1,
			Now: f.clk.Now(), Status: store.MsgFailed, Error: "late", ChallengeDelivery: store.DeliveryFailed})
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("late finish by the dead worker: %v, want ErrConflict", err)
		}
		if d := f.delivery(t, m); d != store.DeliverySent {
			t.Errorf("challenge delivery = %q", d)
		}
	})
}

func TestWorkersConcurrentExactlyOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, testsmtp.Options{})
		const n = 40
		var msgs []*store.Message
		for i := range n {
			msgs = append(msgs, f.enqueue(t, "email", fmt.Sprintf("user%02d@example.com", i), fmt.Sprintf("%06d", 100000+i), 5))
		}

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, owner := range []string{"worker-a", "worker-b"} {
			w := f.worker(owner)
			w.Batch = 3
			w.Poll = 10 * time.Millisecond
			wg.Go(func() {
				if err := w.Run(ctx); err != nil {
					t.Errorf("%s: Run: %v", owner, err)
				}
			})
			w.Notify()
		}
		for i := range n {
			f.smtp.WaitFor(t, fmt.Sprintf("user%02d@example.com", i), 20*time.Second)
		}
		time.Sleep(200 * time.Millisecond) // time for a wrongful second send to show up
		cancel()
		wg.Wait()

		perID := map[string]int{}
		for _, mail := range f.smtp.Messages() {
			perID[mail.Header.Get("Message-ID")]++
		}
		for _, m := range msgs {
			if c := perID["<"+m.ID+"@otpd.example>"]; c != 1 {
				t.Errorf("message %s delivered %d times", m.ID, c)
			}
			if got := f.message(t, m.ID); got.Status != store.MsgSent || got.Attempts != 1 || got.Body != nil {
				t.Errorf("message %s: status %q attempts %d body %d bytes", m.ID, got.Status, got.Attempts, len(got.Body))
			}
		}
		if got := f.smtp.Attempts(); got != n {
			t.Errorf("SMTP DATA attempts = %d, want %d", got, n)
		}
		logs := f.logs.String()
		if !strings.Contains(logs, "owner=worker-a") || !strings.Contains(logs, "owner=worker-b") {
			t.Errorf("both workers should have run:\n%s", logs)
		}
	})
}

func TestWorkerUnopenableBody(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, testsmtp.Options{})
		m := f.enqueue(t, "email", "frank@example.com", "123123", 5)

		other, err := keys.NewKeyring(bytes.Repeat([]byte{9}, keys.MasterKeySize))
		if err != nil {
			t.Fatal(err)
		}
		w := f.worker("w1")
		w.Keys = other // a key that is not the one the body was sealed with
		runOnce(t, w, 1)
		after := f.message(t, m.ID)
		if after.Status != store.MsgFailed || after.Body != nil || !strings.Contains(after.LastError, "does not open") {
			t.Errorf("status %q last error %q body %d bytes", after.Status, after.LastError, len(after.Body))
		}
		if d := f.delivery(t, m); d != store.DeliveryFailed {
			t.Errorf("challenge delivery = %q", d)
		}
		f.clk.Advance(time.Hour)
		runOnce(t, w, 0)
		if f.smtp.Attempts() != 0 {
			t.Errorf("SMTP saw %d DATA", f.smtp.Attempts())
		}
	})
}

func TestWorkerNoProvider(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, testsmtp.Options{})
		reg := prometheus.NewRegistry()
		w := f.worker("w1")
		w.Metrics = deliver.NewMetrics(reg)
		m := f.enqueue(t, "sms", "+15555550100", "555000", 5)

		runOnce(t, w, 1)
		after := f.message(t, m.ID)
		if after.Status != store.MsgFailed || !strings.Contains(after.LastError, `no provider for channel "sms"`) {
			t.Errorf("status %q last error %q", after.Status, after.LastError)
		}
		if d := f.delivery(t, m); d != store.DeliveryFailed {
			t.Errorf("challenge delivery = %q", d)
		}
		if !strings.Contains(f.logs.String(), "+1*****0100") {
			t.Errorf("log lacks the masked number:\n%s", f.logs.String())
		}
		if v := counter(t, reg, "otpd_delivery_attempts_total", "sms", "none", "failed"); v != 1 {
			t.Errorf("failed counter = %v", v)
		}
		f.noSecrets(t, "555000", m)
	})
}

// TestRunShutdownFinishesInFlight stops the worker while an SMTP session is in progress: Run
// must wait for it, record the message as sent, and only then return.
func TestRunShutdownFinishesInFlight(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, testsmtp.Options{})
		proxy := slowProxy(t, f.smtp.Addr(), 300*time.Millisecond)
		slow, err := email.New(email.Config{URL: "smtp://" + proxy.addr, From: "no-reply@otpd.example"})
		if err != nil {
			t.Fatal(err)
		}
		w := f.worker("w1")
		w.Senders = deliver.Registry{"email": slow}
		m := f.enqueue(t, "email", "grace@example.com", "271828", 5)

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		w.Notify()
		select {
		case <-proxy.connected:
		case <-time.After(10 * time.Second):
			t.Fatal("the worker never connected")
		}
		cancel() // mid-session
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		// Run has returned: the send finished and was recorded before it did.
		if len(f.smtp.Messages()) != 1 {
			t.Fatalf("%d mails after shutdown, want 1", len(f.smtp.Messages()))
		}
		if after := f.message(t, m.ID); after.Status != store.MsgSent {
			t.Errorf("status after shutdown = %q, want sent", after.Status)
		}
	})
}

func TestDefaultBackoff(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{0, 2 * time.Second}, {1, 2 * time.Second}, {2, 4 * time.Second}, {3, 8 * time.Second},
		{8, 256 * time.Second}, {9, 5 * time.Minute}, {1000, 5 * time.Minute}} {
		if got := deliver.DefaultBackoff(tt.n); got != tt.want {
			t.Errorf("DefaultBackoff(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func TestMetricsNilSafe(t *testing.T) {
	var m *deliver.Metrics
	m.Attempt("email", "smtp", deliver.OutcomeSent)
	m.SendDuration("email", "smtp", time.Second)
	reg := prometheus.NewRegistry()
	a, b := deliver.NewMetrics(reg), deliver.NewMetrics(reg) // second registration reuses the first
	a.Attempt("email", "smtp", deliver.OutcomeRetry)
	b.Attempt("email", "smtp", deliver.OutcomeRetry)
	if v := counter(t, reg, "otpd_delivery_attempts_total", "email", "smtp", "retry"); v != 2 {
		t.Errorf("retry counter = %v, want 2", v)
	}
}

// counter reads one labelled counter from reg (labels channel, provider, outcome).
func counter(t *testing.T, reg *prometheus.Registry, name, channel, provider, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"channel": channel, "provider": provider, "outcome": outcome}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// syncBuffer is a bytes.Buffer for concurrent log writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proxy is a TCP relay to an SMTP server that holds back the server's greeting, so a session is
// reliably in progress for a while.
type proxy struct {
	addr      string
	connected chan struct{}
}

func slowProxy(t *testing.T, target string, delay time.Duration) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: l.Addr().String(), connected: make(chan struct{})}
	var once sync.Once
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			once.Do(func() { close(p.connected) })
			wg.Go(func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				time.Sleep(delay)
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
			})
		}
	})
	return p
}

// An SMSC that accepts the connection and never answers the bind must not hold the worker: the
// send gives up at SendTimeout, the message is retried later, and shutdown completes.
func TestWorkerShutdownWithSilentSMSC(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, testsmtp.Options{})
		smsc := testsmsc.Start(t, testsmsc.Options{IgnoreBinds: true})
		silent, err := smpp.New(deliver.ProviderConfig{ID: "silent-smsc", Type: smpp.Type, Channels: []string{"sms"},
			Settings: json.RawMessage(`{"addr": "` + smsc.Addr() + `", "system_id": "otpd"}`),
			Secrets:  map[string]string{"password": "secret"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { silent.Close() })
		w := f.worker("w1")
		w.Senders = deliver.Registry{"email": f.sender, "sms": silent}
		w.SendTimeout = 300 * time.Millisecond
		m := f.enqueue(t, "sms", "+15550100070", "424242", 5)

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		w.Notify()
		if !smsc.WaitUntil(func() bool { return smsc.Accepted() > 0 }, 10*time.Second) {
			t.Fatal("the worker never connected")
		}
		cancel() // while the bind hangs
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return: the silent SMSC holds the worker")
		}
		after := f.message(t, m.ID)
		if after.Status != store.MsgQueued || after.Attempts != 1 || !strings.Contains(after.LastError, "no bind in time") {
			t.Errorf("message after the hung bind: status %q attempts %d error %q", after.Status, after.Attempts, after.LastError)
		}
	})
}

// slowGateway is an HTTP SMS provider that takes every request and answers only when released.
type slowGateway struct {
	srv     *httptest.Server
	release chan struct{}
	arrived chan string
	once    sync.Once
	mu      sync.Mutex
	open    int // requests waiting now
	maxOpen int
}

// releaseAll lets every held request (and every later one) answer.
func (g *slowGateway) releaseAll() { g.once.Do(func() { close(g.release) }) }

func newSlowGateway(t *testing.T) *slowGateway {
	g := &slowGateway{release: make(chan struct{}), arrived: make(chan string, 100)}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ To string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		g.mu.Lock()
		g.open++
		g.maxOpen = max(g.maxOpen, g.open)
		g.mu.Unlock()
		defer func() { g.mu.Lock(); g.open--; g.mu.Unlock() }()
		g.arrived <- body.To
		select {
		case <-g.release:
			fmt.Fprint(w, `{"id":"slow-1"}`)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { g.releaseAll(); g.srv.Close() })
	return g
}

func (g *slowGateway) sender(t *testing.T) deliver.Sender {
	t.Helper()
	s, err := smshttp.New(deliver.ProviderConfig{ID: "slow-gw", Type: smshttp.Type, Channels: []string{"sms"},
		Settings: json.RawMessage(`{"url": "` + g.srv.URL + `/send", "body": {"to": "{to}", "text": "{text}"}, "timeout": "1m"}`)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (g *slowGateway) waitArrived(t *testing.T, to string) {
	t.Helper()
	select {
	case got := <-g.arrived:
		if got != to {
			t.Fatalf("the slow gateway got %s, want %s", got, to)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the slow gateway never got %s", to)
	}
}

// A provider that answers late holds only its own slot: an email claimed after it goes out
// while the slow send is still in flight, and the slots in flight stay bounded by Batch.
func TestSlowProviderDoesNotDelayOthers(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, testsmtp.Options{})
		g := newSlowGateway(t)
		w := f.worker("w1")
		w.Senders = deliver.Registry{"email": f.sender, "sms": g.sender(t)}
		w.Batch = 2
		w.Poll = time.Hour // only Notify and freed slots wake the worker
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()

		slow := f.enqueue(t, "sms", "+15550100080", "111111", 5)
		w.Notify()
		g.waitArrived(t, "+15550100080")
		mail := f.enqueue(t, "email", "hana@example.com", "222222", 5)
		w.Notify()
		f.smtp.WaitFor(t, "hana@example.com", 10*time.Second) // the SMS is still in flight
		waitStatus(t, f, mail.ID, store.MsgSent)
		if s := f.message(t, slow.ID).Status; s != store.MsgSending {
			t.Fatalf("the slow SMS is %s, want still sending", s)
		}

		// Two more slow ones: one takes the free slot, the other waits for a slot.
		more := []*store.Message{f.enqueue(t, "sms", "+15550100081", "333333", 5), f.enqueue(t, "sms", "+15550100082", "444444", 5)}
		w.Notify()
		g.waitArrived(t, "+15550100081")
		select {
		case to := <-g.arrived:
			t.Fatalf("%s went out with every slot busy", to)
		case <-time.After(300 * time.Millisecond):
		}
		g.releaseAll() // every held request answers; the third SMS gets a slot
		g.waitArrived(t, "+15550100082")
		for _, m := range append(more, slow) {
			waitStatus(t, f, m.ID, store.MsgSent)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.maxOpen != 2 {
			t.Errorf("at most %d requests in flight, want Batch = 2", g.maxOpen)
		}
	})
}

// waitStatus waits until message id has status want.
func waitStatus(t *testing.T, f *fixture, id, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := f.message(t, id).Status
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %s is %s, want %s", id, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
