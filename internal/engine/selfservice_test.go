package engine_test

import (
	"context"
	"errors"
	"testing"

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
