package bsg_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/store/storetest"
)

const (
	otpPath    = "/api/2fa/authentications/otp"
	verifyPath = "/api/2fa/authentications/otp/{id}/verify"
	resendPath = "/api/2fa/authentications/otp/{id}/resend"
	cancelPath = "/api/2fa/authentications/{id}/cancel"
	statusPath = "/api/2fa/authentications/{id}"
	listPath   = "/api/2fa/authentications"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func wantService(t *testing.T, r res, msg string) {
	t.Helper()
	if r.body["message"] != "TwoFA Service error." || !slices.Equal(r.errs(), []string{msg}) {
		t.Fatalf("want TwoFA Service error %q, got %s", msg, r.raw)
	}
}

func wantInvalid(t *testing.T, r res, msg string) {
	t.Helper()
	if r.status != 422 || r.body["message"] != "The given data was invalid." || !slices.Equal(r.errs(), []string{msg}) {
		t.Fatalf("want 422 The given data was invalid. %q, got %d %s", msg, r.status, r.raw)
	}
}

func wantFields(t *testing.T, r res, field, msg string) {
	t.Helper()
	fe := r.fieldErrs()
	if r.status != 422 || r.body["message"] != "The given data was invalid." || !slices.Contains(fe[field], msg) {
		t.Fatalf("want 422 with %s: %q, got %d %s", field, msg, r.status, r.raw)
	}
}

// TestSeedSendExample drives the seed's send_otp example through the three states of a new
// deployment: refused for its 5-digit code (the safer default of 6), then for its destination
// (default deny), then accepted once the tenant opts in to both — and the code that arrives is
// the code that verifies.
func TestSeedSendExample(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.templates12()
		body := seedSMS()

		r := e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: body, want: 422})
		wantFields(t, r, "code_digits", "This value should be greater than or equal to 6.")

		e.settings(`{"min_code_length":5}`)
		r = e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: body, want: 422})
		wantInvalid(t, r, "The recipients phone number is located in a country that is not on the list of countries allowed for your account.")
		if got := e.audits("verification.start"); !slices.Equal(got, []string{"refused:country"}) {
			t.Errorf("audit of the refusal: %q", got)
		}
		if n, texts := e.sessions(), e.inboxTexts(); n != 0 || len(texts) != 0 {
			t.Fatalf("a refused send left %d sessions and %d messages", n, len(texts))
		}

		e.settings(`{"allowed_countries":["AU"]}`)
		before := e.clk.Now()
		d := e.sendOK(body)
		if !uuidRE.MatchString(d["id"].(string)) {
			t.Errorf("id %v", d["id"])
		}
		want := map[string]any{"recipient": "61401629754", "status": "pending", "channel": "sms", "sender": "SENDER",
			"sender_alt": nil, "message_text": "Hi {name}, your OTP is {code2fa}", "code_lifetime": 300.0,
			"code_max_tries": 3.0, "code_digits": 5.0, "price": 0.0, "currency": "EUR", "country_code": "AU",
			"expired_at": before.Add(300 * time.Second).Format("2006-01-02T15:04:05+00:00"),
			"created_at": before.Format("2006-01-02T15:04:05+00:00"), "finished_at": nil}
		for k, v := range want {
			if fmt.Sprint(d[k]) != fmt.Sprint(v) {
				t.Errorf("%s = %v, want %v", k, d[k], v)
			}
		}
		if _, has := d["messages"]; has {
			t.Error("send_otp answers TwoFactorAuthenticationSchema, without messages")
		}
		code := e.code("61401629754")
		texts := e.inboxTexts()
		if len(code) != 5 || len(texts) != 1 || texts[0] != "Hi {name}, your OTP is "+code {
			t.Fatalf("delivered %q (code %q)", texts, code)
		}
		v := e.bsg(call{method: "POST", tpl: verifyPath, args: []string{d["id"].(string)}, tok: "-",
			body: map[string]string{"access_code": code}, want: 200}).data()
		if v["status"] != "verified" || v["finished_at"] == nil || v["id"] != d["id"] {
			t.Errorf("verified: %v", v)
		}
	})
}

