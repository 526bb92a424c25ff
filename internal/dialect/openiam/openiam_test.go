package openiam_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/app"
	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store/storetest"
	"github.com/otpd/otpd/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

type env struct {
	t     *testing.T
	a     *app.App
	srv   *httptest.Server
	clk   *clock.Fake
	admin string
}

func newEnv(t *testing.T, b storetest.Backend, tweak func(*config.Config)) *env {
	t.Helper()
	c := config.Default()
	c.DataDir = t.TempDir()
	if b.Name == "postgres" {
		c.DatabaseURL = b.NewDSN(t)
	}
	k, _ := keys.GenerateMasterKey()
	c.MasterKey = keys.EncodeMasterKey(k)
	if tweak != nil {
		tweak(&c)
	}
	clk := clock.NewFake(t0)
	a, err := app.Open(context.Background(), c, slog.New(slog.DiscardHandler), app.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	srv := httptest.NewServer(a.API)
	t.Cleanup(srv.Close)
	return &env{t: t, a: a, srv: srv, clk: clk, admin: a.AdminKey}
}

type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

// post sends body to path; headers are name, value pairs ("Host" sets the request's host).
func (e *env) post(path, contentType, body string, headers ...string) resp {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// json posts like the seed's Python snippets: requests.request("POST", url, headers=
// {'Content-Type': 'application/json'}, data=json.dumps(payload)).
func (e *env) json(path, payload string, headers ...string) resp {
	e.t.Helper()
	return e.post(path, "application/json", payload, headers...)
}

func (e *env) native(method, path, key string, body any) resp {
	e.t.Helper()
	b, _ := json.Marshal(body)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

var codeRE = regexp.MustCompile(`\b[0-9]{6}\b`)

// code delivers the outbox through the log provider and reads the newest code sent to "to" from
// the development inbox of key's tenant.
func (e *env) code(key, to string) string {
	e.t.Helper()
	if _, err := e.a.Worker.RunOnce(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	r := e.native("GET", "/v1/dev/messages?to="+url.QueryEscape(to), key, nil)
	msgs, _ := r.body["messages"].([]any)
	if len(msgs) == 0 {
		e.t.Fatalf("no message to %s: %s", to, r.raw)
	}
	c := codeRE.FindString(msgs[0].(map[string]any)["body"].(string))
	if c == "" {
		e.t.Fatalf("no code in the message to %s", to)
	}
	return c
}

// envelopeError asserts an OpenIAM error envelope (HTTP 200 unless httpStatus says otherwise).
func (r resp) envelopeError(t *testing.T, status int, code string) {
	t.Helper()
	list, _ := r.body["errorList"].([]any)
	if r.status != 200 || r.body["status"] != float64(status) || r.body["error"] != true || len(list) != 1 ||
		list[0].(map[string]any)["error"] != code || r.body["successToken"] != nil || r.body["contextValues"] != nil {
		t.Fatalf("want envelope %d %s, got HTTP %d %s", status, code, r.status, r.raw)
	}
}

const (
	seedCheckOK    = `{"primaryKey":null,"status":200,"errorList":null,"redirectURL":null,"successToken":null,"successMessage":null,"contextValues":null,"stackTrace":null,"possibleErrors":null,"error":false}`
	seedCodeNotEq  = `{"primaryKey":null,"status":500,"errorList":[{"i18nError":null,"error":"CODE_NOT_EQUAL","validationError":null,"params":null,"message":"Sent code and input do not match"}],"redirectURL":null,"successToken":null,"successMessage":null,"contextValues":null,"stackTrace":null,"possibleErrors":null,"error":true}`
	seedEmailSent  = `{"primaryKey":null,"status":200,"errorList":null,"redirectURL":null,"successToken":{"message":"EMAIL_SENT","params":null},"successMessage":null,"contextValues":{"emailMovingFactor":%d,"emailAddressForCode":{"id":null,"beanType":"EmailBean","operation":"NO_CHANGE","name":null,"type":null,"typeId":null,"active":true,"userId":null,"published":false,"email":"%s","description":null,"default":false,"public":false}},"stackTrace":null,"possibleErrors":null,"error":false}`
	seedSMSPayload = `{"areaCd": "1", "phoneNbr": "123456789", "phoneExt": "", "mdTypeId": "CELL_PHONE", "countryCd": "1", "usedForSMS": true, "published": true}`
)

// TestSeedFlow replays the seed's Python snippets: send an email code, check it with the moving
// factor as a string; a wrong code; send an SMS code from the phone parts, check it; log out.
// Every answer is compared with the seed's text where the seed shows one.
func TestSeedFlow(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		r := e.json("/selfservice/send-verification-code-by-email", `{"email": "youremail@openiam.com"}`)
		mf := t0.UnixMilli()
		if r.status != 200 || string(bytes.TrimSpace(r.raw)) != fmt.Sprintf(seedEmailSent, mf, "youremail@openiam.com") {
			t.Fatalf("send email: %d\n got %s\nwant %s", r.status, r.raw, fmt.Sprintf(seedEmailSent, mf, "youremail@openiam.com"))
		}
		code := e.code(e.admin, "youremail@openiam.com")
		wrong := fmt.Sprintf("%06d", (mustAtoi(code)+1)%1000000)
		r = e.json("/selfservice/check-verification-code", `{"emailCode": "`+wrong+`", "emailMovingFactor": "`+strconv.FormatInt(mf, 10)+`"}`)
		if r.status != 200 || string(bytes.TrimSpace(r.raw)) != seedCodeNotEq {
			t.Fatalf("wrong code: %d %s", r.status, r.raw)
		}
		r = e.json("/selfservice/check-verification-code", `{"emailCode": "`+code+`", "emailMovingFactor": "`+strconv.FormatInt(mf, 10)+`"}`)
		if r.status != 200 || string(bytes.TrimSpace(r.raw)) != seedCheckOK {
			t.Fatalf("right code: %d %s", r.status, r.raw)
		}
		// Once only.
		e.json("/selfservice/check-verification-code", `{"emailCode": "`+code+`", "emailMovingFactor": `+strconv.FormatInt(mf, 10)+`}`).
			envelopeError(t, 500, "CODE_ALREADY_USED")

		// SMS: the seed's payload, phone +1 1 123456789.
		e.clk.Advance(time.Second)
		r = e.json("/selfservice/send-sms-verification-code", seedSMSPayload)
		ctxv, _ := r.body["contextValues"].(map[string]any)
		st, _ := r.body["successToken"].(map[string]any)
		if r.status != 200 || r.body["status"] != float64(200) || st["message"] != "SMS_SENT" || ctxv == nil {
			t.Fatalf("send sms: %d %s", r.status, r.raw)
		}
		smf := int64(ctxv["smsMovingFactor"].(float64))
		bean := ctxv["phoneForCode"].(map[string]any)
		if smf != t0.Add(time.Second).UnixMilli() || bean["beanType"] != "PhoneBean" || bean["areaCd"] != "1" ||
			bean["phoneNbr"] != "123456789" || bean["countryCd"] != "1" || bean["mdTypeId"] != "CELL_PHONE" || bean["usedForSMS"] != true {
			t.Errorf("sms context: %s", r.raw)
		}
		smsCode := e.code(e.admin, "+11123456789")
		// The moving factor as a JSON number works like the seed's string.
		r = e.json("/selfservice/check-verification-code", `{"smsCode": "`+smsCode+`", "smsMovingFactor": `+strconv.FormatInt(smf, 10)+`}`)
		if string(bytes.TrimSpace(r.raw)) != seedCheckOK {
			t.Fatalf("sms check: %s", r.raw)
		}

		// Logout (seed): form body token=… with the OPENIAM_AUTH_TOKEN cookie. The tokens are an
		// access token from the token endpoint and an IdP session id.
		app := e.native("POST", "/v1/applications", e.admin, map[string]string{"name": "portal"})
		basic := base64.StdEncoding.EncodeToString([]byte(app.body["client_id"].(string) + ":" + app.body["client_secret"].(string)))
		tr := e.post("/api/2/idp/token", "application/x-www-form-urlencoded", "grant_type=client_credentials", "Authorization", "Basic "+basic)
		access := tr.body["access_token"].(string)
		e.native("POST", "/v1/users", e.admin, map[string]string{"login": "max"})
		ott := e.native("POST", "/v1/login-tokens", e.admin, map[string]string{"login": "max"}).body["token"].(string)
		session := e.native("POST", "/v1/login-tokens/redeem", e.admin, map[string]string{"token": ott, "purpose": "user_login"}).body["session"].(string)
		me := func() int {
			req, _ := http.NewRequest("GET", e.srv.URL+"/api/2/users/me", nil)
			req.Header.Set("Cookie", "otpd_idp_session="+session)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return res.StatusCode
		}
		if st := me(); st != 200 {
			t.Fatalf("session before logout: %d", st)
		}
		r = e.post("/idp/oauth2/revoke", "application/x-www-form-urlencoded", "token_type_hint=access_token&token="+url.QueryEscape(access),
			"Cookie", "OPENIAM_AUTH_TOKEN="+session)
		if r.status != 200 || r.body["status"] != float64(200) || r.body["error"] != false {
			t.Fatalf("revoke: %d %s", r.status, r.raw)
		}
		if !strings.Contains(strings.Join(r.header.Values("Set-Cookie"), ";"), "OPENIAM_AUTH_TOKEN=;") {
			t.Errorf("the auth cookie was not cleared: %v", r.header.Values("Set-Cookie"))
		}
		// Both are dead now.
		if r := e.post("/api/2/idp/ott", "application/json", `{"login":"max","purpose":"user_login"}`, "Authorization", "Bearer "+access); r.status != 401 {
			t.Errorf("revoked access token still works: %d %s", r.status, r.raw)
		}
		if st := me(); st != 401 {
			t.Errorf("revoked session still works: %d", st)
		}
		// The cookie alone (no form body at all) ends the session too.
		ott2 := e.native("POST", "/v1/login-tokens", e.admin, map[string]string{"login": "max"}).body["token"].(string)
		session = e.native("POST", "/v1/login-tokens/redeem", e.admin, map[string]string{"token": ott2, "purpose": "user_login"}).body["session"].(string)
		if st := me(); st != 200 {
			t.Fatalf("second session before logout: %d", st)
		}
		if r := e.post("/idp/oauth2/revoke", "", "", "Cookie", "OPENIAM_AUTH_TOKEN="+session); r.status != 200 || r.body["error"] != false {
			t.Fatalf("cookie-only revoke: %d %s", r.status, r.raw)
		}
		if st := me(); st != 401 {
			t.Errorf("session revoked by its cookie alone still works: %d", st)
		}
		// No token at all: RFC 6749 error.
		r = e.post("/idp/oauth2/revoke", "application/x-www-form-urlencoded", "token_type_hint=access_token")
		if r.status != 400 || r.body["error"] != "invalid_request" {
			t.Errorf("revoke without a token: %d %s", r.status, r.raw)
		}
		// An unknown token is revoked "successfully" (RFC 7009 §2.2).
		if r := e.post("/idp/oauth2/revoke", "application/x-www-form-urlencoded", "token=whatever"); r.status != 200 || r.body["error"] != false {
			t.Errorf("revoke unknown: %d %s", r.status, r.raw)
		}
	})
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestCheckOutcomes: expired, exhausted, unknown and used moving factors get their own codes;
// a malformed code spends no try; channels do not mix.
func TestCheckOutcomes(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		send := func(email string) (int64, string) {
			r := e.json("/selfservice/send-verification-code-by-email", `{"email":"`+email+`"}`)
			if r.status != 200 || r.body["status"] != float64(200) {
				t.Fatalf("send: %s", r.raw)
			}
			mf := int64(r.body["contextValues"].(map[string]any)["emailMovingFactor"].(float64))
			return mf, e.code(e.admin, email)
		}
		check := func(mf any, code string) resp {
			b, _ := json.Marshal(map[string]any{"emailCode": code, "emailMovingFactor": mf})
			return e.json("/selfservice/check-verification-code", string(b))
		}
		// Exhausted: five wrong codes (the default budget); the right one then fails.
		mf, code := send("a@example.com")
		wrong := fmt.Sprintf("%06d", (mustAtoi(code)+1)%1000000)
		check(mf, "12ab56").envelopeError(t, 500, "CODE_NOT_EQUAL") // malformed: no try spent
		for range 5 {
			check(mf, wrong).envelopeError(t, 500, "CODE_NOT_EQUAL")
		}
		check(mf, code).envelopeError(t, 500, "CODE_ATTEMPTS_EXCEEDED")

		// Expired: past the 5-minute lifetime.
		mf2, code2 := send("b@example.com")
		e.clk.Advance(5*time.Minute + time.Second)
		check(strconv.FormatInt(mf2, 10), code2).envelopeError(t, 500, "CODE_EXPIRED")

		// Unknown moving factors, in every form.
		check(mf2+12345, code2).envelopeError(t, 500, "MOVING_FACTOR_NOT_FOUND")
		check("not-a-number", code2).envelopeError(t, 400, "MOVING_FACTOR_NOT_FOUND")
		check(-5, code2).envelopeError(t, 400, "MOVING_FACTOR_NOT_FOUND")
		// An email moving factor is not an SMS one.
		mf3, code3 := send("c@example.com")
		e.json("/selfservice/check-verification-code", `{"smsCode":"`+code3+`","smsMovingFactor":`+strconv.FormatInt(mf3, 10)+`}`).
			envelopeError(t, 500, "MOVING_FACTOR_NOT_FOUND")
		// The code as a JSON number works.
		if r := e.json("/selfservice/check-verification-code", `{"emailCode":`+strings.TrimLeft(code3, "0")+`,"emailMovingFactor":`+strconv.FormatInt(mf3, 10)+`}`); code3[0] != '0' && r.body["error"] != false {
			t.Errorf("numeric code: %s", r.raw)
		}
		// Bad requests.
		for _, body := range []string{`{}`, `{"emailCode":"123456"}`, `{"emailMovingFactor":"1"}`,
			`{"emailCode":"1","emailMovingFactor":"1","smsCode":"1","smsMovingFactor":"1"}`, `[]`, `nope`, `{"emailCode":true,"emailMovingFactor":"1"}`} {
			r := e.json("/selfservice/check-verification-code", body)
			if r.status != 200 || r.body["status"] != float64(400) || r.body["error"] != true {
				t.Errorf("%s: %d %s", body, r.status, r.raw)
			}
		}
	})
}

// TestSendValidationAndLimits: bad addresses and phone parts, then the per-recipient and per-IP
// limits (the IP from a trusted proxy only), all in the envelope with HTTP 200, nothing sent.
func TestSendValidationAndLimits(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1/32"} })
		for _, body := range []string{`{"email":"not an address"}`, `{"email":""}`, `{}`, `{"email":"a@b"}`} {
			e.json("/selfservice/send-verification-code-by-email", body).envelopeError(t, 400, "INVALID_EMAIL")
		}
		for _, body := range []string{`[]`, `{"email":1}`, `{"email":"a@example.com"`, strings.Repeat("x", 70000)} {
			e.json("/selfservice/send-verification-code-by-email", body).envelopeError(t, 400, "INVALID_REQUEST")
		}
		for _, body := range []string{`{"countryCd":"1","areaCd":"","phoneNbr":"12"}`, `{"countryCd":"abc","areaCd":"1","phoneNbr":"123456789"}`,
			`{"countryCd":"1","areaCd":"1","phoneNbr":"12345678;rm"}`, `{}`} {
			e.json("/selfservice/send-sms-verification-code", body).envelopeError(t, 400, "INVALID_PHONE")
		}
		if r := e.native("GET", "/v1/verifications", e.admin, nil); len(r.body["items"].([]any)) != 0 {
			t.Fatalf("refused sends left sessions: %s", r.raw)
		}

		// Per recipient: 5 per 10 minutes (default), also for case variants of one address.
		for i := range 5 {
			addr := "victim@example.com"
			if i%2 == 1 {
				addr = "Victim@Example.com"
			}
			r := e.json("/selfservice/send-verification-code-by-email", `{"email":"`+addr+`"}`, "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
			if r.body["status"] != float64(200) {
				t.Fatalf("send %d: %s", i, r.raw)
			}
		}
		r := e.json("/selfservice/send-verification-code-by-email", `{"email":"victim@example.com"}`, "X-Forwarded-For", "198.51.100.77")
		r.envelopeError(t, 429, "TOO_MANY_REQUESTS")
		if r.header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
		// Per IP: 25 per 5 minutes (default), counted on the forwarded address.
		for i := range 25 {
			r := e.json("/selfservice/send-verification-code-by-email", fmt.Sprintf(`{"email":"u%d@example.com"}`, i), "X-Forwarded-For", "203.0.113.9")
			if r.body["status"] != float64(200) {
				t.Fatalf("ip send %d: %s", i, r.raw)
			}
		}
		e.json("/selfservice/send-verification-code-by-email", `{"email":"next@example.com"}`, "X-Forwarded-For", "203.0.113.9").
			envelopeError(t, 429, "TOO_MANY_REQUESTS")
		if r := e.json("/selfservice/send-verification-code-by-email", `{"email":"next@example.com"}`, "X-Forwarded-For", "203.0.113.10"); r.body["status"] != float64(200) {
			t.Errorf("another IP refused: %s", r.raw)
		}
	})
}

