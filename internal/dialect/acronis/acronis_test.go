package acronis_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/otpd/otpd/internal/app"
	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/dialect/acronis"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store/storetest"
	"github.com/otpd/otpd/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// env is otpd with its real wiring behind httptest, and a second instance on the same database
// (for the multi-instance properties).
type env struct {
	t      *testing.T
	a, b   *app.App
	srv    *httptest.Server
	srv2   *httptest.Server
	clk    *clock.Fake
	admin  string
	client *http.Client // no redirects followed
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
	open := func() *app.App {
		a, err := app.Open(context.Background(), c, slog.New(slog.DiscardHandler), app.Options{Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	a := open()
	second := open()
	e := &env{t: t, a: a, b: second, clk: clk, admin: a.AdminKey,
		client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	e.srv = httptest.NewServer(a.API)
	t.Cleanup(e.srv.Close)
	e.srv2 = httptest.NewServer(second.API)
	t.Cleanup(e.srv2.Close)
	return e
}

type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

// send sends a request to base (srv.URL) with a raw body and headers (name, value pairs).
func (e *env) send(base, method, path string, body []byte, headers ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (e *env) jsonCall(method, path, key string, body any) resp {
	e.t.Helper()
	b, _ := json.Marshal(body)
	return e.send(e.srv.URL, method, path, b, "Content-Type", "application/json", "Authorization", "Bearer "+key)
}

// acronisError asserts the account API's error shape.
func (r resp) acronisError(t *testing.T, status, code int) {
	t.Helper()
	er, _ := r.body["error"].(map[string]any)
	if r.status != status || er == nil || er["code"] != float64(code) || er["domain"] != "PlatformAccountServer" ||
		er["message"] == "" || er["context"] == nil || er["details"] == nil || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("want Acronis error %d/%d, got %d %s", status, code, r.status, r.raw)
	}
}

// oauthError asserts the OAuth 2.0 error shape.
func (r resp) oauthError(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status || r.body["error"] != code || r.body["error_description"] == "" || len(r.body) != 2 {
		t.Fatalf("want OAuth error %d %s, got %d %s", status, code, r.status, r.raw)
	}
}

// client creates an application through the native API and returns its client credentials.
func (e *env) client2(name string) (id, secret string) {
	e.t.Helper()
	r := e.jsonCall("POST", "/v1/applications", e.admin, map[string]string{"name": name})
	if r.status != 201 {
		e.t.Fatalf("create application: %d %s", r.status, r.raw)
	}
	return r.body["client_id"].(string), r.body["client_secret"].(string)
}

// token runs POST /api/2/idp/token with Basic client authentication on base.
func (e *env) token(base, id, secret string) resp {
	e.t.Helper()
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
	return e.send(base, "POST", "/api/2/idp/token", []byte("grant_type=client_credentials"),
		"Content-Type", "application/x-www-form-urlencoded", "Authorization", "Basic "+basic)
}

// seedUser is the user of the seed's example.
func (e *env) seedUser() string {
	e.t.Helper()
	r := e.jsonCall("POST", "/v1/users", e.admin, map[string]any{"login": "johncustomer@mysite.com",
		"email": "johncustomer@mysite.com", "first_name": "John", "last_name": "Customer", "language": "en"})
	if r.status != 201 {
		e.t.Fatalf("create user: %d %s", r.status, r.raw)
	}
	return r.body["id"].(string)
}

// seedAccountKeys are the members of the seed's account JSON (step 9).
var seedAccountKeys = []string{"activated", "business_types", "contact", "created_at", "enabled", "id", "idp_id",
	"language", "login", "mfa_status", "notifications", "personal_tenant_id", "tenant_id", "terms_accepted", "version"}

var seedContactKeys = []string{"address1", "address2", "city", "country", "email", "firstname", "lastname", "phone", "state", "zipcode"}

func sortedKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestSeedFlow replays the seed's steps 2–9 as the Python client sends them: a bearer token
// from the token endpoint (step 1), the JSON text of json.dumps(indent=4) to /idp/ott, then
// requests.post(..., data=login_data) with the dict — which requests form-encodes even under
// the JSON content type — to /idp/ott/login; the user account JSON and a session cookie come
// back; the token cannot be used again.
func TestSeedFlow(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		uid := e.seedUser()
		id, secret := e.client2("integration")
		tr := e.token(e.srv.URL, id, secret)
		if tr.status != 200 || tr.body["token_type"] != "bearer" || tr.body["expires_in"] != float64(7200) ||
			tr.body["expires_on"] != float64(t0.Add(2*time.Hour).Unix()) || tr.body["id_token"] == "" ||
			tr.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("token: %d %s", tr.status, tr.raw)
		}
		if ks := sortedKeys(tr.body); !slices.Equal(ks, []string{"access_token", "expires_in", "expires_on", "id_token", "token_type"}) {
			t.Errorf("token answer members %v", ks)
		}
		auth := "Bearer " + tr.body["access_token"].(string)

		// Steps 2–5.
		ottData := "{\n    \"login\": \"johncustomer@mysite.com\",\n    \"purpose\": \"user_login\"\n}"
		r := e.send(e.srv.URL, "POST", "/api/2/idp/ott", []byte(ottData), "Content-Type", "application/json", "Authorization", auth)
		if r.status != 200 || len(r.body) != 1 {
			t.Fatalf("step 5: %d %s", r.status, r.raw)
		}
		// Step 6.
		ott := r.body["ott"].(string)
		if raw, err := base64.RawURLEncoding.DecodeString(ott); err != nil || len(raw) != 32 {
			t.Errorf("ott is not 256 bits of base64url: %q", ott)
		}
		// Steps 7–9: data=login_data (a dict) is sent form-encoded.
		login := url.Values{"ott": {ott}}.Encode()
		r = e.send(e.srv.URL, "POST", "/api/2/idp/ott/login", []byte(login), "Content-Type", "application/json")
		if r.status != 200 {
			t.Fatalf("step 9: %d %s", r.status, r.raw)
		}
		if ks := sortedKeys(r.body); !slices.Equal(ks, seedAccountKeys) {
			t.Errorf("account members %v, want the seed's %v", ks, seedAccountKeys)
		}
		contact, _ := r.body["contact"].(map[string]any)
		if ks := sortedKeys(contact); !slices.Equal(ks, seedContactKeys) {
			t.Errorf("contact members %v", ks)
		}
		if r.body["id"] != uid || r.body["login"] != "johncustomer@mysite.com" || r.body["enabled"] != true ||
			r.body["language"] != "en" || r.body["mfa_status"] != "disabled" || r.body["version"] != float64(1) ||
			r.body["idp_id"] != acronis.IdpID || r.body["personal_tenant_id"] != nil || r.body["tenant_id"] != e.a.TenantID ||
			contact["email"] != "johncustomer@mysite.com" || contact["firstname"] != "John" || contact["lastname"] != "Customer" {
			t.Errorf("account: %s", r.raw)
		}
		if !regexp.MustCompile(`^2026-11-24T12:00:00\.000000\+00:00$`).MatchString(r.body["created_at"].(string)) {
			t.Errorf("created_at %q is not in the seed's form", r.body["created_at"])
		}
		var cookie *http.Cookie
		for _, c := range (&http.Response{Header: r.header}).Cookies() {
			if c.Name == acronis.SessionCookie {
				cookie = c
			}
		}
		if cookie == nil || !cookie.HttpOnly || cookie.Secure || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.MaxAge != 8*3600 {
			t.Fatalf("session cookie: %+v (Set-Cookie %q)", cookie, r.header.Values("Set-Cookie"))
		}
		// The session is in the database: the other instance knows it.
		me := e.send(e.srv2.URL, "GET", "/api/2/users/me", nil, "Cookie", cookie.Name+"="+cookie.Value)
		if me.status != 200 || me.body["id"] != uid {
			t.Fatalf("users/me on instance B: %d %s", me.status, me.raw)
		}
		// The JSON form of the login body works too; a second use, in either form, is a 401.
		e.send(e.srv.URL, "POST", "/api/2/idp/ott/login", []byte(`{"ott":"`+ott+`"}`), "Content-Type", "application/json").acronisError(t, 401, 401)
		e.send(e.srv2.URL, "POST", "/api/2/idp/ott/login", []byte(login), "Content-Type", "application/json").acronisError(t, 401, 401)

		// Expiry: at +31 s a fresh token is refused; at +29 s it works.
		r = e.send(e.srv.URL, "POST", "/api/2/idp/ott", []byte(ottData), "Content-Type", "application/json", "Authorization", auth)
		late := r.body["ott"].(string)
		r = e.send(e.srv.URL, "POST", "/api/2/idp/ott", []byte(ottData), "Content-Type", "application/json", "Authorization", auth)
		inTime := r.body["ott"].(string)
		e.clk.Advance(29 * time.Second)
		if r := e.send(e.srv.URL, "POST", "/api/2/idp/ott/login", []byte(`{"ott":"`+inTime+`"}`), "Content-Type", "application/json"); r.status != 200 {
			t.Fatalf("login at +29 s: %d %s", r.status, r.raw)
		}
		e.clk.Advance(2 * time.Second)
		e.send(e.srv.URL, "POST", "/api/2/idp/ott/login", []byte(`{"ott":"`+late+`"}`), "Content-Type", "application/json").acronisError(t, 401, 401)
		e.send(e.srv.URL, "POST", "/api/2/idp/ott/login", []byte(`{"ott":"unknown"}`), "Content-Type", "application/json").acronisError(t, 401, 401)
	})
}

// TestOTTRequestStrictness: the /idp/ott body allows the documented fields only.
func TestOTTRequestStrictness(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.seedUser()
		id, secret := e.client2("integration")
		auth := "Bearer " + e.token(e.srv.URL, id, secret).body["access_token"].(string)
		post := func(body string, headers ...string) resp {
			h := append([]string{"Content-Type", "application/json", "Authorization", auth}, headers...)
			return e.send(e.srv.URL, "POST", "/api/2/idp/ott", []byte(body), h...)
		}
		for _, body := range []string{
			`{"login":"johncustomer@mysite.com","purpose":"user_login","tenant_id":"x"}`,
			`{"login":"johncustomer@mysite.com"}`,
			`{"login":"johncustomer@mysite.com","purpose":"admin_login"}`,
			`{"purpose":"user_login"}`,
			`{"login":"johncustomer@mysite.com","user_id":"x","purpose":"user_login"}`,
			`{"login":123,"purpose":"user_login"}`,
			`{"login":"johncustomer@mysite.com","purpose":"user_login","audit_data":"text"}`,
			`[{"login":"johncustomer@mysite.com"}]`,
			`{"login":"johncustomer@mysite.com","purpose":"user_login"} {}`,
			`not json`,
			``,
		} {
			post(body).acronisError(t, 400, 400)
		}
		post(`{"login":"x","purpose":"user_login"}`, "Content-Type", "text/plain").acronisError(t, 415, 415)
		post(`{"login":"`+strings.Repeat("a", 70000)+`","purpose":"user_login"}`).acronisError(t, 413, 413)
		post(`{"login":"nobody@mysite.com","purpose":"user_login"}`).acronisError(t, 404, 404)
		if r := post(`{"external_id":"","login":"johncustomer@mysite.com","purpose":"user_login","audit_data":{"agent":"a1"}}`); r.status != 200 {
			t.Errorf("with audit_data: %d %s", r.status, r.raw)
		}
		// A disabled user: Acronis code 1018.
		u := e.jsonCall("POST", "/v1/users", e.admin, map[string]any{"login": "gone", "enabled": false})
		if u.status != 201 {
			t.Fatal(u.status)
		}
		post(`{"login":"gone","purpose":"user_login"}`).acronisError(t, 403, 1018)
		// Authentication.
		for _, a := range []string{"", "Basic abc", "Bearer", "Bearer not.a.jwt", "Bearer otpd_0000000000000000_" + strings.Repeat("A", 43)} {
			r := e.send(e.srv.URL, "POST", "/api/2/idp/ott", []byte(`{"login":"johncustomer@mysite.com","purpose":"user_login"}`),
				"Content-Type", "application/json", "Authorization", a)
			r.acronisError(t, 401, 401)
		}
		// An otpd API key works as the bearer too.
		r := e.send(e.srv.URL, "POST", "/api/2/idp/ott", []byte(`{"login":"johncustomer@mysite.com","purpose":"user_login"}`),
			"Content-Type", "application/json", "Authorization", "Bearer "+e.admin)
		if r.status != 200 {
			t.Errorf("with an API key: %d %s", r.status, r.raw)
		}
		// purpose "verify": a token that proves the user once to the backend that asked for it
		// (redeemed through the native API) and is no login: /ott/login refuses it, unspent.
		v := post(`{"login":"johncustomer@mysite.com","purpose":"verify"}`)
		if v.status != 200 || v.body["ott"] == nil {
			t.Fatalf("verify token: %d %s", v.status, v.raw)
		}
		vt := v.body["ott"].(string)
		e.send(e.srv.URL, "POST", "/api/2/idp/ott/login", []byte(`{"ott":"`+vt+`"}`), "Content-Type", "application/json").acronisError(t, 401, 401)
		red := e.jsonCall("POST", "/v1/login-tokens/redeem", e.admin, map[string]string{"token": vt, "purpose": "verify"})
		if red.status != 200 || red.body["user"].(map[string]any)["login"] != "johncustomer@mysite.com" || red.body["session"] != nil {
			t.Fatalf("redeem the verify token: %d %s", red.status, red.raw)
		}
		if again := e.jsonCall("POST", "/v1/login-tokens/redeem", e.admin, map[string]string{"token": vt, "purpose": "verify"}); again.status != 400 {
			t.Errorf("a verify token redeemed twice: %d %s", again.status, again.raw)
		}
		// Unknown paths and methods under /api/2 answer in the Acronis shape.
		e.send(e.srv.URL, "GET", "/api/2/nothing", nil).acronisError(t, 404, 404)
	})
}

