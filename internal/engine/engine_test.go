package engine_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/storetest"
	"github.com/otpd/otpd/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// fixture is an engine over a real store with a fake clock and one tenant.
type fixture struct {
	eng   *engine.Engine
	st    store.Store
	clk   *clock.Fake
	kr    *keys.Keyring
	admin engine.Principal
	dsn   string
}

var testKey = func() []byte {
	k := make([]byte, keys.MasterKeySize)
	for i := range k {
		k[i] = byte(i * 7)
	}
	return k
}()

func newEngine(t *testing.T, st store.Store, clk clock.Clock, cfg engine.Config, channels ...string) *engine.Engine {
	t.Helper()
	kr, err := keys.NewKeyring(testKey)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Options{Store: st, Keys: kr, Clock: clk, Config: cfg, Channels: channels})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func setup(t *testing.T, b storetest.Backend, cfg engine.Config) *fixture {
	t.Helper()
	dsn := b.NewDSN(t)
	st := storetest.Open(t, dsn)
	clk := clock.NewFake(t0)
	e := newEngine(t, st, clk, cfg, engine.ChannelEmail)
	tid, key, err := e.Bootstrap(context.Background(), "")
	if err != nil || key == "" {
		t.Fatalf("bootstrap: %v (key %q)", err, key)
	}
	kr, _ := keys.NewKeyring(testKey)
	return &fixture{eng: e, st: st, clk: clk, kr: kr, admin: engine.Principal{TenantID: tid, Role: store.RoleAdmin}, dsn: dsn}
}

func (f *fixture) start(t *testing.T, r engine.StartRequest) *engine.Session {
	t.Helper()
	if r.Channel == "" {
		r.Channel = engine.ChannelNone
	}
	if r.To == "" {
		r.To = "alice@example.com"
	}
	s, err := f.eng.Start(context.Background(), f.admin, r)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	return s
}

func (f *fixture) check(t *testing.T, id, code string) *engine.CheckResult {
	t.Helper()
	r, err := f.eng.Check(context.Background(), f.admin, id, code)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	return r
}

// wrongCode returns a code of the right length that is not code.
func wrongCode(code string) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

func TestStartAndVerifyOnce(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		s := f.start(t, engine.StartRequest{})
		if len(s.Code) != 6 || s.Status != "pending" || s.AttemptsLeft() != 5 || s.SendsLeft() != 4 {
			t.Fatalf("start: code %q status %s attempts_left %d sends_left %d", s.Code, s.Status, s.AttemptsLeft(), s.SendsLeft())
		}
		if !s.ExpiresAt.Equal(t0.Add(5 * time.Minute)) {
			t.Errorf("expires_at %s, want created+5m", s.ExpiresAt)
		}
		r := f.check(t, s.ID, s.Code)
		if !r.Valid() || r.Session.Status != "verified" || r.Session.FinishedAt == nil {
			t.Fatalf("first check: valid %v status %s", r.Valid(), r.Session.Status)
		}
		r = f.check(t, s.ID, s.Code)
		if r.Valid() || r.Outcome != engine.OutcomeFinished || r.Session.Status != "verified" {
			t.Fatalf("second check of the right code: valid %v outcome %v", r.Valid(), r.Outcome)
		}
	})
}

func TestExpiry(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		s := f.start(t, engine.StartRequest{TTL: 60 * time.Second})
		f.clk.Advance(59 * time.Second)
		if g, _ := f.eng.Get(context.Background(), f.admin, s.ID); g.Status != "pending" {
			t.Fatalf("at 59s status %s, want pending", g.Status)
		}
		f.clk.Advance(2 * time.Second) // lifetime + 1 s
		r := f.check(t, s.ID, s.Code)
		if r.Valid() || r.Session.Status != "expired" || r.Outcome != engine.OutcomeFinished {
			t.Fatalf("after expiry: valid %v status %s", r.Valid(), r.Session.Status)
		}
		g, err := f.eng.Get(context.Background(), f.admin, s.ID)
		if err != nil || g.Status != "expired" || g.FinishedAt == nil || !g.FinishedAt.Equal(s.ExpiresAt) {
			t.Fatalf("get after expiry: %+v %v", g, err)
		}
		if g.Attempts != 0 {
			t.Errorf("an expired session spent a try: attempts %d", g.Attempts)
		}
	})
}

