package bsg_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store/storetest"
)

// TestPumpingDefences: each SMS-pumping defence refuses in BSG's format, audits the refusal,
// and makes no provider call — the dev inbox (the log provider's) holds exactly the messages of
// the sends that were allowed, and no session is left behind by a refused one.
func TestPumpingDefences(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		body := with(seedSMS(), "template_id", 1, "code_digits", 6)
		// number returns the i-th Australian mobile number of one 1000-number block.
		number := func(i int) string { return fmt.Sprintf("61401629%03d", i) }
		type scenario struct {
			tweak func(*config.Config)
			run   func(t *testing.T, e *env) (sent int)
		}
		scenarios := map[string]scenario{
			"country": {run: func(t *testing.T, e *env) int {
				e.settings(`{"allowed_countries":["AU"]}`)
				e.sendOK(body)
				for _, r := range []string{"33612345678", "4915112345678", "380501403813"} {
					wantInvalid(t, e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: with(body, "recipient", r), want: 422}),
						"The recipients phone number is located in a country that is not on the list of countries allowed for your account.")
				}
				wantAudits(t, e, "verification.start", "refused:country", 3)
				// Once the tenant has a list, the native API obeys it too.
				r := e.native("POST", "/v1/verifications", e.admin, `{"channel":"sms","to":"+33612345678"}`, 400)
				if r.body["code"] != "invalid_request" {
					t.Errorf("native: %s", r.raw)
				}
				e.settings(`{"allowed_countries":["*"]}`)
				e.sendOK(with(body, "recipient", "33612345678"))
				return 2
			}},
			"duplicate and pending": {run: func(t *testing.T, e *env) int {
				e.settings(`{"allowed_countries":["AU"]}`)
				id := e.sendOK(body)["id"].(string)
				r := e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: body, want: 429})
				if len(r.body) != 1 || r.body["message"] != "Too many duplicate request detected" || r.header.Get("Retry-After") != "10" {
					t.Errorf("duplicate: %v %s", r.header, r.raw)
				}
				e.clk.Advance(11 * time.Second)
				wantInvalid(t, e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: body, want: 422}), "Authentication limit with status pending")
				// Another body for the same recipient is no duplicate, but still a second pending session.
				wantInvalid(t, e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: with(body, "code_lifetime", 120), want: 422}), "Authentication limit with status pending")
				if got := e.audits("verification.start"); !slices.Equal(got, []string{"refused:duplicate", "refused:pending", "refused:pending"}) {
					t.Errorf("audit: %q", got)
				}
				e.bsg(call{method: "POST", tpl: cancelPath, args: []string{id}, tok: "-", want: 200})
				e.sendOK(body)
				e.settings(`{"pending_limit":0,"duplicate_window_seconds":0}`) // both configurable
				e.sendOK(body)
				return 3
			}},
			"prefix": {run: func(t *testing.T, e *env) int {
				e.settings(`{"allowed_countries":["AU"],"prefix_limit":{"count":3,"window_seconds":600}}`)
				for i := range 3 {
					e.sendOK(with(body, "recipient", number(i)))
				}
				r := e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: with(body, "recipient", number(3)), want: 429})
				if r.body["message"] != "Too many requests" || r.header.Get("Retry-After") != "600" {
					t.Errorf("prefix: %v %s", r.header, r.raw)
				}
				wantAudits(t, e, "verification.start", "refused:prefix", 1)
				e.sendOK(with(body, "recipient", "61401630999")) // the next block
				e.clk.Advance(600 * time.Second)
				e.tok = e.login(e.appKey)
				e.sendOK(with(body, "recipient", number(3)))
				return 5
			}},
			"recipient": {run: func(t *testing.T, e *env) int {
				e.settings(`{"allowed_countries":["AU"],"pending_limit":0}`)
				for i := range 5 { // the engine's default: 5 sends per recipient per 10 minutes
					e.sendOK(with(body, "code_lifetime", 30+i))
				}
				e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: with(body, "code_lifetime", 60), want: 429})
				wantAudits(t, e, "verification.start", "refused:recipient", 1)
				return 5
			}},
			"ip": {tweak: func(c *config.Config) { c.Policy.Limits.IP = engine.Limit{Count: 2, Window: 5 * time.Minute} },
				run: func(t *testing.T, e *env) int {
					e.settings(`{"allowed_countries":["AU"]}`)
					ip := map[string]string{"X-Otpd-Client-Ip": "203.0.113.9"}
					for i := range 2 {
						e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: with(body, "recipient", number(i)), hdr: ip, want: 201})
					}
					e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: with(body, "recipient", number(2)), hdr: ip, want: 429})
					wantAudits(t, e, "verification.start", "refused:ip", 1)
					e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: with(body, "recipient", number(2)),
						hdr: map[string]string{"X-Otpd-Client-Ip": "203.0.113.10"}, want: 201})
					wantFields(t, e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: with(body, "recipient", number(3)),
						hdr: map[string]string{"X-Otpd-Client-Ip": "300.1.1.1"}, want: 422}), "X-Otpd-Client-Ip", "This value is not valid.")
					return 3
				}},
			"application": {tweak: func(c *config.Config) { c.Policy.Limits.Application = engine.Limit{Count: 2, Window: time.Hour} },
				run: func(t *testing.T, e *env) int {
					e.settings(`{"allowed_countries":["AU"]}`)
					for i := range 2 {
						e.sendOK(with(body, "recipient", number(i)))
					}
					e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: with(body, "recipient", number(2)), want: 429})
					wantAudits(t, e, "verification.start", "refused:application", 1)
					return 2
				}},
			"dial code": {run: func(t *testing.T, e *env) int {
				e.settings(`{"allowed_countries":["AU","FR"],"dial_code_daily_caps":{"61":2}}`)
				first := e.sendOK(with(body, "recipient", number(0)))["id"].(string)
				e.sendOK(with(body, "recipient", number(1)))
				wantInvalid(t, e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: with(body, "recipient", number(2)), want: 422}), "Total authentication limit")
				wantAudits(t, e, "verification.start", "refused:dial_code", 1)
				e.sendOK(with(body, "recipient", "33612345678")) // another calling code still works
				// A resend is a send too.
				e.clk.Advance(31 * time.Second)
				wantInvalid(t, e.bsg(call{method: "POST", tpl: resendPath, args: []string{first}, tok: "-", want: 422}), "Total authentication limit")
				wantAudits(t, e, "verification.resend", "refused:dial_code", 1)
				// The next UTC day starts afresh.
				e.clk.Set(time.Date(2026, 11, 25, 0, 0, 1, 0, time.UTC))
				e.tok = e.login(e.appKey)
				e.sendOK(with(body, "recipient", number(2)))
				return 4
			}},
			"spend": {run: func(t *testing.T, e *env) int {
				e.settings(`{"allowed_countries":["AU","FR"],"daily_spend_cap":"1"}`)
				e.native("PUT", "/v1/prices/sms/AU", e.admin, `{"price":"0.4"}`, 200)
				e.sendOK(with(body, "recipient", number(0)))
				e.sendOK(with(body, "recipient", number(1)))
				wantInvalid(t, e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: with(body, "recipient", number(2)), want: 422}), "Insufficient funds")
				wantAudits(t, e, "verification.start", "refused:spend", 1)
				e.sendOK(with(body, "recipient", "33612345678")) // free: no price for FR
				e.clk.Set(time.Date(2026, 11, 25, 0, 0, 1, 0, time.UTC))
				e.tok = e.login(e.appKey)
				e.sendOK(with(body, "recipient", number(2)))
				return 4
			}},
		}
		for name, sc := range scenarios {
			t.Run(name, func(t *testing.T) {
				e := newEnv(t, b, sc.tweak)
				sent := sc.run(t, e)
				if texts, n := e.inboxTexts(), e.sessions(); len(texts) != sent || n != sent {
					t.Errorf("%d sends allowed, but %d messages reached the provider and %d sessions exist", sent, len(texts), n)
				}
			})
		}
	})
}