// TestAuth: login with an otpd API key, refresh, and every way a bearer token is refused.
func TestAuth(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		// The schema's example of a login body is a key otpd does not know.
		r := e.bsg(call{method: "POST", tpl: "/api/auth/login", body: map[string]string{"api_key": "live_8JeF1mLckxI4QResuP6X"}, want: 401})
		if r.body["message"] != "Invalid API key" || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("unknown key: %s", r.raw)
		}
		wantFields(t, e.bsg(call{method: "POST", tpl: "/api/auth/login", body: map[string]string{}, want: 422}), "api_key", "This value should not be blank.")
		wantFields(t, e.bsg(call{method: "POST", tpl: "/api/auth/login", body: map[string]any{"api_key": 7}, want: 422}), "api_key", "This value should be of type string.")
		wantFields(t, e.bsg(call{method: "POST", tpl: "/api/auth/login", body: map[string]any{"api_key": e.appKey, "x": 1}, want: 422}), "x", "This field was not expected.")
		e.bsg(call{method: "POST", tpl: "/api/auth/login", body: "not json", want: 400})
		e.bsg(call{method: "POST", tpl: "/api/auth/login", body: strings.Repeat(" ", 70<<10) + "{}", want: 413})
		// The admin key works too.
		adminTok := e.login(e.admin)

		list := call{method: "GET", tpl: "/api/2fa/authentications/templates", want: 200}
		for name, auth := range map[string]string{
			"bearer":       "Bearer " + e.tok,
			"bearer colon": "Bearer: " + e.tok, // as BSG's documents write it
			"lower case":   "bearer " + adminTok,
		} {
			if r := e.send("GET", list.tpl, auth, "", nil, nil); r.status != 200 {
				t.Errorf("%s: %d %s", name, r.status, r.raw)
			}
		}
		for auth, msg := range map[string]string{
			"":                               "JWT Token not found",
			"Basic " + e.tok:                 "JWT Token not found",
			"Bearer nonsense":                "Invalid JWT Token",
			"Bearer " + e.appKey:             "Invalid JWT Token", // an API key is not a token
			"Bearer " + e.tok[:len(e.tok)-4]: "Invalid JWT Token", // a broken signature
		} {
			r := e.send("GET", list.tpl, auth, "", nil, nil)
			if r.status != 401 || r.body["message"] != msg {
				t.Errorf("Authorization %.20q: %d %s, want 401 %q", auth, r.status, r.raw, msg)
			}
		}
		// Every operation needs the token.
		for _, c := range []call{{method: "POST", tpl: otpPath}, {method: "POST", tpl: verifyPath, args: []string{"x"}},
			{method: "POST", tpl: resendPath, args: []string{"x"}}, {method: "POST", tpl: cancelPath, args: []string{"x"}},
			{method: "GET", tpl: statusPath, args: []string{"x"}}, {method: "GET", tpl: listPath},
			{method: "GET", tpl: "/api/2fa/authentications/templates"}, {method: "POST", tpl: "/api/2fa/authentications/templates"},
			{method: "GET", tpl: "/api/2fa/authentications/templates/{templateId}", args: []string{"1"}},
			{method: "DELETE", tpl: "/api/2fa/authentications/templates/{templateId}", args: []string{"1"}},
			{method: "POST", tpl: "/api/auth/refresh"}} {
			c.want = 401
			e.bsg(c)
		}

		// Refresh gives a working token.
		fresh := e.bsg(call{method: "POST", tpl: "/api/auth/refresh", tok: "-", want: 200}).body["bearer"].(string)
		e.bsg(call{method: "GET", tpl: list.tpl, tok: fresh, want: 200})

		// Tokens expire (default lifetime 1 h) and cannot then be refreshed.
		e.clk.Advance(time.Hour + time.Second)
		for _, c := range []call{{method: "GET", tpl: list.tpl}, {method: "POST", tpl: "/api/auth/refresh"}} {
			c.tok, c.want = fresh, 401
			if r := e.bsg(c); r.body["message"] != "Expired JWT Token" {
				t.Errorf("expired token: %s", r.raw)
			}
		}

		// Deleting the application revokes its key, and its tokens stop at once.
		tok := e.login(e.appKey)
		e.bsg(call{method: "GET", tpl: list.tpl, tok: tok, want: 200})
		apps := e.native("GET", "/v1/applications", e.admin, "", 200).body["items"].([]any)
		e.native("DELETE", "/v1/applications/"+apps[0].(map[string]any)["id"].(string), e.admin, "", 204)
		if r := e.bsg(call{method: "GET", tpl: list.tpl, tok: tok, want: 401}); r.body["message"] != "Invalid JWT Token" {
			t.Errorf("token of a deleted application: %s", r.raw)
		}
		e.bsg(call{method: "POST", tpl: "/api/auth/login", body: map[string]string{"api_key": e.appKey}, want: 401})
	})
}