func TestExpiryOnListAndGet(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		s := f.start(t, engine.StartRequest{TTL: 30 * time.Second})
		f.clk.Advance(31 * time.Second)
		list, err := f.eng.List(context.Background(), f.admin, engine.ListFilter{Status: "expired"})
		if err != nil || len(list) != 1 || list[0].ID != s.ID || list[0].FinishedAt == nil {
			t.Fatalf("list expired: %v %+v", err, list)
		}
	})
}

func TestTryBudget(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		s := f.start(t, engine.StartRequest{MaxAttempts: 3})
		bad := wrongCode(s.Code)
		for i, want := range []engine.Outcome{engine.OutcomeWrong, engine.OutcomeWrong, engine.OutcomeExhausted} {
			r := f.check(t, s.ID, bad)
			if r.Outcome != want || r.Session.AttemptsLeft() != max(0, 2-i) {
				t.Fatalf("wrong #%d: outcome %v attempts_left %d", i+1, r.Outcome, r.Session.AttemptsLeft())
			}
		}
		r := f.check(t, s.ID, s.Code) // the right code after the budget is spent
		if r.Valid() || r.Session.Status != "failed" || r.Outcome != engine.OutcomeFinished {
			t.Fatalf("right code after exhaustion: valid %v status %s", r.Valid(), r.Session.Status)
		}
		if r.Session.Attempts != 3 {
			t.Errorf("attempts %d, want 3 (no try evaluated after failure)", r.Session.Attempts)
		}
	})
}

func TestMalformedCodeSpendsNoTry(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		s := f.start(t, engine.StartRequest{})
		for _, code := range []string{"", "12345", "1234567", "12345a", "１２３４５６", "123 456", "123456\x00", string(make([]byte, 10000))} {
			_, err := f.eng.Check(context.Background(), f.admin, s.ID, code)
			if !errors.Is(err, engine.ErrMalformedCode) {
				t.Errorf("code %q: err %v, want ErrMalformedCode", code, err)
			}
		}
		g, _ := f.eng.Get(context.Background(), f.admin, s.ID)
		if g.Attempts != 0 {
			t.Fatalf("malformed codes spent %d tries", g.Attempts)
		}
	})
}

func TestResendDoesNotRefillTries(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		s := f.start(t, engine.StartRequest{MaxAttempts: 5})
		for range 3 {
			f.check(t, s.ID, wrongCode(s.Code))
		}
		f.clk.Advance(31 * time.Second)
		rs, err := f.eng.Resend(context.Background(), f.admin, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if rs.AttemptsLeft() != 2 || rs.SendsLeft() != 3 || rs.Code == "" {
			t.Fatalf("after resend: attempts_left %d (want 2) sends_left %d code %q", rs.AttemptsLeft(), rs.SendsLeft(), rs.Code)
		}
		if !rs.ExpiresAt.Equal(f.clk.Now().Add(5 * time.Minute)) {
			t.Errorf("resend did not restart the lifetime: %s", rs.ExpiresAt)
		}
		if rs.Code != s.Code { // the old code is dead (unless the new one happens to equal it)
			r := f.check(t, s.ID, s.Code)
			if r.Valid() || r.Session.AttemptsLeft() != 1 {
				t.Fatalf("old code after resend: valid %v attempts_left %d", r.Valid(), r.Session.AttemptsLeft())
			}
		}
		if r := f.check(t, s.ID, rs.Code); !r.Valid() {
			t.Fatalf("new code refused: %v", r.Outcome)
		}
	})
}

func TestResendCooldownAndMaxSends(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{MaxSends: 3, Limits: engine.Limits{Recipient: engine.Limit{Count: 100, Window: time.Hour}}})
		s := f.start(t, engine.StartRequest{})
		_, err := f.eng.Resend(context.Background(), f.admin, s.ID)
		var rl *engine.RateLimitError
		if !errors.As(err, &rl) || rl.Scope != "cooldown" || rl.RetryAfter != 30*time.Second {
			t.Fatalf("resend at once: %v, want cooldown 30s", err)
		}
		for i := range 2 {
			f.clk.Advance(30 * time.Second)
			if _, err := f.eng.Resend(context.Background(), f.admin, s.ID); err != nil {
				t.Fatalf("resend %d: %v", i+1, err)
			}
		}
		f.clk.Advance(30 * time.Second)
		if _, err := f.eng.Resend(context.Background(), f.admin, s.ID); !errors.Is(err, engine.ErrMaxSends) {
			t.Fatalf("4th send: %v, want ErrMaxSends", err)
		}
		f.eng.Cancel(context.Background(), f.admin, s.ID)
		_, err = f.eng.Resend(context.Background(), f.admin, s.ID)
		var fe *engine.FinishedError
		if !errors.As(err, &fe) || fe.Status != "canceled" {
			t.Fatalf("resend after cancel: %v", err)
		}
	})
}

