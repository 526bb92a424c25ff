package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/storetest"
)

// ssFixture is an engine with email and SMS providers and metrics over a real store, and the
// key-less self-service principal of its default tenant.
type ssFixture struct {
	eng   *engine.Engine
	st    store.Store
	clk   *clock.Fake
	reg   *prometheus.Registry
	admin engine.Principal
	p     engine.Principal
}

func newSSFixture(t *testing.T, b storetest.Backend, cfg engine.Config) *ssFixture {
	t.Helper()
	st := storetest.Open(t, b.NewDSN(t))
	kr, err := keys.NewKeyring(testKey)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	clk := clock.NewFake(t0)
	e, err := engine.New(engine.Options{Store: st, Keys: kr, Clock: clk, Config: cfg,
		Channels: []string{engine.ChannelEmail, engine.ChannelSMS}, Metrics: engine.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tid, _, err := e.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.SelfServicePrincipal(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return &ssFixture{eng: e, st: st, clk: clk, reg: reg, admin: engine.Principal{TenantID: tid, Role: store.RoleAdmin}, p: p}
}

// refusals returns otpd_send_refusals_total for scope.
func (f *ssFixture) refusals(t *testing.T, scope string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "otpd_send_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "scope" && l.GetValue() == scope {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// audits counts the tenant's audit records of action by result.
func (f *ssFixture) audits(t *testing.T, action string) map[string]int {
	t.Helper()
	events, err := f.st.ListAuditEvents(context.Background(), f.admin.TenantID, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, ev := range events {
		if ev.Action == action {
			out[ev.Result]++
		}
	}
	return out
}

// TestCountryRefusalIsNotARateLimit: an SMS to a country off the tenant's allow-list is
// ErrCountryNotAllowed and a field error on "to" — never a RateLimitError, whose Retry-After
// would tell the client that waiting helps — and it is still counted and audited as "country".
func TestCountryRefusalIsNotARateLimit(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := newSSFixture(t, b, engine.Config{})
		ctx := context.Background()
		if _, err := f.eng.UpdateMessagingSettings(ctx, f.admin, []byte(`{"allowed_countries":["AU"]}`)); err != nil {
			t.Fatal(err)
		}
		_, err := f.eng.SendSelfServiceCode(ctx, f.p, engine.ChannelSMS, "+14155550100", "203.0.113.5")
		var (
			rl *engine.RateLimitError
			ve *engine.ValidationError
		)
		if !errors.Is(err, engine.ErrCountryNotAllowed) || !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("send to US: %v, want ErrCountryNotAllowed and ErrInvalid", err)
		}
		if errors.Is(err, engine.ErrRateLimited) || errors.As(err, &rl) {
			t.Errorf("a country refusal is a rate limit: %v", err)
		}
		if !errors.As(err, &ve) || ve.Field != "to" {
			t.Errorf("field error %+v, want one on to", ve)
		}
		if n := f.refusals(t, "country"); n != 1 {
			t.Errorf("otpd_send_refusals_total{scope=country} = %v, want 1", n)
		}
		if got := f.audits(t, "verification.start"); got["refused:country"] != 1 {
			t.Errorf("audits %v, want one refused:country", got)
		}
		if _, err := f.eng.SendSelfServiceCode(ctx, f.p, engine.ChannelSMS, "+61401629754", "203.0.113.5"); err != nil {
			t.Errorf("send to AU: %v", err)
		}
	})
}

// TestSelfServiceCheckLimit: checks take a slot of the per-IP limit before the moving factor is
// looked up — unknown ones count — keyed on the IPv6 /64 and, without an IP, on one shared
// bucket; refusals are audited and counted; the window slides; count 0 turns the limit off.
func TestSelfServiceCheckLimit(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := newSSFixture(t, b, engine.Config{Tokens: engine.TokenPolicy{SelfServiceChecks: engine.Limit{Count: 2, Window: time.Minute}}})
		ctx := context.Background()
		check := func(ip string) error {
			_, err := f.eng.CheckSelfServiceCode(ctx, f.p, engine.ChannelEmail, 42, "123456", ip)
			return err
		}
		limited := func(err error) bool {
			var rl *engine.RateLimitError
			return errors.As(err, &rl) && rl.Scope == "selfservice_check" && rl.RetryAfter > 0 && rl.RetryAfter <= time.Minute
		}
		for _, ips := range [][]string{
			{"203.0.113.5", "203.0.113.5", "203.0.113.5"},
			{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"}, // one /64
			{"", "", ""}, // no IP: one shared bucket, not no limit
		} {
			for i, ip := range ips {
				err := check(ip)
				if i < 2 && !errors.Is(err, engine.ErrNotFound) {
					t.Fatalf("check %d from %q: %v, want ErrNotFound", i, ip, err)
				}
				if i == 2 && !limited(err) {
					t.Fatalf("check %d from %q: %v, want the check limit", i, ip, err)
				}
			}
		}
		if err := check("2001:db8:1:3::1"); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("another /64: %v", err)
		}
		if n := f.refusals(t, "selfservice_check"); n != 3 {
			t.Errorf("otpd_send_refusals_total{scope=selfservice_check} = %v, want 3", n)
		}
		if got := f.audits(t, "selfservice.check"); got["refused:selfservice_check"] != 3 {
			t.Errorf("audits %v, want 3 refused:selfservice_check", got)
		}
		// The window slides.
		f.clk.Advance(time.Minute + time.Millisecond)
		if err := check("203.0.113.5"); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("after the window: %v", err)
		}

		// Off with count 0.
		off := newSSFixture(t, b, engine.Config{Tokens: engine.TokenPolicy{SelfServiceChecks: engine.Limit{Count: 0, Window: time.Minute}}})
		for i := range 50 {
			if _, err := off.eng.CheckSelfServiceCode(ctx, off.p, engine.ChannelEmail, 42, "123456", "203.0.113.5"); !errors.Is(err, engine.ErrNotFound) {
				t.Fatalf("limit off, check %d: %v", i, err)
			}
		}
	})
}

// TestSelfServiceCheckLimitPolicy: the default is 30 per 5 minutes; bad values are refused.
func TestSelfServiceCheckLimitPolicy(t *testing.T) {
	if l := engine.DefaultConfig().Tokens.SelfServiceChecks; l != (engine.Limit{Count: 30, Window: 5 * time.Minute}) {
		t.Errorf("default %+v", l)
	}
	for _, l := range []engine.Limit{{Count: -1, Window: time.Minute}, {Count: 5, Window: -time.Second},
		{Count: 5, Window: 25 * time.Hour}, {Count: 5, Window: time.Millisecond}} {
		if err := (engine.Config{Tokens: engine.TokenPolicy{SelfServiceChecks: l}}).Validate(); err == nil {
			t.Errorf("%+v accepted", l)
		}
	}
	if err := (engine.Config{Tokens: engine.TokenPolicy{SelfServiceChecks: engine.Limit{Window: time.Minute}}}).Validate(); err != nil {
		t.Errorf("count 0 (off): %v", err)
	}
}