// TestTenantIsolation: a session of one tenant is "not found" to another tenant's token, and
// sessions of the native API are not BSG sessions.
func TestTenantIsolation(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.settings(`{"allowed_countries":["AU"]}`)
		id := e.sendOK(with(seedSMS(), "template_id", 1, "code_digits", 6))["id"].(string)

		tid, otherAdmin, err := e.a.Engine.CreateTenant(t.Context(), "other")
		if err != nil || tid == "" {
			t.Fatal(err)
		}
		other := e.login(otherAdmin)
		for _, c := range []call{
			{method: "GET", tpl: statusPath, args: []string{id}},
			{method: "POST", tpl: verifyPath, args: []string{id}, body: map[string]string{"access_code": "123456"}},
			{method: "POST", tpl: resendPath, args: []string{id}},
			{method: "POST", tpl: cancelPath, args: []string{id}},
		} {
			c.tok, c.want = other, 404
			wantService(t, e.bsg(c), "Authentication not found")
		}
		if r := e.bsg(call{method: "GET", tpl: listPath, query: "filter[from]=2026-11-24&filter[to]=2026-11-24", tok: other, want: 200}); r.data()["total"] != 0.0 {
			t.Errorf("other tenant's list: %s", r.raw)
		}

		native := e.native("POST", "/v1/verifications", e.admin, `{"channel":"none","to":"+61401629754"}`, 201).body
		for _, c := range []call{
			{method: "GET", tpl: statusPath, args: []string{native["id"].(string)}},
			{method: "POST", tpl: verifyPath, args: []string{native["id"].(string)}, body: map[string]string{"access_code": native["code"].(string)}},
			{method: "POST", tpl: cancelPath, args: []string{native["id"].(string)}},
		} {
			c.tok, c.want = "-", 404
			wantService(t, e.bsg(c), "Authentication not found")
		}
		// The native session was not touched: its code still verifies there.
		r := e.native("POST", "/v1/verifications/"+native["id"].(string)+"/check", e.admin, `{"code":"`+native["code"].(string)+`"}`, 200)
		if r.body["valid"] != true {
			t.Errorf("native session after BSG calls: %s", r.raw)
		}
	})
}