func TestCancel(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		s := f.start(t, engine.StartRequest{})
		c, err := f.eng.Cancel(context.Background(), f.admin, s.ID)
		if err != nil || c.Status != "canceled" || c.FinishedAt == nil {
			t.Fatalf("cancel: %v %+v", err, c)
		}
		if r := f.check(t, s.ID, s.Code); r.Valid() || r.Session.Status != "canceled" {
			t.Fatalf("check after cancel: %v %s", r.Valid(), r.Session.Status)
		}
		_, err = f.eng.Cancel(context.Background(), f.admin, s.ID)
		var fe *engine.FinishedError
		if !errors.As(err, &fe) || fe.Status != "canceled" {
			t.Fatalf("second cancel: %v", err)
		}
	})
}

func TestCodeBoundToSession(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		a := f.start(t, engine.StartRequest{Purpose: "login"})
		bb := f.start(t, engine.StartRequest{Purpose: "reset"})
		if a.Code == bb.Code {
			t.Skip("the two random codes collided (1 in a million); nothing to cross-check")
		}
		if r := f.check(t, bb.ID, a.Code); r.Valid() {
			t.Fatal("session A's code verified session B")
		}
		if r := f.check(t, a.ID, a.Code); !r.Valid() {
			t.Fatal("session A's own code refused")
		}
	})
}

// TestConcurrentChecksOneSuccess: 50 concurrent correct checks → exactly one valid. On
// PostgreSQL the checks are split over two engines with their own connection pools, as two
// otpd instances would be.
func TestConcurrentChecksOneSuccess(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		engines := []*engine.Engine{f.eng}
		if f.st.Dialect() == "postgres" {
			engines = append(engines, newEngine(t, storetest.Open(t, f.dsn), f.clk, engine.Config{}))
		}
		for round := range 3 {
			s := f.start(t, engine.StartRequest{To: "race" + string(rune('a'+round)) + "@example.com"})
			var valid, finished atomic.Int32
			var wg sync.WaitGroup
			startGate := make(chan struct{})
			for i := range 50 {
				wg.Go(func() {
					<-startGate
					r, err := engines[i%len(engines)].Check(context.Background(), f.admin, s.ID, s.Code)
					if err != nil {
						t.Errorf("check: %v", err)
						return
					}
					if r.Valid() {
						valid.Add(1)
					} else if r.Outcome == engine.OutcomeFinished && r.Session.Status == "verified" {
						finished.Add(1)
					}
				})
			}
			close(startGate)
			wg.Wait()
			if valid.Load() != 1 || finished.Load() != 49 {
				t.Fatalf("round %d: %d valid, %d saw verified; want exactly 1 and 49", round, valid.Load(), finished.Load())
			}
		}
	})
}

// TestConcurrentWrongChecksAllCounted: concurrent wrong codes spend exactly the budget and no
// guess is evaluated beyond it.
func TestConcurrentWrongChecksAllCounted(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		s := f.start(t, engine.StartRequest{MaxAttempts: 5})
		var evaluated atomic.Int32
		var wg sync.WaitGroup
		for range 30 {
			wg.Go(func() {
				r, err := f.eng.Check(context.Background(), f.admin, s.ID, wrongCode(s.Code))
				if err != nil {
					t.Errorf("check: %v", err)
					return
				}
				if r.Outcome == engine.OutcomeWrong || r.Outcome == engine.OutcomeExhausted {
					evaluated.Add(1)
				}
			})
		}
		wg.Wait()
		g, _ := f.eng.Get(context.Background(), f.admin, s.ID)
		if evaluated.Load() != 5 || g.Attempts != 5 || g.Status != "failed" {
			t.Fatalf("evaluated %d, stored attempts %d, status %s; want 5, 5, failed", evaluated.Load(), g.Attempts, g.Status)
		}
	})
}