// TestSpoofedForwardedForIgnored: without a trusted proxy, X-Forwarded-For does not move a
// client into a fresh IP bucket.
func TestSpoofedForwardedForIgnored(t *testing.T) {
	e := newEnv(t, storetest.Backends()[0], nil)
	for i := range 25 {
		r := e.json("/selfservice/send-verification-code-by-email", fmt.Sprintf(`{"email":"s%d@example.com"}`, i), "X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i))
		if r.body["status"] != float64(200) {
			t.Fatalf("send %d: %s", i, r.raw)
		}
	}
	e.json("/selfservice/send-verification-code-by-email", `{"email":"s99@example.com"}`, "X-Forwarded-For", "192.0.2.200").
		envelopeError(t, 429, "TOO_MANY_REQUESTS")
}

// TestTenantResolution: API keys, the host map, the default tenant and require-API-key.
func TestTenantResolution(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		_, acmeKey, err := e.a.Engine.CreateTenant(context.Background(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		if r := e.native("PUT", "/v1/token-settings", acmeKey, map[string]any{"self_service": map[string]any{"hosts": []string{"login.acme.example"}}}); r.status != 200 {
			t.Fatalf("settings: %d %s", r.status, r.raw)
		}
		// By host: the session lands in acme.
		r := e.json("/selfservice/send-verification-code-by-email", `{"email":"h@example.com"}`, "Host", "login.acme.example")
		if r.body["status"] != float64(200) {
			t.Fatalf("send by host: %s", r.raw)
		}
		mf := int64(r.body["contextValues"].(map[string]any)["emailMovingFactor"].(float64))
		code := e.code(acmeKey, "h@example.com")
		// The default tenant does not know that moving factor; acme's host does.
		e.json("/selfservice/check-verification-code", fmt.Sprintf(`{"emailCode":"%s","emailMovingFactor":%d}`, code, mf)).
			envelopeError(t, 500, "MOVING_FACTOR_NOT_FOUND")
		if r := e.json("/selfservice/check-verification-code", fmt.Sprintf(`{"emailCode":"%s","emailMovingFactor":%d}`, code, mf), "x-api-key", acmeKey); r.body["error"] != false {
			t.Errorf("check with acme's key: %s", r.raw)
		}
		// Require an API key.
		if r := e.native("PUT", "/v1/token-settings", acmeKey, map[string]any{"self_service": map[string]any{"require_api_key": true, "hosts": []string{"login.acme.example"}}}); r.status != 200 {
			t.Fatal(r.status)
		}
		e.json("/selfservice/send-verification-code-by-email", `{"email":"k@example.com"}`, "Host", "login.acme.example").envelopeError(t, 401, "UNAUTHORIZED")
		e.json("/selfservice/check-verification-code", `{"emailCode":"123456","emailMovingFactor":1}`, "Host", "login.acme.example").envelopeError(t, 401, "UNAUTHORIZED")
		if r := e.json("/selfservice/send-verification-code-by-email", `{"email":"k@example.com"}`, "Host", "login.acme.example", "Authorization", "Bearer "+acmeKey); r.body["status"] != float64(200) {
			t.Errorf("with the key as bearer: %s", r.raw)
		}
		// The default tenant still serves anonymous callers; a bad key is refused.
		if r := e.json("/selfservice/send-verification-code-by-email", `{"email":"d@example.com"}`); r.body["status"] != float64(200) {
			t.Errorf("default tenant: %s", r.raw)
		}
		e.json("/selfservice/send-verification-code-by-email", `{"email":"d@example.com"}`, "x-api-key", "otpd_0000000000000000_nope").envelopeError(t, 401, "UNAUTHORIZED")
		e.json("/selfservice/send-verification-code-by-email", `{"email":"d@example.com"}`, "Authorization", "Basic eDp5").envelopeError(t, 401, "UNAUTHORIZED")
	})
}

// TestSMSCountryNotAllowed: an SMS to a country the tenant does not allow is INVALID_PHONE (400),
// as docs/openiam.md says — not a rate limit with "try again in 0 s" — and nothing is sent.
func TestSMSCountryNotAllowed(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		if r := e.native("PATCH", "/v1/settings/messaging", e.admin, map[string]any{"allowed_countries": []string{"AU"}}); r.status != 200 {
			t.Fatalf("settings: %d %s", r.status, r.raw)
		}
		for range 2 { // the second is not refused as a repeat either
			r := e.json("/selfservice/send-sms-verification-code", seedSMSPayload) // +1 …: US
			r.envelopeError(t, 400, "INVALID_PHONE")
			if ra := r.header.Get("Retry-After"); ra != "" {
				t.Errorf("Retry-After %q on a country refusal", ra)
			}
		}
		if r := e.native("GET", "/v1/verifications", e.admin, nil); len(r.body["items"].([]any)) != 0 {
			t.Fatalf("refused sends left sessions: %s", r.raw)
		}
		// An allowed country still gets its code.
		r := e.json("/selfservice/send-sms-verification-code", `{"countryCd":"61","areaCd":"4","phoneNbr":"01629754"}`)
		if r.body["status"] != float64(200) {
			t.Fatalf("AU send: %s", r.raw)
		}
	})
}