// TestVerify covers every answer of verify_otp.
func TestVerify(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.settings(`{"allowed_countries":["AU","FR"],"min_code_length":4}`)
		start := func(recipient string, tries int) (string, string) {
			t.Helper()
			d := e.sendOK(with(seedSMS(), "recipient", recipient, "template_id", 1, "code_max_tries", tries, "code_digits", 5))
			return d["id"].(string), e.code(recipient)
		}
		v := func(id, code string, want int) res {
			t.Helper()
			return e.bsg(call{method: "POST", tpl: verifyPath, args: []string{id}, tok: "-", body: map[string]string{"access_code": code}, want: want})
		}
		wrong := func(code string) string {
			b := []byte(code)
			b[0] = '0' + (b[0]-'0'+1)%10
			return string(b)
		}

		id, code := start("61401629754", 3)
		// Not a code at all: a field error, no try spent.
		for _, bad := range []any{"12a45", "12", "1234567890", "１２３４５", 12345, nil} {
			r := e.bsg(call{method: "POST", tpl: verifyPath, args: []string{id}, tok: "-", body: map[string]any{"access_code": bad}, want: 422})
			if fe := r.fieldErrs(); len(fe["access_code"]) != 1 {
				t.Errorf("access_code %v: %s", bad, r.raw)
			}
		}
		wantFields(t, e.bsg(call{method: "POST", tpl: verifyPath, args: []string{id}, tok: "-", body: map[string]any{"access_code": code, "extra": 1}, want: 422}), "extra", "This field was not expected.")
		// Digits of the wrong length cannot match: 404, and no try is spent either.
		wantService(t, v(id, "1234", 404), "The code does not match the expected value")
		wantService(t, v(id, wrong(code), 404), "The code does not match the expected value")
		wantService(t, v(id, wrong(code), 404), "The code does not match the expected value")
		// The last allowed wrong code fails the session and still answers 404…
		wantService(t, v(id, wrong(code), 404), "The code does not match the expected value")
		// …and from then on every call says the session failed, the right code included.
		wantService(t, v(id, code, 422), "Authentication failed status")
		s := e.bsg(call{method: "GET", tpl: statusPath, args: []string{id}, tok: "-", want: 200}).data()
		if s["status"] != "failed" || s["finished_at"] == nil {
			t.Errorf("after the last try: %v", s)
		}

		// Verified once; then 422.
		id, code = start("33612345678", 3)
		if d := v(id, code, 200).data(); d["status"] != "verified" || d["country_code"] != "FR" || d["recipient"] != "33612345678" {
			t.Errorf("verified: %v", d)
		}
		wantService(t, v(id, code, 422), "Authentication verified status")

		// Expired: lazily, on the first read after expired_at; finished_at = expired_at.
		e.clk.Advance(11 * time.Second) // past the duplicate window
		id, code = start("61401629754", 3)
		e.clk.Advance(300 * time.Second)
		wantService(t, v(id, code, 422), "Authentication expired")
		s = e.bsg(call{method: "GET", tpl: statusPath, args: []string{id}, tok: "-", want: 200}).data()
		if s["status"] != "expired" || s["finished_at"] != s["expired_at"] {
			t.Errorf("expired: %v", s)
		}

		// Canceled.
		id, code = start("33612345679", 3)
		e.bsg(call{method: "POST", tpl: cancelPath, args: []string{id}, tok: "-", want: 200})
		wantService(t, v(id, code, 422), "Authentication canceled status")

		// Unknown ids.
		wantService(t, v("ea5db413-e368-4952-b745-cc2030210c49", "12345", 404), "Authentication not found")
		wantService(t, v(strings.Repeat("a", 37), "12345", 404), "Authentication not found")
		e.bsg(call{method: "POST", tpl: verifyPath, args: []string{id}, tok: "-", body: "[]", want: 400})
	})
}