// TestTokenEndpoint: the client-credentials grant, its errors, and the JWKS verifying the token.
func TestTokenEndpoint(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		id, secret := e.client2("integration")
		form := "application/x-www-form-urlencoded"
		// Credentials in the body work like Basic.
		r := e.send(e.srv.URL, "POST", "/api/2/idp/token", []byte(url.Values{"grant_type": {"client_credentials"},
			"client_id": {id}, "client_secret": {secret}}.Encode()), "Content-Type", form)
		if r.status != 200 {
			t.Fatalf("post credentials: %d %s", r.status, r.raw)
		}
		access := r.body["access_token"].(string)
		basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
		wrong := "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":wrong"))
		e.send(e.srv.URL, "POST", "/api/2/idp/token", []byte("grant_type=client_credentials"), "Content-Type", form, "Authorization", wrong).oauthError(t, 401, "invalid_client")
		r = e.send(e.srv.URL, "POST", "/api/2/idp/token", []byte("grant_type=client_credentials"), "Content-Type", form)
		r.oauthError(t, 401, "invalid_client")
		if r.header.Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
		e.send(e.srv.URL, "POST", "/api/2/idp/token", []byte("grant_type=password&username=a&password=b"), "Content-Type", form, "Authorization", basic).oauthError(t, 400, "unsupported_grant_type")
		e.send(e.srv.URL, "POST", "/api/2/idp/token", []byte(""), "Content-Type", form, "Authorization", basic).oauthError(t, 400, "invalid_request")
		e.send(e.srv.URL, "POST", "/api/2/idp/token", []byte("grant_type=client_credentials&client_id="+id), "Content-Type", form, "Authorization", basic).oauthError(t, 400, "invalid_request")
		e.send(e.srv.URL, "POST", "/api/2/idp/token", []byte(`{"grant_type":"client_credentials"}`), "Content-Type", "application/json", "Authorization", basic).oauthError(t, 400, "invalid_request")
		e.send(e.srv.URL, "POST", "/api/2/idp/token", []byte("grant_type=client_credentials&grant_type=client_credentials"), "Content-Type", form, "Authorization", basic).oauthError(t, 400, "invalid_request")
		e.send(e.srv.URL, "POST", "/api/2/idp/token", []byte("grant_type=client_credentials&client_id=cl_nope&client_secret=x"), "Content-Type", form).oauthError(t, 401, "invalid_client")

		// The JWKS verifies the access token's signature (ES256, by kid), on either instance.
		for _, base := range []string{e.srv.URL, e.srv2.URL} {
			jr := e.send(base, "GET", "/.well-known/jwks.json", nil)
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(jr.raw, &set); err != nil || len(set.Keys) == 0 {
				t.Fatalf("jwks: %v %s", err, jr.raw)
			}
			claims := jwt.MapClaims{}
			_, err := jwt.ParseWithClaims(access, claims, func(tk *jwt.Token) (any, error) {
				for _, k := range set.Keys {
					if k.KeyID == tk.Header["kid"] {
						return k.Key, nil
					}
				}
				return nil, jwt.ErrTokenUnverifiable
			}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(func() time.Time { return t0 }))
			if err != nil || claims["client_id"] != id || claims["tid"] != e.a.TenantID {
				t.Errorf("access token does not verify with the JWKS of %s: %v %v", base, err, claims)
			}
		}
	})
}