// TestCheckLimitPerIP: the public check endpoint allows 30 checks per client IP per 5 minutes
// (policy tokens.self_service_checks), lookups of unknown moving factors included, so nobody can
// walk moving factors or spend another user's tries from one address. The refusal is the
// envelope's 429 with Retry-After and spends none of the victim's tries. The IP comes from a
// trusted proxy only; a direct peer is counted on its own address whatever it forwards.
func TestCheckLimitPerIP(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1/32"} })
		r := e.json("/selfservice/send-verification-code-by-email", `{"email":"victim@example.com"}`, "X-Forwarded-For", "198.51.100.1")
		if r.body["status"] != float64(200) {
			t.Fatalf("send: %s", r.raw)
		}
		mf := int64(r.body["contextValues"].(map[string]any)["emailMovingFactor"].(float64))
		code := e.code(e.admin, "victim@example.com")
		check := func(mf int64, code, ip string) resp {
			t.Helper()
			if ip == "" {
				return e.json("/selfservice/check-verification-code", fmt.Sprintf(`{"emailCode":"%s","emailMovingFactor":%d}`, code, mf))
			}
			return e.json("/selfservice/check-verification-code", fmt.Sprintf(`{"emailCode":"%s","emailMovingFactor":%d}`, code, mf), "X-Forwarded-For", ip)
		}
		// The attacker probes 30 moving factors around the send; none is the victim's.
		for i := range 30 {
			check(mf+int64(i)+1, "000000", "203.0.113.9").envelopeError(t, 500, "MOVING_FACTOR_NOT_FOUND")
		}
		// The 31st check — now of the victim's moving factor — is refused before any lookup.
		r = check(mf, "000000", "203.0.113.9")
		r.envelopeError(t, 429, "TOO_MANY_REQUESTS")
		if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 300 {
			t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
		}
		// No try of the victim's was spent: every one of the 5 is still there, and the right
		// code works from the victim's own address.
		for range 4 {
			check(mf, wrongDigits(code), "198.51.100.1").envelopeError(t, 500, "CODE_NOT_EQUAL")
		}
		if r := check(mf, code, "198.51.100.1"); string(bytes.TrimSpace(r.raw)) != seedCheckOK {
			t.Fatalf("victim's check: %s", r.raw)
		}
		// The window slides.
		e.clk.Advance(5*time.Minute + time.Second)
		check(mf+99, "000000", "203.0.113.9").envelopeError(t, 500, "MOVING_FACTOR_NOT_FOUND")

		// A direct peer (no X-Forwarded-For, and a trusted proxy's own requests) is counted on its
		// own address.
		for i := range 30 {
			check(mf+int64(i)+1, "000000", "").envelopeError(t, 500, "MOVING_FACTOR_NOT_FOUND")
		}
		check(mf, "000000", "").envelopeError(t, 429, "TOO_MANY_REQUESTS")
	})
}