func TestSendLimitsNormalisedKeys(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{Limits: engine.Limits{
			Recipient: engine.Limit{Count: 3, Window: 10 * time.Minute},
			IP:        engine.Limit{Count: 4, Window: 5 * time.Minute},
		}})
		ctx := context.Background()
		for _, to := range []string{"+1 (415) 555-0100", "+14155550100", "0014155550100"} {
			if _, err := f.eng.Start(ctx, f.admin, engine.StartRequest{Channel: "none", To: to}); err != nil {
				t.Fatalf("start %q: %v", to, err)
			}
		}
		_, err := f.eng.Start(ctx, f.admin, engine.StartRequest{Channel: "none", To: "+14155550100"})
		var rl *engine.RateLimitError
		if !errors.As(err, &rl) || rl.Scope != "recipient" || rl.RetryAfter <= 0 || rl.RetryAfter > 10*time.Minute {
			t.Fatalf("4th start for one number: %v, want a recipient limit", err)
		}
		// Case-folded emails share a bucket too.
		for _, to := range []string{"Alice@X.com", "alice@x.com", "ALICE@x.COM"} {
			if _, err := f.eng.Start(ctx, f.admin, engine.StartRequest{Channel: "email", To: to}); err != nil {
				t.Fatalf("start %q: %v", to, err)
			}
		}
		if _, err := f.eng.Start(ctx, f.admin, engine.StartRequest{Channel: "email", To: "alice@x.com"}); !errors.As(err, &rl) {
			t.Fatalf("4th email start: %v", err)
		}
		// Per-IP: 4 per 5 minutes across recipients.
		for i := range 4 {
			to := "ip" + string(rune('a'+i)) + "@example.com"
			if _, err := f.eng.Start(ctx, f.admin, engine.StartRequest{Channel: "none", To: to, ClientIP: "198.51.100.7"}); err != nil {
				t.Fatalf("ip start %d: %v", i, err)
			}
		}
		_, err = f.eng.Start(ctx, f.admin, engine.StartRequest{Channel: "none", To: "ipz@example.com", ClientIP: "198.51.100.7"})
		if !errors.As(err, &rl) || rl.Scope != "ip" {
			t.Fatalf("5th start from one IP: %v", err)
		}
		// The window slides: after it passes, the recipient may get codes again.
		f.clk.Advance(10*time.Minute + time.Second)
		if _, err := f.eng.Start(ctx, f.admin, engine.StartRequest{Channel: "none", To: "+14155550100"}); err != nil {
			t.Fatalf("after the window: %v", err)
		}
		// A refused start wrote nothing but its audit record.
		list, _ := f.eng.List(ctx, f.admin, engine.ListFilter{Recipient: "+14155550100", Limit: 100})
		if len(list) != 4 {
			t.Fatalf("%d sessions for the number, want 4 (3 + 1 after the window)", len(list))
		}
		events, err := f.st.ListAuditEvents(ctx, f.admin.TenantID, 100)
		if err != nil {
			t.Fatal(err)
		}
		refused := map[string]int{}
		for _, ev := range events {
			if ev.Action == "verification.start" {
				refused[ev.Result]++
			}
		}
		if refused["refused:recipient"] != 2 || refused["refused:ip"] != 1 {
			t.Fatalf("audited refusals %v, want 2 recipient and 1 ip", refused)
		}
	})
}

func TestTenantIsolation(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		s := f.start(t, engine.StartRequest{})
		otherID, otherKey, err := f.eng.CreateTenant(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		other, err := f.eng.Authenticate(ctx, otherKey)
		if err != nil || other.TenantID != otherID {
			t.Fatalf("authenticate other tenant: %v", err)
		}
		if _, err := f.eng.Get(ctx, other, s.ID); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("get: %v", err)
		}
		if _, err := f.eng.Check(ctx, other, s.ID, s.Code); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("check: %v", err)
		}
		if _, err := f.eng.Resend(ctx, other, s.ID); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("resend: %v", err)
		}
		if _, err := f.eng.Cancel(ctx, other, s.ID); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("cancel: %v", err)
		}
		if l, _ := f.eng.List(ctx, other, engine.ListFilter{}); len(l) != 0 {
			t.Errorf("other tenant lists %d sessions", len(l))
		}
		if r := f.check(t, s.ID, s.Code); !r.Valid() {
			t.Error("the owner's check failed after the other tenant's attempts")
		}
	})
}