// TestIntrospectAndRevoke: RFC 7662 and RFC 7009 at /api/2/idp; a token revoked through one
// instance is refused by the other at once.
func TestIntrospectAndRevoke(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.seedUser()
		id, secret := e.client2("integration")
		access := e.token(e.srv.URL, id, secret).body["access_token"].(string)
		form := "application/x-www-form-urlencoded"
		basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
		introspect := func(base, tok string) resp {
			return e.send(base, "POST", "/api/2/idp/introspect_token", []byte(url.Values{"token": {tok}}.Encode()), "Content-Type", form, "Authorization", basic)
		}
		r := introspect(e.srv2.URL, access)
		if r.status != 200 || r.body["active"] != true || r.body["client_id"] != id || r.body["token_type"] != "access_token" ||
			r.body["exp"] != float64(t0.Add(2*time.Hour).Unix()) {
			t.Fatalf("introspect: %d %s", r.status, r.raw)
		}
		if r := introspect(e.srv.URL, "garbage"); r.status != 200 || r.body["active"] != false || len(r.body) != 1 {
			t.Errorf("introspect garbage: %d %s", r.status, r.raw)
		}
		e.send(e.srv.URL, "POST", "/api/2/idp/introspect_token", []byte("token="+access), "Content-Type", form).oauthError(t, 401, "invalid_client")
		e.send(e.srv.URL, "POST", "/api/2/idp/introspect_token", []byte(""), "Content-Type", form, "Authorization", basic).oauthError(t, 400, "invalid_request")
		// A bearer access token also authenticates the introspecting client.
		if r := e.send(e.srv.URL, "POST", "/api/2/idp/introspect_token", []byte("token="+access), "Content-Type", form, "Authorization", "Bearer "+access); r.body["active"] != true {
			t.Errorf("introspect with a bearer token: %d %s", r.status, r.raw)
		}

		ott := func(base string) resp {
			return e.send(base, "POST", "/api/2/idp/ott", []byte(`{"login":"johncustomer@mysite.com","purpose":"user_login"}`),
				"Content-Type", "application/json", "Authorization", "Bearer "+access)
		}
		if r := ott(e.srv2.URL); r.status != 200 {
			t.Fatalf("ott before revocation: %d %s", r.status, r.raw)
		}
		r = e.send(e.srv.URL, "POST", "/api/2/idp/revoke_token", []byte(url.Values{"token": {access}, "token_type_hint": {"access_token"}}.Encode()),
			"Content-Type", form, "Authorization", basic)
		if r.status != 200 || len(r.raw) != 0 {
			t.Fatalf("revoke: %d %q", r.status, r.raw)
		}
		// Refused at once by both instances.
		ott(e.srv2.URL).acronisError(t, 401, 401)
		ott(e.srv.URL).acronisError(t, 401, 401)
		if r := introspect(e.srv2.URL, access); r.body["active"] != false {
			t.Errorf("revoked token introspects active: %s", r.raw)
		}
		// Unknown tokens revoke "successfully"; missing token and bad client are errors.
		if r := e.send(e.srv.URL, "POST", "/api/2/idp/revoke_token", []byte("token=nothing"), "Content-Type", form, "Authorization", basic); r.status != 200 {
			t.Errorf("revoke unknown: %d", r.status)
		}
		e.send(e.srv.URL, "POST", "/api/2/idp/revoke_token", []byte(""), "Content-Type", form, "Authorization", basic).oauthError(t, 400, "invalid_request")
		e.send(e.srv.URL, "POST", "/api/2/idp/revoke_token", []byte("token=x"), "Content-Type", form).oauthError(t, 401, "invalid_client")
	})
}