// TestResendAndCancel covers every answer of resend_otp and cancel_otp, and SPEC.md §2.1's
// resend rules: a new code, a new expired_at, the try budget not refilled, at most 5 sends,
// a cooldown between sends, only while pending.
func TestResendAndCancel(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.settings(`{"allowed_countries":["AU"]}`)
		d := e.sendOK(with(seedSMS(), "template_id", 1, "code_digits", 6, "code_max_tries", 4))
		id := d["id"].(string)
		first := e.code("61401629754")
		wrong := "000000"
		if first == wrong {
			wrong = "111111"
		}
		wantService(t, e.bsg(call{method: "POST", tpl: verifyPath, args: []string{id}, tok: "-", body: map[string]string{"access_code": wrong}, want: 404}), "The code does not match the expected value")

		r := e.bsg(call{method: "POST", tpl: resendPath, args: []string{id}, tok: "-", want: 429})
		if r.body["message"] != "Too many requests" || r.header.Get("Retry-After") != "30" {
			t.Errorf("cooldown: %v %s", r.header, r.raw)
		}
		codes := map[string]bool{first: true}
		var last string
		for i := range 4 {
			e.clk.Advance(31 * time.Second)
			at := e.clk.Now()
			r := e.bsg(call{method: "POST", tpl: resendPath, args: []string{id}, tok: "-", want: 200}).data()
			if r["status"] != "pending" || r["expired_at"] != at.Add(300*time.Second).Format("2006-01-02T15:04:05+00:00") {
				t.Errorf("resend %d: %v", i+1, r)
			}
			last = e.code("61401629754")
			codes[last] = true
		}
		if len(codes) < 3 {
			t.Errorf("resends did not issue new codes: %v", codes)
		}
		e.clk.Advance(31 * time.Second)
		wantService(t, e.bsg(call{method: "POST", tpl: resendPath, args: []string{id}, tok: "-", want: 422}), "Authentication resend limit exceeded")
		// The old code is dead, and the budget was not refilled: 4 tries, 1 spent, 2 more wrong
		// (the first code is one of them) and the third is the last.
		if first != last {
			wantService(t, e.bsg(call{method: "POST", tpl: verifyPath, args: []string{id}, tok: "-", body: map[string]string{"access_code": first}, want: 404}), "The code does not match the expected value")
		}
		st := e.bsg(call{method: "GET", tpl: statusPath, args: []string{id}, tok: "-", want: 200}).data()
		if msgs := st["messages"].([]any); len(msgs) != 5 {
			t.Errorf("5 sends, %d messages", len(msgs))
		}
		e.bsg(call{method: "POST", tpl: verifyPath, args: []string{id}, tok: "-", body: map[string]string{"access_code": last}, want: 200})

		// Cancel: only while pending. (Other numbers from here on: the recipient limit, 5 sends in
		// 10 minutes, is spent.)
		id = e.sendOK(with(seedSMS(), "recipient", "61401629755", "template_id", 1, "code_digits", 6))["id"].(string)
		c := e.bsg(call{method: "POST", tpl: cancelPath, args: []string{id}, tok: "-", want: 200}).data()
		if c["status"] != "canceled" || c["finished_at"] == nil {
			t.Errorf("canceled: %v", c)
		}
		wantService(t, e.bsg(call{method: "POST", tpl: cancelPath, args: []string{id}, tok: "-", want: 422}), "Authentication canceled status")
		e.clk.Advance(31 * time.Second)
		wantService(t, e.bsg(call{method: "POST", tpl: resendPath, args: []string{id}, tok: "-", want: 422}), "Authentication canceled status")

		// Failed and expired sessions.
		id = e.sendOK(with(seedSMS(), "recipient", "61401629756", "template_id", 1, "code_digits", 6, "code_max_tries", 1))["id"].(string)
		code := e.code("61401629756")
		bad := "000000"
		if code == bad {
			bad = "111111"
		}
		e.bsg(call{method: "POST", tpl: verifyPath, args: []string{id}, tok: "-", body: map[string]string{"access_code": bad}, want: 404})
		wantService(t, e.bsg(call{method: "POST", tpl: cancelPath, args: []string{id}, tok: "-", want: 422}), "Authentication failed status")
		wantService(t, e.bsg(call{method: "POST", tpl: resendPath, args: []string{id}, tok: "-", want: 422}), "Authentication failed status")

		id = e.sendOK(with(seedSMS(), "recipient", "61401629757", "template_id", 1, "code_digits", 6, "code_lifetime", 30))["id"].(string)
		e.clk.Advance(30 * time.Second)
		wantService(t, e.bsg(call{method: "POST", tpl: resendPath, args: []string{id}, tok: "-", want: 422}), "Authentication expired")
		wantService(t, e.bsg(call{method: "POST", tpl: cancelPath, args: []string{id}, tok: "-", want: 422}), "Authentication expired")

		for _, p := range []string{resendPath, cancelPath} {
			wantService(t, e.bsg(call{method: "POST", tpl: p, args: []string{"ea5db413-e368-4952-b745-cc2030210c49"}, tok: "-", want: 404}), "Authentication not found")
		}
	})
}