func wantAudits(t *testing.T, e *env, action, result string, n int) {
	t.Helper()
	got := 0
	for _, r := range e.audits(action) {
		if r == result {
			got++
		}
	}
	if got != n {
		t.Errorf("%d audit events %s %s, want %d (all: %q)", got, action, result, n, e.audits(action))
	}
}

// TestConcurrentVerify: 50 concurrent verify_otp calls with the right code → exactly one 200;
// the others see the session verified.
func TestConcurrentVerify(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.settings(`{"allowed_countries":["AU"]}`)
		id := e.sendOK(with(seedSMS(), "template_id", 1, "code_digits", 6))["id"].(string)
		code := e.code("61401629754")
		ok, verified := raceVerify(t, []*env{e}, id, code)
		if ok != 1 || verified != 49 {
			t.Errorf("%d verifications succeeded and %d saw the session verified, want 1 and 49", ok, verified)
		}
	})
}

// raceVerify fires 50 verify_otp calls spread over the instances at once and counts the
// answers: 200, and 422 "Authentication verified status".
func raceVerify(t *testing.T, envs []*env, id, code string) (ok, verified int) {
	t.Helper()
	var nOK, nVerified atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 50 {
		e := envs[i%len(envs)]
		wg.Go(func() {
			<-start
			r := e.send("POST", "/api/2fa/authentications/otp/"+id+"/verify", "Bearer "+e.tok, "application/json",
				map[string]string{"access_code": code}, nil)
			switch {
			case r.status == 200:
				nOK.Add(1)
			case r.status == 422 && slices.Equal(r.errs(), []string{"Authentication verified status"}):
				nVerified.Add(1)
			default:
				t.Errorf("verify: %d %s", r.status, r.raw)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(nOK.Load()), int(nVerified.Load())
}

// TestTwoInstances: two otpd instances on one PostgreSQL. The daily cap of a calling code holds
// across them under concurrent sends, and of 50 concurrent verify_otp calls spread over both,
// exactly one succeeds.
func TestTwoInstances(t *testing.T) {
	for _, b := range storetest.Backends() {
		if b.Name != "postgres" {
			continue
		}
		e1 := newEnv(t, b, nil)
		e2 := openEnv(t, e1.cfg, clock.NewFake(t0))
		e2.appKey, e2.admin = e1.appKey, e1.admin
		e2.tok = e2.login(e1.appKey)
		e1.settings(`{"allowed_countries":["AU"],"dial_code_daily_caps":{"61":10}}`)

		var created, capped atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 30 {
			e := []*env{e1, e2}[i%2]
			wg.Go(func() {
				<-start
				body := with(seedSMS(), "template_id", 1, "code_digits", 6, "recipient", fmt.Sprintf("614016%02d754", i))
				r := e.send("POST", otpPath, "Bearer "+e.tok, "application/json", body, nil)
				switch {
				case r.status == 201:
					created.Add(1)
				case r.status == 422 && slices.Equal(r.errs(), []string{"Total authentication limit"}):
					capped.Add(1)
				default:
					t.Errorf("send: %d %s", r.status, r.raw)
				}
			})
		}
		close(start)
		wg.Wait()
		e2.deliver()
		if created.Load() != 10 || capped.Load() != 20 {
			t.Errorf("%d sends created and %d capped, want 10 and 20", created.Load(), capped.Load())
		}
		if texts := e1.inboxTexts(); len(texts) != 10 {
			t.Errorf("%d messages reached the provider, want 10", len(texts))
		}
		wantAudits(t, e1, "verification.start", "refused:dial_code", 20)

		e1.settings(`{"dial_code_daily_caps":null}`)
		sid := e1.sendOK(with(seedSMS(), "template_id", 1, "code_digits", 6, "recipient", "61401698754"))["id"].(string)
		code := e1.code("61401698754")
		if ok, verified := raceVerify(t, []*env{e1, e2}, sid, code); ok != 1 || verified != 49 {
			t.Errorf("two instances: %d verifications succeeded, %d saw it verified", ok, verified)
		}
	}
}