// TestOTTLoginRace: 50 concurrent logins with one token, spread over two instances (two app
// instances on one PostgreSQL, or on one SQLite file): exactly one 200.
func TestOTTLoginRace(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.seedUser()
		bases := []string{e.srv.URL, e.srv2.URL}
		for round := range 3 {
			r := e.jsonCall("POST", "/api/2/idp/ott", e.admin, map[string]string{"login": "johncustomer@mysite.com", "purpose": "user_login"})
			ott := r.body["ott"].(string)
			var ok, refused atomic.Int32
			var wg sync.WaitGroup
			gate := make(chan struct{})
			for i := range 50 {
				wg.Go(func() {
					<-gate
					req, _ := http.NewRequest("POST", bases[i%2]+"/api/2/idp/ott/login", strings.NewReader(`{"ott":"`+ott+`"}`))
					req.Header.Set("Content-Type", "application/json")
					res, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					switch res.StatusCode {
					case 200:
						ok.Add(1)
					case 401:
						refused.Add(1)
					default:
						t.Errorf("status %d", res.StatusCode)
					}
				})
			}
			close(gate)
			wg.Wait()
			if ok.Load() != 1 || refused.Load() != 49 {
				t.Fatalf("round %d: %d logins, %d refused; want 1 and 49", round, ok.Load(), refused.Load())
			}
		}
	})
}