// TestStatus: status_otp with messages[] (integer ids, status, price, currency, sent_at), and
// the session price: 0 at creation, the messages' prices once sent.
func TestStatus(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.settings(`{"allowed_countries":["AU"]}`)
		e.native("PUT", "/v1/prices/sms/AU", e.admin, `{"price":"0.0642918"}`, 200)
		d := e.sendOK(with(seedSMS(), "template_id", 1, "code_digits", 6))
		if d["price"] != 0.0 {
			t.Errorf("price at creation: %v", d["price"])
		}
		id := d["id"].(string)
		s := e.bsg(call{method: "GET", tpl: statusPath, args: []string{id}, tok: "-", want: 200}).data()
		msgs := s["messages"].([]any)
		if len(msgs) != 1 || msgs[0].(map[string]any)["status"] != "accepted" || msgs[0].(map[string]any)["sent_at"] != nil {
			t.Fatalf("queued: %v", s)
		}
		e.deliver()
		s = e.bsg(call{method: "GET", tpl: statusPath, args: []string{id}, tok: "-", want: 200}).data()
		m := s["messages"].([]any)[0].(map[string]any)
		if s["price"] != 0.0642918 || s["currency"] != "EUR" || m["status"] != "sent" || m["price"] != 0.0642918 ||
			m["currency"] != "EUR" || m["recipient"] != "61401629754" || m["channel"] != "sms" || m["sender"] != "SENDER" ||
			m["sent_at"] != e.clk.Now().Format("2006-01-02 15:04:05") || m["id"].(float64) < 1 {
			t.Errorf("after delivery: %v", s)
		}
		e.clk.Advance(31 * time.Second)
		e.bsg(call{method: "POST", tpl: resendPath, args: []string{id}, tok: "-", want: 200})
		e.deliver()
		s = e.bsg(call{method: "GET", tpl: statusPath, args: []string{id}, tok: "-", want: 200}).data()
		ms := s["messages"].([]any)
		if len(ms) != 2 || ms[1].(map[string]any)["id"].(float64) <= ms[0].(map[string]any)["id"].(float64) || s["price"] != 0.1285836 {
			t.Errorf("after a resend: %v", s)
		}
		wantService(t, e.bsg(call{method: "GET", tpl: statusPath, args: []string{"ea5db413-e368-4952-b745-cc2030210c49"}, tok: "-", want: 404}), "Authentication not found")
		// Unknown paths and methods under the surface answer in its shape.
		if r := e.send("PUT", statusPath[:len(statusPath)-4]+id, "Bearer "+e.tok, "", nil, nil); r.status != 405 || r.body["message"] != "Method Not Allowed" || r.header.Get("Allow") == "" {
			t.Errorf("405: %d %v %s", r.status, r.header, r.raw)
		}
		if r := e.send("GET", "/api/2fa/nothing", "Bearer "+e.tok, "", nil, nil); r.status != 404 || r.body["message"] != "Not Found" {
			t.Errorf("404: %d %s", r.status, r.raw)
		}
	})
}

// TestViber: the schema's viber example; the message goes by Viber with the sender, and
// carries the SMS fallback with sender_alt for the outbox worker.
func TestViber(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.templates12()
		e.settings(`{"allowed_countries":["AU"],"min_code_length":5}`)
		d := e.sendOK(seedViber())
		if d["channel"] != "viber" || d["sender"] != "VIBER_SENDER" || d["sender_alt"] != "SMS_SENDER" {
			t.Errorf("viber session: %v", d)
		}
		ms := e.messages(d["id"].(string))
		if len(ms) != 1 || ms[0].Channel != "viber" || ms[0].Sender != "VIBER_SENDER" || ms[0].FallbackChannel != "sms" || ms[0].FallbackSender != "SMS_SENDER" {
			t.Fatalf("outbox: %+v", ms)
		}
		// Without sender_alt there is no fallback; for SMS, sender_alt is ignored.
		e.clk.Advance(11 * time.Second)
		d = e.sendOK(with(seedViber(), "recipient", "61401629755", "sender_alt", nil))
		if ms := e.messages(d["id"].(string)); d["sender_alt"] != nil || ms[0].FallbackChannel != "" {
			t.Errorf("viber without sender_alt: %v %+v", d, ms)
		}
		d = e.sendOK(with(seedViber(), "recipient", "61401629756", "channel", "sms", "sender", "SENDER"))
		if ms := e.messages(d["id"].(string)); d["sender_alt"] != nil || ms[0].FallbackChannel != "" || ms[0].Channel != "sms" {
			t.Errorf("sms with sender_alt: %v %+v", d, ms)
		}
	})
}