func TestIdempotencyKey(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{Limits: engine.Limits{Recipient: engine.Limit{Count: 1, Window: time.Hour}}})
		ctx := context.Background()
		r := engine.StartRequest{Channel: "none", To: "idem@example.com", IdempotencyKey: "k-1"}
		a, err := f.eng.Start(ctx, f.admin, r)
		if err != nil {
			t.Fatal(err)
		}
		// A replay returns the same session, does not take a send slot (the limit is 1) and does
		// not disclose the code again.
		again, err := f.eng.Start(ctx, f.admin, r)
		if err != nil || again.ID != a.ID || !again.Replayed || again.Code != "" {
			t.Fatalf("replay: %v id %s replayed %v code %q", err, again.ID, again.Replayed, again.Code)
		}
		r.To = "other@example.com"
		if _, err := f.eng.Start(ctx, f.admin, r); !errors.Is(err, engine.ErrIdempotencyMismatch) {
			t.Fatalf("same key, other body: %v", err)
		}
		// Another application's identical key and body is its own request, not a replay.
		app, err := f.eng.CreateApplication(ctx, f.admin, "other app")
		if err != nil {
			t.Fatal(err)
		}
		ap, _ := f.eng.Authenticate(ctx, app.APIKey)
		r.To = "idem2@example.com"
		mine, err := f.eng.Start(ctx, ap, r)
		if err != nil || mine.Replayed || mine.ID == a.ID {
			t.Fatalf("another application with the same key: %+v %v", mine, err)
		}
	})
}

func TestValidation(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		cases := []struct {
			r     engine.StartRequest
			field string
		}{
			{engine.StartRequest{Channel: "pigeon", To: "a@b.co"}, "channel"},
			{engine.StartRequest{Channel: "email", To: "not-an-address"}, "to"},
			{engine.StartRequest{Channel: "email", To: "Alice <a@b.co>"}, "to"},
			{engine.StartRequest{Channel: "sms", To: "0412 345 678"}, "to"},
			{engine.StartRequest{Channel: "none", To: "x", CodeLength: 5}, "code_length"},
			{engine.StartRequest{Channel: "none", To: "x", CodeLength: 11}, "code_length"},
			{engine.StartRequest{Channel: "none", To: "x", TTL: 29 * time.Second}, "ttl_seconds"},
			{engine.StartRequest{Channel: "none", To: "x", TTL: 11 * time.Minute}, "ttl_seconds"},
			{engine.StartRequest{Channel: "none", To: "x", MaxAttempts: 11}, "max_attempts"},
			{engine.StartRequest{Channel: "none", To: "x", Purpose: "drop table;"}, "purpose"},
			{engine.StartRequest{Channel: "none", To: "x", ClientIP: "300.1.1.1"}, "client_ip"},
			{engine.StartRequest{Channel: "none", To: ""}, "to"},
		}
		for _, c := range cases {
			_, err := f.eng.Start(ctx, f.admin, c.r)
			var ve engine.ValidationErrors
			if !errors.As(err, &ve) || ve[0].Field != c.field {
				t.Errorf("%+v: err %v, want a %s error", c.r, err, c.field)
			}
		}
		// sms has no provider in this engine.
		if _, err := f.eng.Start(ctx, f.admin, engine.StartRequest{Channel: "sms", To: "+61401629754"}); !errors.Is(err, engine.ErrChannelUnavailable) {
			t.Errorf("sms without provider: %v", err)
		}
		if l, _ := f.eng.List(ctx, f.admin, engine.ListFilter{}); len(l) != 0 {
			t.Errorf("refused starts wrote %d sessions", len(l))
		}
	})
}

