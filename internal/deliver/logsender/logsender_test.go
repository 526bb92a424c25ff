package logsender_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/deliver/logsender"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/storetest"
	"github.com/otpd/otpd/internal/testlog"
	"github.com/otpd/otpd/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

var t0 = time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)

// eachStore runs fn once per backend (SQLite, and PostgreSQL where installed), as subtests.
func eachStore(t *testing.T, fn func(t *testing.T, st store.Store)) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		fn(t, storetest.Open(t, b.NewDSN(t)))
	})
}

func keyring(t *testing.T) *keys.Keyring {
	t.Helper()
	kr, err := keys.NewKeyring(bytes.Repeat([]byte{3}, keys.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func tenant(t *testing.T, st store.Store, name string) string {
	t.Helper()
	tn := &store.Tenant{ID: uuid.Must(uuid.NewV7()).String(), Name: name, CreatedAt: t0}
	if err := st.CreateTenant(context.Background(), tn); err != nil {
		t.Fatal(err)
	}
	return tn.ID
}

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

func TestSendAndInbox(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		kr := keyring(t)
		var logs syncBuffer
		s := logsender.New(st, kr, slog.New(slog.NewJSONHandler(&logs, nil)))
		clk := clock.NewFake(t0)
		s.Clock = clk
		if s.Name() != "log" {
			t.Errorf("Name = %q", s.Name())
		}
		ta, tb := tenant(t, st, "a"), tenant(t, st, "b")

		send := func(tenantID, channel, to, code string) string {
			t.Helper()
			clk.Advance(time.Second)
			id, err := s.Send(ctx, deliver.Message{ID: "msg-" + channel + "-" + tenantID, TenantID: tenantID, Channel: channel, To: to,
				Content: deliver.Content{Subject: "Code " + code, Text: "Your code is " + code, HTML: "<b>" + code + "</b>"}})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			return id
		}
		idSMS := send(ta, "sms", "+15555550100", "111111")
		idMail := send(ta, "email", "alice@example.com", "222222")
		send(tb, "sms", "+15555550100", "333333")

		all, err := logsender.Inbox(ctx, st, kr, ta, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 || all[0].ID != idMail || all[1].ID != idSMS {
			t.Fatalf("inbox of tenant a = %+v, want the email then the sms", all)
		}
		if m := all[0]; m.Channel != "email" || m.To != "alice@example.com" || m.Body != "Your code is 222222" ||
			m.Subject != "Code 222222" || !m.CreatedAt.Equal(t0.Add(2*time.Second)) {
			t.Errorf("email entry = %+v", m)
		}
		only, err := logsender.Inbox(ctx, st, kr, ta, "+15555550100", 10)
		if err != nil || len(only) != 1 || only[0].Body != "Your code is 111111" {
			t.Errorf("inbox filtered by recipient = %+v, %v", only, err)
		}
		other, err := logsender.Inbox(ctx, st, kr, tb, "", 10)
		if err != nil || len(other) != 1 || other[0].Body != "Your code is 333333" {
			t.Errorf("inbox of tenant b = %+v, %v", other, err)
		}

		// The stored body is sealed and bound to its row.
		rows, err := st.ListDevMessages(ctx, ta, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if bytes.Contains(r.Body, []byte("22222")) || bytes.Contains(r.Body, []byte("11111")) {
				t.Errorf("dev message %s stored in the clear", r.ID)
			}
		}
		// A body moved to another row does not open there; the rest of the inbox still shows.
		moved := &store.DevMessage{ID: uuid.Must(uuid.NewV7()).String(), TenantID: ta, Channel: "sms",
			Recipient: "+15555550100", Body: rows[0].Body, CreatedAt: t0.Add(time.Hour)}
		if err := st.CreateDevMessage(ctx, moved); err != nil {
			t.Fatal(err)
		}
		all, err = logsender.Inbox(ctx, st, kr, ta, "", 10)
		if err != nil || len(all) != 2 {
			t.Errorf("inbox with a moved body = %d entries, %v; want the 2 good ones", len(all), err)
		}

		out := logs.String()
		for _, code := range []string{"111111", "222222", "333333"} {
			if strings.Contains(out, code) {
				t.Errorf("log contains code %s:\n%s", code, out)
			}
		}
		if strings.Contains(out, "alice@") || strings.Contains(out, "5555550100") {
			t.Errorf("log contains an unmasked recipient:\n%s", out)
		}
		var line map[string]any
		first, _, _ := strings.Cut(out, "\n")
		if err := json.Unmarshal([]byte(first), &line); err != nil {
			t.Fatal(err)
		}
		if line["message_id"] != "msg-sms-"+ta || line["channel"] != "sms" || line["to"] != "+1*****0100" || line["inbox_id"] != idSMS {
			t.Errorf("log line = %v", line)
		}
	})
}

// The worker delivers through the log provider like through any other.
func TestWorkerWithLogProvider(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		kr := keyring(t)
		var logs syncBuffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		clk := clock.NewFake(t0)
		ls := logsender.New(st, kr, log)
		ls.Clock = clk
		tn := tenant(t, st, "dev")

		c := &store.Challenge{ID: uuid.Must(uuid.NewV7()).String(), TenantID: tn, Channel: "sms",
			Recipient: "+447700900123", CodeLength: 6, Status: store.StatusPending, MaxAttempts: 3,
			Sends: 1, MaxSends: 5, LastSentAt: t0, TTL: 5 * time.Minute, Delivery: store.DeliveryQueued,
			CreatedAt: t0, ExpiresAt: t0.Add(5 * time.Minute)}
		c.CodeHash = kr.HashCode(c.ID, "424242")
		plain, _ := json.Marshal(deliver.Content{Text: "Your code is 424242"})
		m := &store.Message{ID: uuid.Must(uuid.NewV7()).String(), TenantID: tn, ChallengeID: c.ID,
			Channel: "sms", Recipient: c.Recipient, Status: store.MsgQueued, MaxAttempts: 5,
			NextAttemptAt: t0, CreatedAt: t0, UpdatedAt: t0}
		var err error
		if m.Body, err = kr.Seal(plain, []byte("messages:"+m.ID)); err != nil {
			t.Fatal(err)
		}
		if err := st.InTx(ctx, func(q store.Queries) error {
			if err := q.CreateChallenge(ctx, c); err != nil {
				return err
			}
			return q.CreateMessage(ctx, m)
		}); err != nil {
			t.Fatal(err)
		}

		w := &deliver.Worker{Outbox: st, Keys: kr, Senders: deliver.Registry{"sms": ls}, Clock: clk,
			Owner: "w1", Logger: log}
		if n, err := w.RunOnce(ctx); err != nil || n != 1 {
			t.Fatalf("RunOnce = %d, %v", n, err)
		}
		got, err := st.GetMessage(ctx, tn, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != store.MsgSent || got.Body != nil {
			t.Errorf("message status %q body %d bytes", got.Status, len(got.Body))
		}
		inbox, err := logsender.Inbox(ctx, st, kr, tn, "+447700900123", 5)
		if err != nil || len(inbox) != 1 || inbox[0].Body != "Your code is 424242" || inbox[0].ID != got.ProviderMessageID {
			t.Errorf("inbox = %+v, %v (provider id %q)", inbox, err, got.ProviderMessageID)
		}
		if testlog.Leaks(logs.String(), "424242") {
			t.Errorf("log contains the code:\n%s", logs.String())
		}
	})
}