// TestCheckLimitSpoofedForwardedFor: without a trusted proxy, X-Forwarded-For does not move a
// client into a fresh check bucket; the peer's address is the key.
func TestCheckLimitSpoofedForwardedFor(t *testing.T) {
	e := newEnv(t, storetest.Backends()[0], func(c *config.Config) {
		c.Policy.Tokens.SelfServiceChecks.Count, c.Policy.Tokens.SelfServiceChecks.Window = 3, time.Minute
	})
	for i := range 3 {
		e.json("/selfservice/check-verification-code", fmt.Sprintf(`{"smsCode":"123456","smsMovingFactor":%d}`, 1000+i),
			"X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i)).envelopeError(t, 500, "MOVING_FACTOR_NOT_FOUND")
	}
	e.json("/selfservice/check-verification-code", `{"smsCode":"123456","smsMovingFactor":1}`, "X-Forwarded-For", "192.0.2.200").
		envelopeError(t, 429, "TOO_MANY_REQUESTS")
	// The limit is the tenant's: a key of another tenant has its own budget on the same address.
	_, key, err := e.a.Engine.CreateTenant(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	e.json("/selfservice/check-verification-code", `{"smsCode":"123456","smsMovingFactor":1}`, "x-api-key", key).
		envelopeError(t, 500, "MOVING_FACTOR_NOT_FOUND")
}

// wrongDigits is a 6-digit code that is not code.
func wrongDigits(code string) string { return fmt.Sprintf("%06d", (mustAtoi(code)+1)%1000000) }