// TestPurgeNeverRevives: the janitor expires abandoned sessions, deletes finished ones past the
// retention, keeps fresh ones, and nothing it does makes a code work again.
func TestPurgeNeverRevives(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{Retention: 2 * time.Hour})
		ctx := context.Background()
		done := f.start(t, engine.StartRequest{To: "a@example.com"})
		f.check(t, done.ID, done.Code)
		expiring := f.start(t, engine.StartRequest{To: "b@example.com", TTL: time.Minute})
		f.clk.Advance(3 * time.Hour)
		pending := f.start(t, engine.StartRequest{To: "c@example.com"})
		res, err := f.eng.Purge(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The verified session is past retention; the abandoned one is expired by the janitor
		// (finished at its expires_at, also past retention) and goes too; the fresh one stays.
		if res.Expired != 1 || res.Challenges != 2 {
			t.Errorf("expired %d and purged %d challenges, want 1 and 2", res.Expired, res.Challenges)
		}
		if _, err := f.eng.Get(ctx, f.admin, done.ID); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("purged session still readable: %v", err)
		}
		if _, err := f.eng.Check(ctx, f.admin, done.ID, done.Code); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("check of purged session: %v", err)
		}
		if _, err := f.eng.Check(ctx, f.admin, expiring.ID, expiring.Code); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("abandoned session after purge: %v", err)
		}
		if r := f.check(t, pending.ID, pending.Code); !r.Valid() {
			t.Error("a fresh session did not survive the purge")
		}
	})
}

func TestAuthenticate(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		app, err := f.eng.CreateApplication(ctx, f.admin, "shop")
		if err != nil {
			t.Fatal(err)
		}
		p, err := f.eng.Authenticate(ctx, app.APIKey)
		if err != nil || p.Role != store.RoleApp || p.ApplicationID != app.ID {
			t.Fatalf("app key: %+v %v", p, err)
		}
		if _, err := f.eng.CreateApplication(ctx, p, "nope"); !errors.Is(err, engine.ErrForbidden) {
			t.Errorf("app key created an application: %v", err)
		}
		for _, bad := range []string{"", "otpd_0000000000000000_AAAA", app.APIKey + "x", app.APIKey[:len(app.APIKey)-1]} {
			if _, err := f.eng.Authenticate(ctx, bad); !errors.Is(err, engine.ErrUnauthenticated) {
				t.Errorf("key %q: %v", bad, err)
			}
		}
		if err := f.eng.DeleteApplication(ctx, f.admin, app.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.eng.Authenticate(ctx, app.APIKey); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Errorf("deleted application's key still works: %v", err)
		}
	})
}

func TestBootstrapWithGivenKey(t *testing.T) {
	st := storetest.Open(t, storetest.Backends()[0].NewDSN(t))
	e := newEngine(t, st, clock.NewFake(t0), engine.Config{})
	ctx := context.Background()
	if _, _, err := e.Bootstrap(ctx, "short"); err == nil {
		t.Fatal("a short bootstrap key was accepted")
	}
	key := "my-operator-chosen-admin-key-0123456789"
	tid, got, err := e.Bootstrap(ctx, key)
	if err != nil || got != key {
		t.Fatalf("bootstrap: %v %q", err, got)
	}
	p, err := e.Authenticate(ctx, key)
	if err != nil || p.TenantID != tid || !p.IsAdmin() {
		t.Fatalf("authenticate bootstrap key: %+v %v", p, err)
	}
	if _, again, err := e.Bootstrap(ctx, "another-key-that-is-long-enough-000000"); err != nil || again != "" {
		t.Fatalf("second bootstrap created a key: %q %v", again, err)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []engine.Config{
		{CodeLength: 5},
		{CodeLength: 11},
		{MaxTTL: 11 * time.Minute},
		{TTL: 10 * time.Second},
		{MaxAttempts: 11},
		{MaxSends: 11},
		{Limits: engine.Limits{Recipient: engine.Limit{Count: 3}}},
		{Retention: time.Minute},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (engine.Config{}).Validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
}

// TestNoPlaintextCodeAtRest: after sends on both channels, no stored byte sequence (the SQLite
// database and WAL files, or every row of every PostgreSQL table as text, bytea in hex) contains
// a code. 10-digit codes make an accidental match with other stored digits negligible.
func TestNoPlaintextCodeAtRest(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		var codes []string
		for i := range 3 {
			s := f.start(t, engine.StartRequest{To: fmt.Sprintf("none%d@example.com", i), CodeLength: 10})
			codes = append(codes, s.Code)
			f.clk.Advance(31 * time.Second)
			rs, err := f.eng.Resend(ctx, f.admin, s.ID)
			if err != nil {
				t.Fatal(err)
			}
			codes = append(codes, rs.Code)
		}
		// Email sessions: the code travels in the outbox message, sealed; open it to learn it.
		for i := range 3 {
			s, err := f.eng.Start(ctx, f.admin, engine.StartRequest{Channel: "email", To: fmt.Sprintf("mail%d@example.com", i), CodeLength: 10})
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := f.st.ListMessagesByChallenge(ctx, f.admin.TenantID, s.ID)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("outbox: %v %d", err, len(msgs))
			}
			plain, err := f.kr.Open(msgs[0].Body, []byte("messages:"+msgs[0].ID))
			if err != nil {
				t.Fatal(err)
			}
			code := regexp.MustCompile(`[0-9]{10}`).FindString(string(plain))
			if code == "" {
				t.Fatalf("no code in the opened message: %s", plain)
			}
			codes = append(codes, code)
		}
		dump := storetest.Dump(t, f.st, f.dsn)
		if !bytes.Contains(dump, []byte("mail1@example.com")) {
			t.Fatal("the dump does not contain a recipient: it did not read the data")
		}
		for _, code := range codes {
			if bytes.Contains(dump, []byte(code)) || bytes.Contains(dump, []byte(hex.EncodeToString([]byte(code)))) {
				t.Errorf("the plaintext code %s is stored", code)
			}
		}
	})
}