var formRE = regexp.MustCompile(`<form id="login" method="post" action="/api/2/idp/external-login">`)

// TestExternalLogin: the page, the redeeming POST with its redirect, and open-redirect attempts
// refused without spending the token.
func TestExternalLogin(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, func(c *config.Config) { c.TrustedProxies = []string{"10.9.0.0/16"} })
		e.seedUser()
		if r := e.jsonCall("PUT", "/v1/token-settings", e.admin, map[string]any{"redirect_targets": []string{"https://portal.example.com/app"}}); r.status != 200 {
			t.Fatalf("settings: %d %s", r.status, r.raw)
		}
		newOTT := func() string {
			r := e.jsonCall("POST", "/api/2/idp/ott", e.admin, map[string]string{"login": "johncustomer@mysite.com", "purpose": "user_login"})
			return r.body["ott"].(string)
		}
		ott := newOTT()
		link := func(ott, target string) string {
			return "/api/2/idp/external-login?" + url.Values{"ott": {ott}, "targetURI": {target}}.Encode()
		}
		for _, bad := range []string{"https://evil.example/app", "//evil.example/app", "javascript:alert(document.cookie)",
			"https://portal.example.com@evil.example/app", "https://portal.example.com.evil.example/app",
			"https://portal.example.com/application", "https://portal.example.com/app/../admin", "http://portal.example.com/app",
			"https://portal.example.com\\@evil.example/app", "/app", "https://portal.example.com:444/app",
			"https://evil.example%2f@portal.example.com/app", "https:%2f%2fevil.example"} {
			r := e.send(e.srv.URL, "GET", link(ott, bad), nil)
			if r.status != 400 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || r.header.Get("Location") != "" {
				t.Errorf("GET %q: %d %s", bad, r.status, r.raw)
			}
			r = e.send(e.srv.URL, "POST", "/api/2/idp/external-login", []byte(url.Values{"ott": {ott}, "targetURI": {bad}}.Encode()),
				"Content-Type", "application/x-www-form-urlencoded")
			if r.status != 400 || r.header.Get("Location") != "" || len(r.header.Values("Set-Cookie")) != 0 {
				t.Errorf("POST %q: %d %v", bad, r.status, r.header)
			}
		}
		// The token survived every refused attempt. The page carries it in a form posted back.
		target := "https://portal.example.com/app/dashboard?tab=2"
		page := e.send(e.srv.URL, "GET", link(ott, target), nil)
		if page.status != 200 || !formRE.Match(page.raw) || !bytes.Contains(page.raw, []byte(`value="`+ott+`"`)) ||
			page.header.Get("Referrer-Policy") != "no-referrer" || page.header.Get("Cache-Control") != "no-store" ||
			!strings.Contains(page.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Fatalf("page: %d %v %s", page.status, page.header, page.raw)
		}
		// Loading the page twice (a link scanner, a prefetch) does not spend the token.
		e.send(e.srv.URL, "GET", link(ott, target), nil)
		post := func(base, ott, target string, headers ...string) resp {
			h := append([]string{"Content-Type", "application/x-www-form-urlencoded"}, headers...)
			return e.send(base, "POST", "/api/2/idp/external-login", []byte(url.Values{"ott": {ott}, "targetURI": {target}}.Encode()), h...)
		}
		r := post(e.srv2.URL, ott, target)
		if r.status != 303 || r.header.Get("Location") != target {
			t.Fatalf("redeeming POST: %d %v %s", r.status, r.header, r.raw)
		}
		var cookie *http.Cookie
		for _, c := range (&http.Response{Header: r.header}).Cookies() {
			if c.Name == acronis.SessionCookie {
				cookie = c
			}
		}
		if cookie == nil || !cookie.HttpOnly || cookie.Secure || cookie.SameSite != http.SameSiteLaxMode {
			t.Fatalf("cookie: %+v", cookie)
		}
		if me := e.send(e.srv.URL, "GET", "/api/2/users/me", nil, "Cookie", cookie.Name+"="+cookie.Value); me.status != 200 {
			t.Errorf("session from the external login: %d", me.status)
		}
		// Spent: the page and the POST now refuse it.
		if r := e.send(e.srv.URL, "GET", link(ott, target), nil); r.status != 401 {
			t.Errorf("page for a spent token: %d", r.status)
		}
		if r := post(e.srv.URL, ott, target); r.status != 401 || r.header.Get("Location") != "" {
			t.Errorf("second POST: %d", r.status)
		}
		// Secure cookie behind a trusted TLS-terminating proxy; a spoofed header from an
		// untrusted peer does not make it so (httptest's peer is 127.0.0.1, not trusted here).
		r = post(e.srv.URL, newOTT(), target, "X-Forwarded-Proto", "https")
		for _, c := range (&http.Response{Header: r.header}).Cookies() {
			if c.Name == acronis.SessionCookie && c.Secure {
				t.Error("Secure set from an untrusted X-Forwarded-Proto")
			}
		}
		// Malformed links.
		for _, q := range []string{"", "?ott=" + newOTT(), "?targetURI=" + url.QueryEscape(target), "?ott=a&ott=b&targetURI=x"} {
			if r := e.send(e.srv.URL, "GET", "/api/2/idp/external-login"+q, nil); r.status != 400 {
				t.Errorf("GET %q: %d", q, r.status)
			}
		}
		if r := e.send(e.srv.URL, "GET", link("unknown", target), nil); r.status != 401 {
			t.Errorf("unknown token: %d", r.status)
		}
	})
}

// TestSecureCookieBehindTrustedProxy: the session cookie is Secure when a trusted proxy says the
// user came over TLS.
func TestSecureCookieBehindTrustedProxy(t *testing.T) {
	e := newEnv(t, storetest.Backends()[0], func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1/32"} })
	e.seedUser()
	r := e.jsonCall("POST", "/api/2/idp/ott", e.admin, map[string]string{"login": "johncustomer@mysite.com", "purpose": "user_login"})
	r = e.send(e.srv.URL, "POST", "/api/2/idp/ott/login", []byte(`{"ott":"`+r.body["ott"].(string)+`"}`),
		"Content-Type", "application/json", "X-Forwarded-Proto", "https", "X-Forwarded-For", "198.51.100.4")
	found := false
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == acronis.SessionCookie {
			found = true
			if !c.Secure || !c.HttpOnly {
				t.Errorf("cookie behind a trusted TLS proxy: %+v", c)
			}
		}
	}
	if !found {
		t.Fatalf("no session cookie: %d %s", r.status, r.raw)
	}
}
