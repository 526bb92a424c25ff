package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/deliver"
	_ "github.com/otpd/otpd/internal/deliver/smpp" // provider types
	_ "github.com/otpd/otpd/internal/deliver/smshttp"
	_ "github.com/otpd/otpd/internal/deliver/twilio"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/storetest"
	"github.com/otpd/otpd/internal/testlog"
	"github.com/otpd/otpd/internal/testsmsc"
)

// ---- an HTTP SMS gateway on loopback ----

type gwRequest struct {
	Key, To, Text, From string
}

// gateway is a real HTTP SMS provider: it answers {"status":"queued","id":"…"} and counts
// deliveries by idempotency key (a repeated key is acknowledged with the first id and not
// delivered again). It can be told to fail the next requests.
type gateway struct {
	srv       *httptest.Server
	name      string
	mu        sync.Mutex
	requests  []gwRequest
	delivered map[string]string // idempotency key → id
	order     []string          // keys in delivery order
	failNext  int
	failCode  int
}

func newGateway(t *testing.T, name string) *gateway {
	g := &gateway{name: name, delivered: map[string]string{}}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body gwRequest
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			w.WriteHeader(400)
			return
		}
		body.Key = r.Header.Get("Idempotency-Key")
		g.mu.Lock()
		defer g.mu.Unlock()
		g.requests = append(g.requests, body)
		if g.failNext > 0 {
			g.failNext--
			w.WriteHeader(g.failCode)
			fmt.Fprint(w, `{"status":"error","detail":"try later"}`)
			return
		}
		id, dup := g.delivered[body.Key]
		if !dup {
			id = fmt.Sprintf("%s-%d", g.name, len(g.delivered)+1)
			g.delivered[body.Key] = id
			g.order = append(g.order, body.Key)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"queued","id":%q}`, id)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gateway) fail(n, code int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failNext, g.failCode = n, code
}

func (g *gateway) requestsTo(to string) []gwRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []gwRequest
	for _, r := range g.requests {
		if r.To == to {
			out = append(out, r)
		}
	}
	return out
}

func (g *gateway) deliveries() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.delivered)
}

// settings of a generic HTTP provider pointed at g.
func (g *gateway) settings() json.RawMessage {
	return json.RawMessage(`{"url": "` + g.srv.URL + `/send",
		"body": {"to": "{to}", "text": "{text}", "from": "{sender}"},
		"success": {"json_path": "status", "equals": "queued"},
		"message_id": {"json_path": "id"},
		"receipts": {"id": "id", "status": "status"}}`)
}

// ---- the delivery fixture: engine, router and worker on a real store ----

type deliveryEnv struct {
	eng    *engine.Engine
	st     store.Store
	dsn    string
	clk    *clock.Fake
	kr     *keys.Keyring
	router *deliver.CachedRouter
	worker *deliver.Worker
	admin  engine.Principal
	logs   *bytes.Buffer
	logMu  *sync.Mutex
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// newDeliveryEnv builds the fixture. Its gateways listen on loopback, so tenants' providers
// are allowed private destinations (newDeliveryEnvWith says otherwise).
func newDeliveryEnv(t *testing.T, b storetest.Backend, providers ...engine.ProviderSpec) *deliveryEnv {
	t.Helper()
	return newDeliveryEnvWith(t, b, engine.DeliveryOptions{AllowPrivateDestinations: true}, providers...)
}

// newDeliveryEnvWith builds the fixture with delivery options o (its Providers, PublicURL and
// Changed are set here).
func newDeliveryEnvWith(t *testing.T, b storetest.Backend, o engine.DeliveryOptions, providers ...engine.ProviderSpec) *deliveryEnv {
	t.Helper()
	if err := engine.CheckDeploymentProviders(providers); err != nil {
		t.Fatalf("providers: %v", err)
	}
	d := &deliveryEnv{dsn: b.NewDSN(t), clk: clock.NewFake(t0), logs: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	d.st = storetest.Open(t, d.dsn)
	var err error
	if d.kr, err = keys.NewKeyring(testKey); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(lockedWriter{d.logMu, d.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d.router = &deliver.CachedRouter{TTL: time.Hour}
	t.Cleanup(func() { d.router.Close() })
	d.eng, err = engine.New(engine.Options{Store: d.st, Keys: d.kr, Clock: d.clk, Logger: log,
		Channels: []string{engine.ChannelSMS, engine.ChannelViber, engine.ChannelVoice},
		Delivery: engine.DeliveryOptions{Providers: providers, PublicURL: "https://otpd.example", Changed: d.router.Invalidate,
			AllowPrivateDestinations: o.AllowPrivateDestinations}})
	if err != nil {
		t.Fatal(err)
	}
	d.router.Source = d.eng.RouteSource()
	d.worker = &deliver.Worker{Outbox: d.st, Keys: d.kr, Router: d.router, Clock: d.clk, Owner: "w1", Logger: log,
		Fallback: d.eng.FinishWithFallback, AfterSent: d.eng.AfterSent}
	tid, _, err := d.eng.Bootstrap(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	d.admin = engine.Principal{TenantID: tid, Role: store.RoleAdmin}
	return d
}

func (d *deliveryEnv) run(t *testing.T) int {
	t.Helper()
	n, err := d.worker.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (d *deliveryEnv) start(t *testing.T, channel, to string) *engine.Session {
	t.Helper()
	s, err := d.eng.Start(context.Background(), d.admin, engine.StartRequest{Channel: channel, To: to})
	if err != nil {
		t.Fatalf("start %s %s: %v", channel, to, err)
	}
	return s
}

func (d *deliveryEnv) messages(t *testing.T, challengeID string) []store.Message {
	t.Helper()
	ms, err := d.st.ListMessagesByChallenge(context.Background(), d.admin.TenantID, challengeID)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func (d *deliveryEnv) attemptProviders(t *testing.T, messageID string) []string {
	t.Helper()
	as, err := d.st.ListAttempts(context.Background(), messageID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.Provider+":"+a.Outcome)
	}
	return out
}

var sixDigits = regexp.MustCompile(`\b[0-9]{6}\b`)

// verify checks code against the session through the engine: the code that arrived at the
// provider must be the code that verifies.
func (d *deliveryEnv) verify(t *testing.T, sessionID, text string) {
	t.Helper()
	code := sixDigits.FindString(text)
	if code == "" {
		t.Fatalf("no code in the delivered text %q", text)
	}
	res, err := d.eng.Check(context.Background(), d.admin, sessionID, code)
	if err != nil || !res.Valid() {
		t.Fatalf("the delivered code does not verify: %v %+v", err, res)
	}
}

func httpProvider(id, role string, g *gateway, channels ...string) engine.ProviderSpec {
	if len(channels) == 0 {
		channels = []string{engine.ChannelSMS}
	}
	return engine.ProviderSpec{ID: id, Name: id, Type: "http", Channels: channels, Role: role, Enabled: true,
		Settings: g.settings(), Secrets: map[string]string{engine.ReceiptTokenSecret: "receipt-token-" + strings.Repeat("x", 32)}}
}

// ---- the code that arrives is the code that verifies ----

func TestHTTPProviderDeliversAVerifiableCode(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		g := newGateway(t, "gw")
		d := newDeliveryEnv(t, b, httpProvider("gw", store.RolePrimary, g))
		s := d.start(t, engine.ChannelSMS, "+49 151 1234 5678")
		if n := d.run(t); n != 1 {
			t.Fatalf("claimed %d", n)
		}
		got := g.requestsTo("+4915112345678")
		if len(got) != 1 {
			t.Fatalf("the gateway got %d requests", len(got))
		}
		msgs := d.messages(t, s.ID)
		if got[0].Key != msgs[0].ID {
			t.Errorf("idempotency key %q, want the message id %s", got[0].Key, msgs[0].ID)
		}
		d.verify(t, s.ID, got[0].Text)
		if m := msgs[0]; m.Status != store.MsgSent || m.Provider != "gw" || m.ProviderMessageID != "gw-1" || m.Body != nil {
			t.Errorf("message %+v", m)
		}
		if p := d.attemptProviders(t, msgs[0].ID); !slices.Equal(p, []string{"gw:ok"}) {
			t.Errorf("attempts %v", p)
		}
		d.logMu.Lock()
		logs := d.logs.String()
		d.logMu.Unlock()
		if code := sixDigits.FindString(got[0].Text); testlog.Leaks(logs, code) || strings.Contains(logs, "+4915112345678") {
			t.Errorf("the log holds the code or the number:\n%s", logs)
		}
	})
}

func TestSMPPProviderDeliversAVerifiableCode(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		smsc := testsmsc.Start(t, testsmsc.Options{ReceiptDelay: 20 * time.Millisecond})
		spec := engine.ProviderSpec{ID: "smsc", Type: "smpp", Channels: []string{engine.ChannelSMS}, Role: store.RolePrimary,
			Enabled: true, Secrets: map[string]string{"password": "secret"},
			Settings: json.RawMessage(`{"addr": "` + smsc.Addr() + `", "system_id": "otpd", "source_addr": "OTPD"}`)}
		d := newDeliveryEnv(t, b, spec)
		s := d.start(t, engine.ChannelSMS, "+15550100001")
		d.run(t)
		got := smsc.WaitFor(t, "15550100001", 5*time.Second)
		d.verify(t, s.ID, got.Text)
		msgs := d.messages(t, s.ID)
		if msgs[0].ProviderMessageID != got.ID || msgs[0].Provider != "smsc" {
			t.Errorf("message %+v, SMSC id %s", msgs[0], got.ID)
		}
		// The SMSC's deliver_sm receipt marks the message delivered.
		waitStatus(t, d, msgs[0].ID, store.MsgDelivered)
	})
}

func waitStatus(t *testing.T, d *deliveryEnv, messageID, want string) *store.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := d.st.GetMessage(context.Background(), d.admin.TenantID, messageID)
		if err != nil {
			t.Fatal(err)
		}
		if m.Status == want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("message status %q, want %q", m.Status, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- failover and retries ----

// The primary fails; the next attempt goes to the secondary at once, which delivers. Later the
// primary has recovered and is used again first.
func TestFailoverToSecondary(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		primary, secondary := newGateway(t, "p"), newGateway(t, "s")
		d := newDeliveryEnv(t, b, httpProvider("primary", store.RolePrimary, primary), httpProvider("secondary", store.RoleSecondary, secondary))
		primary.fail(1, 503)
		s := d.start(t, engine.ChannelSMS, "+15550100002")
		d.run(t) // primary: 503
		if len(primary.requestsTo("+15550100002")) != 1 || secondary.deliveries() != 0 {
			t.Fatal("the first attempt did not go to the primary")
		}
		m := d.messages(t, s.ID)[0]
		if m.Status != store.MsgQueued || !m.NextAttemptAt.Equal(t0) || !strings.Contains(m.LastError, "503") {
			t.Fatalf("after the primary failed: %+v (the failover is due at once)", m)
		}
		d.run(t) // secondary, without waiting
		got := secondary.requestsTo("+15550100002")
		if len(got) != 1 {
			t.Fatalf("secondary got %d requests", len(got))
		}
		d.verify(t, s.ID, got[0].Text)
		if p := d.attemptProviders(t, m.ID); !slices.Equal(p, []string{"primary:error", "secondary:ok"}) {
			t.Errorf("attempts %v", p)
		}
		if m := d.messages(t, s.ID)[0]; m.Provider != "secondary" || m.ProviderMessageID != "s-1" {
			t.Errorf("message %+v", m)
		}

		// The primary is back: the next message goes there.
		s2 := d.start(t, engine.ChannelSMS, "+15550100003")
		d.run(t)
		if got := primary.requestsTo("+15550100003"); len(got) != 1 {
			t.Fatalf("primary got %d", len(got))
		} else {
			d.verify(t, s2.ID, got[0].Text)
		}
	})
}

// Both providers fail; the route starts over at the primary after the backoff, and the primary,
// recovered by then, delivers. Attempts stay within the bound.
func TestRetriesUntilTheProviderRecovers(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		primary, secondary := newGateway(t, "p"), newGateway(t, "s")
		d := newDeliveryEnv(t, b, httpProvider("primary", store.RolePrimary, primary), httpProvider("secondary", store.RoleSecondary, secondary))
		primary.fail(1, 500)
		secondary.fail(1, 502)
		s := d.start(t, engine.ChannelSMS, "+15550100004")
		d.run(t) // primary 500
		d.run(t) // secondary 502
		m := d.messages(t, s.ID)[0]
		if want := t0.Add(deliver.DefaultBackoff(2)); !m.NextAttemptAt.Equal(want) {
			t.Fatalf("after both failed: next attempt at %v, want %v (backoff before starting over)", m.NextAttemptAt, want)
		}
		if n := d.run(t); n != 0 {
			t.Fatalf("claimed %d before the backoff ran out", n)
		}
		d.clk.Advance(deliver.DefaultBackoff(2))
		d.run(t)
		got := primary.requestsTo("+15550100004")
		if len(got) != 2 || primary.deliveries() != 1 {
			t.Fatalf("primary got %d requests, %d deliveries", len(got), primary.deliveries())
		}
		d.verify(t, s.ID, got[1].Text)
		if p := d.attemptProviders(t, m.ID); !slices.Equal(p, []string{"primary:error", "secondary:error", "primary:ok"}) {
			t.Errorf("attempts %v", p)
		}

		// A provider that never recovers: bounded attempts, the session's delivery fails, and
		// the log and the stored error hold no provider answer.
		primary.fail(100, 500)
		secondary.fail(100, 500)
		s2 := d.start(t, engine.ChannelSMS, "+15550100005")
		for range 20 {
			d.run(t)
			d.clk.Advance(10 * time.Minute)
		}
		m2 := d.messages(t, s2.ID)[0]
		if m2.Status != store.MsgFailed || m2.Attempts != 5 {
			t.Errorf("a message that cannot be sent: %+v", m2)
		}
		if total := len(primary.requestsTo("+15550100005")) + len(secondary.requestsTo("+15550100005")); total != 5 {
			t.Errorf("%d requests, want the 5 attempts", total)
		}
		sess, err := d.eng.Get(context.Background(), d.admin, s2.ID)
		if err != nil || sess.Delivery != store.DeliveryFailed {
			t.Errorf("session delivery %q (%v)", sess.Delivery, err)
		}
		if strings.Contains(m2.LastError, "try later") {
			t.Errorf("the provider's answer was stored: %q", m2.LastError)
		}
	})
}

// A worker dies after handing a message to the primary and before recording it. The attempt is
// in doubt, so the repeat goes to the same provider with the same message id — not to the
// secondary — and a provider that honours the key delivers once.
func TestInterruptedAttemptRepeatsAtTheSameProvider(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		primary, secondary := newGateway(t, "p"), newGateway(t, "s")
		d := newDeliveryEnv(t, b, httpProvider("primary", store.RolePrimary, primary), httpProvider("secondary", store.RoleSecondary, secondary))
		s := d.start(t, engine.ChannelSMS, "+15550100006")

		// The dying worker: claims, records its choice, sends, and never records the outcome.
		ctx := context.Background()
		claimed, err := d.st.ClaimMessages(ctx, "dead", d.clk.Now(), time.Minute, 10)
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claim: %v %d", err, len(claimed))
		}
		if _, err := d.st.(store.AttemptRecorder).StartAttempts(ctx, "dead", []store.AttemptStart{{MessageID: claimed[0].ID, Attempt: 1, Provider: "primary"}}); err != nil {
			t.Fatal(err)
		}
		snd, err := deliver.NewSender(d.eng.SenderConfig(httpProvider("primary", store.RolePrimary, primary)))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := d.kr.Open(claimed[0].Body, []byte("messages:"+claimed[0].ID))
		if err != nil {
			t.Fatal(err)
		}
		var c deliver.Content
		json.Unmarshal(plain, &c)
		if _, err := snd.Send(ctx, deliver.Message{ID: claimed[0].ID, Channel: "sms", To: claimed[0].Recipient, Content: c}); err != nil {
			t.Fatal(err)
		}

		d.run(t) // the lease holds
		d.clk.Advance(61 * time.Second)
		d.run(t) // the lease ran out: repeat at the primary
		reqs := primary.requestsTo("+15550100006")
		if len(reqs) != 2 || reqs[0].Key != reqs[1].Key || reqs[0].Key != claimed[0].ID {
			t.Fatalf("primary requests %+v", reqs)
		}
		if len(secondary.requestsTo("+15550100006")) != 0 {
			t.Error("an in-doubt attempt was repeated at another provider")
		}
		if primary.deliveries() != 1 {
			t.Errorf("%d deliveries, want 1", primary.deliveries())
		}
		d.verify(t, s.ID, reqs[1].Text)
		if p := d.attemptProviders(t, claimed[0].ID); !slices.Equal(p, []string{"primary:started", "primary:ok"}) {
			t.Errorf("attempts %v", p)
		}
	})
}

// ---- delivery receipts ----

func TestReceiptsUpdateStatus(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		g := newGateway(t, "gw")
		spec := httpProvider("gw", store.RolePrimary, g)
		token := spec.Secrets[engine.ReceiptTokenSecret]
		d := newDeliveryEnv(t, b, spec)
		ctx := context.Background()
		s := d.start(t, engine.ChannelSMS, "+15550100007")
		d.run(t)
		m := d.messages(t, s.ID)[0]
		receipt := func(tok, body string) (int, error) {
			return d.eng.ReceiptCallback(ctx, "gw", tok, "application/json", nil, []byte(body))
		}
		status := func() string {
			got, err := d.st.GetMessage(ctx, d.admin.TenantID, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got.Status
		}
		if _, err := receipt("wrong-token", `{"id":"gw-1","status":"delivered"}`); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("wrong token: %v", err)
		}
		if _, err := receipt("", `{"id":"gw-1","status":"delivered"}`); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("no token: %v", err)
		}
		if _, err := d.eng.ReceiptCallback(ctx, "nope", token, "application/json", nil, []byte(`{}`)); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("unknown provider: %v", err)
		}
		if status() != store.MsgSent {
			t.Fatal("a refused receipt changed the message")
		}
		if _, err := receipt(token, `{"id":`); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("broken body: %v", err)
		}
		for _, step := range []struct{ body, want string }{
			{`{"id":"gw-1","status":"ENROUTE"}`, store.MsgAccepted},
			{`{"id":"gw-1","status":"sent"}`, store.MsgAccepted}, // not backwards
			{`{"id":"gw-1","status":"DELIVRD"}`, store.MsgDelivered},
			{`{"id":"gw-1","status":"failed"}`, store.MsgDelivered},   // final stays final
			{`{"id":"gw-1","status":"accepted"}`, store.MsgDelivered}, // no going back
		} {
			if n, err := receipt(token, step.body); err != nil || n != 1 {
				t.Fatalf("%s: %d %v", step.body, n, err)
			}
			if got := status(); got != step.want {
				t.Errorf("after %s: %s, want %s", step.body, got, step.want)
			}
		}

		// A negative receipt fails the session's delivery (so the caller can resend).
		s2 := d.start(t, engine.ChannelSMS, "+15550100008")
		d.run(t)
		if _, err := receipt(token, `{"id":"gw-2","status":"undelivered"}`); err != nil {
			t.Fatal(err)
		}
		if sess, _ := d.eng.Get(ctx, d.admin, s2.ID); sess.Delivery != store.DeliveryFailed {
			t.Errorf("delivery after an undelivered receipt: %q", sess.Delivery)
		}

		// A receipt that comes before the send is recorded waits, and is applied then.
		if _, err := receipt(token, `{"id":"gw-3","status":"delivered"}`); err != nil {
			t.Fatal(err)
		}
		s3 := d.start(t, engine.ChannelSMS, "+15550100009")
		d.run(t)
		m3 := d.messages(t, s3.ID)[0]
		if m3.ProviderMessageID != "gw-3" || m3.Status != store.MsgDelivered {
			t.Errorf("early receipt: %+v", m3)
		}
	})
}

// ---- Viber → SMS fallback ----

// enqueueViber commits a session and its Viber message with an SMS fallback, as BSG's send does.
func (d *deliveryEnv) enqueueViber(t *testing.T, to, code string) (*store.Challenge, *store.Message) {
	t.Helper()
	ctx := context.Background()
	now := d.clk.Now()
	c := &store.Challenge{ID: uuid.Must(uuid.NewV7()).String(), TenantID: d.admin.TenantID, Channel: engine.ChannelViber,
		Recipient: to, CodeLength: len(code), Status: store.StatusPending, MaxAttempts: 3, Sends: 1, MaxSends: 5,
		LastSentAt: now, TTL: 5 * time.Minute, Delivery: store.DeliveryQueued, Metadata: "{}",
		CreatedAt: now, ExpiresAt: now.Add(5 * time.Minute)}
	c.CodeHash = d.kr.HashCode(c.ID, code)
	plain, _ := json.Marshal(deliver.Content{Text: "Your code is " + code})
	m := &store.Message{ID: uuid.Must(uuid.NewV7()).String(), TenantID: d.admin.TenantID, ChallengeID: c.ID,
		Channel: engine.ChannelViber, Recipient: to, Status: store.MsgQueued, MaxAttempts: 5, NextAttemptAt: now,
		CreatedAt: now, UpdatedAt: now, Sender: "VIBER_SENDER", FallbackChannel: engine.ChannelSMS, FallbackSender: "SMS_SENDER"}
	var err error
	if m.Body, err = d.kr.Seal(plain, []byte("messages:"+m.ID)); err != nil {
		t.Fatal(err)
	}
	err = d.st.InTx(ctx, func(q store.Queries) error {
		if err := q.CreateChallenge(ctx, c); err != nil {
			return err
		}
		return q.CreateMessage(ctx, m)
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, m
}

func TestViberFallsBackToSMS(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		viber, sms := newGateway(t, "viber"), newGateway(t, "sms")
		d := newDeliveryEnv(t, b, httpProvider("viber-gw", store.RolePrimary, viber, engine.ChannelViber),
			httpProvider("sms-gw", store.RolePrimary, sms))
		ctx := context.Background()

		// 1. The Viber gateway refuses the message for good: the same code goes by SMS.
		viber.fail(1, 400)
		c, m := d.enqueueViber(t, "+380501403813", "482913")
		d.run(t)
		after, _ := d.st.GetMessage(ctx, d.admin.TenantID, m.ID)
		if after.Status != store.MsgFailed || after.Body != nil {
			t.Fatalf("viber message %+v", after)
		}
		msgs := d.messages(t, c.ID)
		if len(msgs) != 2 || msgs[1].Channel != engine.ChannelSMS || msgs[1].Sender != "SMS_SENDER" || msgs[1].FallbackChannel != "" {
			t.Fatalf("messages after the failure: %+v", msgs)
		}
		if sess, _ := d.eng.Get(ctx, d.admin, c.ID); sess.Delivery != store.DeliveryQueued {
			t.Errorf("delivery while the fallback waits: %q", sess.Delivery)
		}
		d.run(t)
		got := sms.requestsTo("+380501403813")
		if len(got) != 1 || got[0].From != "SMS_SENDER" || !strings.Contains(got[0].Text, "482913") {
			t.Fatalf("SMS fallback: %+v", got)
		}
		d.verify(t, c.ID, got[0].Text)

		// 2. Viber takes it, its receipt says undelivered: the fallback goes then.
		c2, m2 := d.enqueueViber(t, "+380501403814", "135790")
		d.run(t)
		if stored, _ := d.st.GetMessage(ctx, d.admin.TenantID, m2.ID); stored.Status != store.MsgSent || stored.Body == nil {
			t.Fatalf("viber message awaiting its receipt must keep its sealed body: %+v", stored)
		}
		token := httpProvider("viber-gw", "", viber).Secrets[engine.ReceiptTokenSecret]
		if _, err := d.eng.ReceiptCallback(ctx, "viber-gw", token, "application/json", nil, []byte(`{"id":"viber-1","status":"undelivered"}`)); err != nil {
			t.Fatal(err)
		}
		d.run(t)
		got = sms.requestsTo("+380501403814")
		if len(got) != 1 {
			t.Fatalf("receipt-triggered fallback: %+v", got)
		}
		d.verify(t, c2.ID, got[0].Text)
		if stored, _ := d.st.GetMessage(ctx, d.admin.TenantID, m2.ID); stored.Status != store.MsgUndelivered || stored.Body != nil {
			t.Errorf("viber message after the fallback: %+v", stored)
		}
		// A second negative receipt does nothing more: once.
		d.eng.ReceiptCallback(ctx, "viber-gw", token, "application/json", nil, []byte(`{"id":"viber-1","status":"failed"}`))
		d.run(t)
		if n := len(sms.requestsTo("+380501403814")); n != 1 {
			t.Errorf("%d SMS after a second receipt", n)
		}

		// 3. No fallback once the session is over: the user verified already.
		c3, _ := d.enqueueViber(t, "+380501403815", "246802")
		d.run(t)
		if res, err := d.eng.Check(ctx, d.admin, c3.ID, "246802"); err != nil || !res.Valid() {
			t.Fatal(err)
		}
		d.eng.ReceiptCallback(ctx, "viber-gw", token, "application/json", nil, []byte(`{"id":"viber-2","status":"undelivered"}`))
		d.run(t)
		if n := len(sms.requestsTo("+380501403815")); n != 0 || len(d.messages(t, c3.ID)) != 1 {
			t.Errorf("fallback for a verified session: %d SMS", n)
		}
	})
}

// ---- providers through the engine: validation, sealing, masking, routes ----

func TestProviderManagement(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		deployment := newGateway(t, "dep")
		tenantGW := newGateway(t, "own")
		d := newDeliveryEnv(t, b, httpProvider("dep", store.RolePrimary, deployment))
		ctx := context.Background()
		const secret = "S3CR3T-api-key-do-not-leak"
		in := engine.ProviderInput{Name: "own gateway", Type: "http", Channels: []string{"sms"},
			Settings: json.RawMessage(strings.Replace(string(tenantGW.settings()), `"url"`, `"headers": {"Authorization": "Bearer {secret.api_key}"}, "url"`, 1)),
			Secrets:  map[string]string{"api_key": secret}}
		app := engine.Principal{TenantID: d.admin.TenantID, ApplicationID: "app-1", Role: store.RoleApp}
		if _, err := d.eng.CreateProvider(ctx, app, in); !errors.Is(err, engine.ErrForbidden) {
			t.Errorf("an app key created a provider: %v", err)
		}
		v, err := d.eng.CreateProvider(ctx, d.admin, in)
		if err != nil {
			t.Fatal(err)
		}
		if v.Secrets["api_key"] != engine.SecretMask || v.Secrets[engine.ReceiptTokenSecret] != engine.SecretMask || len(v.ReceiptToken) < 32 {
			t.Errorf("created view: secrets %v, token %q", v.Secrets, v.ReceiptToken)
		}
		got, err := d.eng.GetProvider(ctx, d.admin, v.ID)
		if err != nil || got.Secrets["api_key"] != engine.SecretMask || got.ReceiptToken != "" || got.Source != engine.SourceAPI {
			t.Errorf("read back: %+v %v", got, err)
		}
		dump := storetest.Dump(t, d.st, d.dsn)
		if bytes.Contains(dump, []byte(secret)) || bytes.Contains(dump, []byte(v.ReceiptToken)) {
			t.Error("a provider secret is stored in the clear")
		}
		if !bytes.Contains(dump, []byte("own gateway")) {
			t.Error("the dump does not hold the provider at all (the scan would prove nothing)")
		}

		// Routes: this tenant's SMS now go to its own gateway, with its secret in the header.
		s := d.start(t, engine.ChannelSMS, "+15550100010")
		d.run(t)
		if reqs := tenantGW.requestsTo("+15550100010"); len(reqs) != 1 || deployment.deliveries() != 0 {
			t.Fatalf("tenant gateway %d, deployment %d", len(reqs), deployment.deliveries())
		} else {
			d.verify(t, s.ID, reqs[0].Text)
		}
		// Another tenant still uses the deployment's provider.
		otherID, _, err := d.eng.CreateTenant(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		other := engine.Principal{TenantID: otherID, Role: store.RoleAdmin}
		if _, err := d.eng.Start(ctx, other, engine.StartRequest{Channel: "sms", To: "+15550100011"}); err != nil {
			t.Fatal(err)
		}
		d.run(t)
		if len(deployment.requestsTo("+15550100011")) != 1 {
			t.Error("the other tenant's message did not go to the deployment provider")
		}
		if _, err := d.eng.GetProvider(ctx, other, v.ID); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("another tenant reads the provider: %v", err)
		}

		// Listing shows the tenant's provider masked and the deployment's without settings.
		list, err := d.eng.ListProviders(ctx, d.admin)
		if err != nil || len(list) != 2 || list[1].Source != engine.SourceConfig || string(list[1].Settings) != "{}" || list[1].Secrets != nil {
			t.Errorf("list: %+v %v", list, err)
		}
		if err := d.eng.DeleteProvider(ctx, d.admin, "dep"); !errors.Is(err, engine.ErrConflict) {
			t.Errorf("deleting a configuration file provider: %v", err)
		}

		// Patch: sending the mask back keeps a secret; a new value replaces it; settings merge.
		mask, newKey := engine.SecretMask, "another-key-value"
		up, err := d.eng.UpdateProvider(ctx, d.admin, v.ID, engine.ProviderPatch{
			Secrets: map[string]*string{"api_key": &mask}, Settings: json.RawMessage(`{"sender": "ACME"}`)})
		if err != nil || up.Version != 2 {
			t.Fatalf("patch: %v %+v", err, up)
		}
		if !strings.Contains(string(up.Settings), `"sender":"ACME"`) || !strings.Contains(string(up.Settings), tenantGW.srv.URL) {
			t.Errorf("merged settings %s", up.Settings)
		}
		s2 := d.start(t, engine.ChannelSMS, "+15550100012")
		d.run(t)
		if reqs := tenantGW.requestsTo("+15550100012"); len(reqs) != 1 || reqs[0].From != "ACME" {
			t.Errorf("after the patch: %+v", reqs)
		} else {
			d.verify(t, s2.ID, reqs[0].Text)
		}
		if _, err := d.eng.UpdateProvider(ctx, d.admin, v.ID, engine.ProviderPatch{Secrets: map[string]*string{"api_key": &newKey}}); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(storetest.Dump(t, d.st, d.dsn), []byte(newKey)) {
			t.Error("the new secret is stored in the clear")
		}
		rot, err := d.eng.UpdateProvider(ctx, d.admin, v.ID, engine.ProviderPatch{RotateReceiptToken: true})
		if err != nil || rot.ReceiptToken == "" || rot.ReceiptToken == v.ReceiptToken {
			t.Fatalf("rotate: %v %q", err, rot.ReceiptToken)
		}
		if _, err := d.eng.ReceiptCallback(ctx, v.ID, v.ReceiptToken, "application/json", nil, []byte(`{}`)); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("the old receipt token still works: %v", err)
		}
		if _, err := d.eng.ReceiptCallback(ctx, v.ID, rot.ReceiptToken, "application/json", nil, []byte(`{}`)); err != nil {
			t.Errorf("the new receipt token: %v", err)
		}

		// Refusals: a second primary, a channel the deployment does not offer, bad settings.
		for _, tc := range []struct {
			in   engine.ProviderInput
			want error
		}{
			{engine.ProviderInput{Name: "two", Type: "http", Channels: []string{"sms"}, Settings: tenantGW.settings()}, engine.ErrConflict},
			{engine.ProviderInput{Name: "own gateway", Type: "http", Channels: []string{"voice"}, Settings: tenantGW.settings()}, engine.ErrConflict},
			{engine.ProviderInput{Name: "wa", Type: "http", Channels: []string{"whatsapp"}, Settings: tenantGW.settings()}, engine.ErrInvalid},
			{engine.ProviderInput{Name: "mail", Type: "http", Channels: []string{"email"}, Settings: tenantGW.settings()}, engine.ErrInvalid},
			{engine.ProviderInput{Name: "x", Type: "carrier-pigeon", Channels: []string{"sms"}}, engine.ErrInvalid},
			{engine.ProviderInput{Name: "x", Type: "http", Channels: []string{"viber"}, Settings: json.RawMessage(`{"url": "https://x/{nope}"}`)}, engine.ErrInvalid},
			{engine.ProviderInput{Name: "x", Type: "twilio", Channels: []string{"sms"}, Role: "secondary",
				Settings: json.RawMessage(`{"account_sid": "AC1", "from": "+1"}`)}, engine.ErrInvalid}, // no auth_token
			{engine.ProviderInput{Name: "x", Type: "http", Channels: []string{"viber"}, Settings: tenantGW.settings(),
				Secrets: map[string]string{"Bad-Name": "v"}}, engine.ErrInvalid},
			{engine.ProviderInput{Name: "x", Type: "http", Channels: []string{"viber"}, Settings: tenantGW.settings(),
				Secrets: map[string]string{"k": engine.SecretMask}}, engine.ErrInvalid},
			{engine.ProviderInput{Name: "x", Type: "http", Channels: []string{"viber"}, Settings: tenantGW.settings(),
				Secrets: map[string]string{engine.ReceiptTokenSecret: "short"}}, engine.ErrInvalid},
		} {
			_, err := d.eng.CreateProvider(ctx, d.admin, tc.in)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s %v: %v, want %v", tc.in.Type, tc.in.Channels, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("an error quotes a secret: %v", err)
			}
		}
		// A secondary for the same channel is fine; then disabling the primary leaves the secondary.
		sec, err := d.eng.CreateProvider(ctx, d.admin, engine.ProviderInput{Name: "backup", Type: "http", Channels: []string{"sms"},
			Role: "secondary", Settings: deployment.settings()})
		if err != nil {
			t.Fatal(err)
		}
		off := false
		if _, err := d.eng.UpdateProvider(ctx, d.admin, v.ID, engine.ProviderPatch{Enabled: &off}); err != nil {
			t.Fatal(err)
		}
		routes, err := d.eng.Routes(ctx, d.admin.TenantID)
		if err != nil || len(routes["sms"]) != 1 || routes["sms"][0].ID != sec.ID {
			t.Errorf("routes with the primary disabled: %+v %v", routes["sms"], err)
		}
		if err := d.eng.DeleteProvider(ctx, d.admin, v.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := d.eng.GetProvider(ctx, d.admin, v.ID); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("deleted provider: %v", err)
		}
		events, _ := d.st.ListAuditEvents(ctx, d.admin.TenantID, 100)
		actions := map[string]int{}
		for _, e := range events {
			actions[e.Action]++
			if strings.Contains(e.Details, secret) || strings.Contains(e.Details, newKey) {
				t.Errorf("audit holds a secret: %+v", e)
			}
		}
		if actions["provider.create"] != 2 || actions["provider.update"] < 4 || actions["provider.delete"] != 1 {
			t.Errorf("audit actions %v", actions)
		}
	})
}

func TestTestProvider(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		g := newGateway(t, "gw")
		d := newDeliveryEnv(t, b, httpProvider("gw", store.RolePrimary, g))
		ctx := context.Background()
		res, err := d.eng.TestProvider(ctx, d.admin, "gw", engine.ProviderTest{To: "+1 555 010 0020"})
		if err != nil || !res.Sent {
			t.Fatalf("test send: %+v %v", res, err)
		}
		reqs := g.requestsTo("+15550100020")
		if len(reqs) != 1 || !strings.Contains(reqs[0].Text, "test message") || sixDigits.MatchString(reqs[0].Text) {
			t.Errorf("test message %+v", reqs)
		}
		g.fail(1, 503)
		res, err = d.eng.TestProvider(ctx, d.admin, "gw", engine.ProviderTest{To: "+15550100020"})
		if err != nil || res.Sent || !strings.Contains(res.Error, "503") || strings.Contains(res.Error, "try later") {
			t.Errorf("failed test send: %+v %v", res, err)
		}
		if _, err := d.eng.TestProvider(ctx, d.admin, "gw", engine.ProviderTest{To: "+15550100020", Channel: "viber"}); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("a channel the provider lacks: %v", err)
		}
		if _, err := d.eng.TestProvider(ctx, d.admin, "gw", engine.ProviderTest{To: "not a number"}); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("a bad recipient: %v", err)
		}
		if _, err := d.eng.TestProvider(ctx, d.admin, "missing", engine.ProviderTest{To: "+15550100020"}); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("unknown provider: %v", err)
		}
		// Test sends count against the recipient's send limit (5 per 10 minutes by default).
		var rl *engine.RateLimitError
		for i := 0; ; i++ {
			_, err := d.eng.TestProvider(ctx, d.admin, "gw", engine.ProviderTest{To: "+15550100020"})
			if errors.As(err, &rl) {
				if i != 3 || rl.Scope != "recipient" {
					t.Errorf("refused after %d more sends, scope %s", i, rl.Scope)
				}
				break
			}
			if err != nil || i > 10 {
				t.Fatalf("test send %d: %v", i, err)
			}
		}
	})
}

// Receipts a provider sends to a URL it learnt from otpd: the public URL plus the token.
func TestReceiptURL(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		g := newGateway(t, "gw")
		spec := httpProvider("gw", store.RolePrimary, g)
		d := newDeliveryEnv(t, b, spec)
		cfg := d.eng.SenderConfig(spec)
		u, err := url.Parse(cfg.ReceiptURL)
		if err != nil || u.Host != "otpd.example" || u.Path != "/v1/receipts/gw" || u.Query().Get("token") != spec.Secrets[engine.ReceiptTokenSecret] {
			t.Errorf("receipt URL %q", cfg.ReceiptURL)
		}
		if _, ok := cfg.Secrets[engine.ReceiptTokenSecret]; ok {
			t.Error("the receipt token is handed to the provider type as a secret")
		}
	})
}

// A tenant's providers may not reach the deployment's own network: loopback, private and
// link-local addresses (the cloud metadata service at 169.254.169.254) are refused at connect
// time — by test sends and by the outbox worker alike — unless the operator allows them. The
// configuration file's providers are not restricted.
func TestTenantProviderPrivateDestinations(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		deployment, tenantGW := newGateway(t, "dep"), newGateway(t, "own")
		d := newDeliveryEnvWith(t, b, engine.DeliveryOptions{}, httpProvider("dep", store.RolePrimary, deployment))
		ctx := context.Background()

		// The deployment's provider on loopback delivers.
		s := d.start(t, engine.ChannelSMS, "+15550100030")
		d.run(t)
		if reqs := deployment.requestsTo("+15550100030"); len(reqs) != 1 {
			t.Fatalf("the configuration file's provider on loopback: %d requests", len(reqs))
		} else {
			d.verify(t, s.ID, reqs[0].Text)
		}

		port := tenantGW.srv.Listener.Addr().(*net.TCPAddr).Port
		metadata := `{"url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/", "method": "GET",
			"headers": {"Metadata-Flavor": "Google"}, "success": {"contains": "AccessKeyId"},
			"message_id": {"json_path": "Token"}, "timeout": "2s"}`
		byName := strings.Replace(string(tenantGW.settings()), "127.0.0.1", "localhost", 1)
		create := func(in engine.ProviderInput) string {
			t.Helper()
			v, err := d.eng.CreateProvider(ctx, d.admin, in)
			if err != nil {
				t.Fatalf("create %s: %v", in.Name, err)
			}
			return v.ID
		}
		loop := create(engine.ProviderInput{Name: "loopback", Type: "http", Channels: []string{"sms"}, Settings: tenantGW.settings()})
		meta := create(engine.ProviderInput{Name: "metadata", Type: "http", Channels: []string{"sms"}, Role: "secondary",
			Settings: json.RawMessage(metadata)})
		named := create(engine.ProviderInput{Name: "by name", Type: "http", Channels: []string{"viber"}, Settings: json.RawMessage(byName)})
		tw := create(engine.ProviderInput{Name: "twilio at metadata", Type: "twilio", Channels: []string{"voice"},
			Settings: json.RawMessage(`{"account_sid": "AC123", "from": "+15005550006", "base_url": "http://169.254.169.254", "timeout": "2s"}`),
			Secrets:  map[string]string{"auth_token": "tok"}})
		for i, id := range []string{loop, meta, named, tw} {
			to := fmt.Sprintf("+1555010004%d", i)
			res, err := d.eng.TestProvider(ctx, d.admin, id, engine.ProviderTest{To: to})
			if err != nil {
				t.Fatalf("test send %d: %v", i, err)
			}
			if res.Sent || !strings.Contains(res.Error, "not a public address") {
				t.Errorf("test send through %d: %+v, want refused as not public", i, res)
			}
		}
		if n := len(tenantGW.requestsTo("+15550100040")) + len(tenantGW.requestsTo("+15550100042")); n != 0 {
			t.Errorf("the loopback gateway got %d test requests (port %d)", n, port)
		}

		// The worker refuses too: the tenant's SMS route (loopback, then metadata) sends nothing.
		s2 := d.start(t, engine.ChannelSMS, "+15550100050")
		d.run(t) // the primary
		d.run(t) // the secondary, at once
		if n := len(tenantGW.requestsTo("+15550100050")); n != 0 {
			t.Errorf("the worker sent %d requests to the tenant's loopback gateway", n)
		}
		m := d.messages(t, s2.ID)[0]
		if m.Status == store.MsgSent || !strings.Contains(m.LastError, "not a public address") {
			t.Errorf("message through refused providers: status %s, error %q", m.Status, m.LastError)
		}
		if got := d.attemptProviders(t, m.ID); strings.Join(got, ",") != loop+":error,"+meta+":error" {
			t.Errorf("attempts %v", got)
		}
	})
}

// With delivery.allow_private_destinations the operator lets tenants' providers reach private
// addresses.
func TestTenantProviderPrivateDestinationsAllowed(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		g := newGateway(t, "own")
		d := newDeliveryEnvWith(t, b, engine.DeliveryOptions{AllowPrivateDestinations: true})
		ctx := context.Background()
		v, err := d.eng.CreateProvider(ctx, d.admin, engine.ProviderInput{Name: "loopback", Type: "http",
			Channels: []string{"sms"}, Settings: g.settings()})
		if err != nil {
			t.Fatal(err)
		}
		if res, err := d.eng.TestProvider(ctx, d.admin, v.ID, engine.ProviderTest{To: "+15550100060"}); err != nil || !res.Sent {
			t.Fatalf("test send: %+v %v", res, err)
		}
		s := d.start(t, engine.ChannelSMS, "+15550100061")
		d.run(t)
		if reqs := g.requestsTo("+15550100061"); len(reqs) != 1 {
			t.Fatalf("%d requests", len(reqs))
		} else {
			d.verify(t, s.ID, reqs[0].Text)
		}
	})
}