// TestSurfacesOwnTheirSessions: the native Check, Resend and Cancel do not act on another
// surface's session (a user OTP, a device's challenge, a BSG or OpenIAM session), so the native
// API is no way around that surface's rules; reading them stays possible.
func TestSurfacesOwnTheirSessions(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		for i, surface := range []string{engine.SurfaceUserOTP, engine.SurfaceDevice, engine.SurfaceBSG, engine.SurfaceOpenIAM} {
			s := f.start(t, engine.StartRequest{To: fmt.Sprintf("owner%d@example.com", i), Surface: surface})
			f.clk.Advance(31 * time.Second)
			if _, err := f.eng.Check(ctx, f.admin, s.ID, s.Code); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("%s: native check: %v", surface, err)
			}
			if _, err := f.eng.Resend(ctx, f.admin, s.ID); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("%s: native resend: %v", surface, err)
			}
			if _, err := f.eng.Cancel(ctx, f.admin, s.ID); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("%s: native cancel: %v", surface, err)
			}
			g, err := f.eng.Get(ctx, f.admin, s.ID)
			if err != nil || g.Status != "pending" || g.Attempts != 0 || g.Sends != 1 {
				t.Errorf("%s: the session was touched: %+v %v", surface, g, err)
			}
		}
	})
}

// TestJanitorExpiresAbandonedSessions: a session nobody reads again is expired by the janitor
// at its lifetime (finished_at = expires_at, as a read would set it), not kept pending forever.
func TestJanitorExpiresAbandonedSessions(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		s := f.start(t, engine.StartRequest{TTL: time.Minute})
		f.clk.Advance(2 * time.Minute)
		res, err := f.eng.Purge(ctx)
		if err != nil || res.Expired != 1 || res.Challenges != 0 {
			t.Fatalf("purge: %+v %v", res, err)
		}
		c, err := f.st.GetChallenge(ctx, f.admin.TenantID, s.ID)
		if err != nil || c.Status != "expired" || c.FinishedAt == nil || !c.FinishedAt.Equal(s.ExpiresAt) {
			t.Fatalf("after the janitor: %+v %v", c, err)
		}
	})
}

// TestBootstrapRace: instances starting together on one database all come up; exactly one of
// them creates the default tenant and its admin key.
func TestBootstrapRace(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		dsn := b.NewDSN(t)
		for round := range 3 {
			if round > 0 {
				dsn = b.NewDSN(t)
			}
			var engines []*engine.Engine
			for range 4 {
				engines = append(engines, newEngine(t, storetest.Open(t, dsn), clock.NewFake(t0), engine.Config{}))
			}
			var created atomic.Int32
			tenants := make([]string, len(engines))
			var wg sync.WaitGroup
			for i, e := range engines {
				wg.Go(func() {
					tid, key, err := e.Bootstrap(context.Background(), "")
					if err != nil {
						t.Errorf("instance %d: %v", i, err)
					}
					if key != "" {
						created.Add(1)
					}
					tenants[i] = tid
				})
			}
			wg.Wait()
			if created.Load() != 1 {
				t.Fatalf("round %d: %d instances created an admin key, want 1", round, created.Load())
			}
			for _, tid := range tenants {
				if tid != tenants[0] || tid == "" {
					t.Fatalf("round %d: instances disagree on the default tenant: %v", round, tenants)
				}
			}
		}
	})
}

// TestIPv6LimitPerSlash64: per-IP limits count an IPv6 user's whole /64, so rotating addresses
// inside it does not buy more sends; another /64 has its own budget.
func TestIPv6LimitPerSlash64(t *testing.T) {
	f := setup(t, storetest.Backends()[0], engine.Config{Limits: engine.Limits{IP: engine.Limit{Count: 3, Window: 5 * time.Minute}}})
	ctx := context.Background()
	for i := range 3 {
		if _, err := f.eng.Start(ctx, f.admin, engine.StartRequest{Channel: "none", To: fmt.Sprintf("v6-%d@example.com", i),
			ClientIP: fmt.Sprintf("2001:db8:1:2::%x", i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := f.eng.Start(ctx, f.admin, engine.StartRequest{Channel: "none", To: "v6-x@example.com", ClientIP: "2001:db8:1:2:ffff::99"})
	var rl *engine.RateLimitError
	if !errors.As(err, &rl) || rl.Scope != "ip" {
		t.Fatalf("a fourth address in the same /64: %v", err)
	}
	if _, err := f.eng.Start(ctx, f.admin, engine.StartRequest{Channel: "none", To: "v6-y@example.com", ClientIP: "2001:db8:1:3::1"}); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	for ip, want := range map[string]string{"198.51.100.7": "198.51.100.7", "2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64", "::ffff:198.51.100.7": "::ffff:198.51.100.7"} {
		if got := engine.IPLimitKey(ip); got != want {
			t.Errorf("IPLimitKey(%s) = %s, want %s", ip, got, want)
		}
	}
}

// TestConversionMetricPerCountry: sends to one country that are never verified show in the
// started/verified counters by country, which the documented alert divides (SECURITY.md 28).
func TestConversionMetricPerCountry(t *testing.T) {
	st := storetest.Open(t, storetest.Backends()[0].NewDSN(t))
	reg := prometheus.NewRegistry()
	kr, _ := keys.NewKeyring(testKey)
	e, err := engine.New(engine.Options{Store: st, Keys: kr, Clock: clock.NewFake(t0), Metrics: engine.NewMetrics(reg),
		Config: engine.Config{Limits: engine.Limits{Recipient: engine.Limit{Count: 1000, Window: time.Minute}}}})
	if err != nil {
		t.Fatal(err)
	}
	tid, _, err := e.Bootstrap(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	p := engine.Principal{TenantID: tid, Role: store.RoleAdmin}
	ctx := context.Background()
	for i := range 100 { // pumped: Latvian numbers, never verified
		if _, err := e.Start(ctx, p, engine.StartRequest{Channel: "none", To: fmt.Sprintf("+3712%07d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 { // healthy: US numbers, all verified
		s, err := e.Start(ctx, p, engine.StartRequest{Channel: "none", To: fmt.Sprintf("+1415555%04d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := e.Check(ctx, p, s.ID, s.Code); err != nil || !r.Valid() {
			t.Fatal(err)
		}
	}
	counter := func(name string, labels map[string]string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		total := 0.0
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		metrics:
			for _, m := range mf.GetMetric() {
				got := map[string]string{}
				for _, l := range m.GetLabel() {
					got[l.GetName()] = l.GetValue()
				}
				for k, v := range labels {
					if got[k] != v {
						continue metrics
					}
				}
				total += m.GetCounter().GetValue()
			}
		}
		return total
	}
	started := func(country string) float64 {
		return counter("otpd_verifications_started_total", map[string]string{"channel": "none", "country": country})
	}
	verified := func(country string) float64 {
		return counter("otpd_verification_checks_total", map[string]string{"channel": "none", "country": country, "outcome": "verified"})
	}
	if started("LV") != 100 || verified("LV") != 0 || started("US") != 10 || verified("US") != 10 {
		t.Fatalf("LV %v/%v, US %v/%v", verified("LV"), started("LV"), verified("US"), started("US"))
	}
}
