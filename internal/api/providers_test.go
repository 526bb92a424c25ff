package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "github.com/otpd/otpd/internal/deliver/smpp" // provider types
	_ "github.com/otpd/otpd/internal/deliver/smshttp"
	_ "github.com/otpd/otpd/internal/deliver/twilio"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store/sqlstore"
)

// The provider endpoints in TestOpenAPIResponsesMatchServer: every documented response of
// /v1/providers… and /v1/receipts/{provider_id}, validated against the document, with a real
// HTTP gateway on loopback behind the test sends.
func init() { oapiSurfaces = append(oapiSurfaces, driveProviders) }

// testGateway is an HTTP SMS gateway that accepts every message, or refuses with 503 when told.
type testGateway struct {
	*httptest.Server
	mu    sync.Mutex
	texts []string
	down  bool
}

func newTestGateway(t *testing.T) *testGateway {
	g := &testGateway{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ To, Text string }
		json.NewDecoder(r.Body).Decode(&body)
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.down {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"status":"down for maintenance, call +4930123456"}`)
			return
		}
		g.texts = append(g.texts, body.Text)
		fmt.Fprintf(w, `{"status":"queued","id":"gw-%d"}`, len(g.texts))
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *testGateway) settings() string {
	return `{"url":"` + g.URL + `/send","headers":{"Authorization":"Bearer {secret.api_key}"},` +
		`"body":{"to":"{to}","text":"{text}"},"success":{"json_path":"status","equals":"queued"},` +
		`"message_id":{"json_path":"id"},"receipts":{"id":"id","status":"status"}}`
}

func driveProviders(e *oapiEnv) {
	t := e.t
	A := e.admin
	big := `{"name":"` + strings.Repeat("x", maxBody) + `"}`
	textPlain := map[string]string{"Content-Type": "text/plain"}
	app := e.do(oapiCall{method: "POST", path: "/v1/applications", key: A, status: 201, body: `{"name":"providers test"}`})
	K := str(app["api_key"])
	g := newTestGateway(t)
	const secret = "gw-api-key-0123456789"

	// ---- create ----
	body := `{"name":"acme-sms","type":"http","channels":["sms"],"settings":` + g.settings() + `,"secrets":{"api_key":"` + secret + `"}}`
	p := e.do(oapiCall{method: "POST", path: "/v1/providers", key: A, status: 201, body: body})
	id := str(p["id"])
	token := str(p["receipt_token"])
	sec, _ := p["secrets"].(map[string]any)
	if p["source"] != "api" || p["role"] != "primary" || p["enabled"] != true || len(token) < 32 ||
		sec["api_key"] != engine.SecretMask || sec["receipt_token"] != engine.SecretMask || p["receipt_path"] != "/v1/receipts/"+id {
		t.Errorf("created provider: %v", p)
	}
	if raw, _ := json.Marshal(p); strings.Contains(string(raw), secret) {
		t.Errorf("the answer holds the secret: %s", raw)
	}
	e.do(oapiCall{method: "POST", path: "/v1/providers", key: A, status: 409, code: "conflict", body: body}) // name taken
	e.do(oapiCall{method: "POST", path: "/v1/providers", key: A, status: 409, code: "conflict",
		body: `{"name":"second","type":"http","channels":["sms"],"settings":` + g.settings() + `,"secrets":{"api_key":"x"}}`}) // sms has a primary
	e.do(oapiCall{method: "POST", path: "/v1/providers", key: A, status: 400, code: "invalid_request", req: reqInvalid,
		body: `{"name":"wa","type":"http","channels":["whatsapp","fax"],"settings":{}}`})
	e.do(oapiCall{method: "POST", path: "/v1/providers", key: A, status: 400, code: "invalid_request", req: reqSkip,
		body: `{"name":"wa","type":"http","channels":["whatsapp"],"settings":` + g.settings() + `,"secrets":{"api_key":"x"}}`}) // not offered here
	e.do(oapiCall{method: "POST", path: "/v1/providers", key: A, status: 400, code: "invalid_request", req: reqSkip,
		body: `{"name":"bad","type":"http","channels":["viber"],"settings":{"url":"https://x/{nope}"}}`})
	e.do(oapiCall{method: "POST", path: "/v1/providers", key: A, status: 400, code: "invalid_json", req: reqInvalid,
		body: `{"name":"x","type":"http","channels":["viber"],"password":"p"}`})
	e.do(oapiCall{method: "POST", path: "/v1/providers", key: K, status: 403, code: "forbidden", body: body})
	e.do(oapiCall{method: "POST", path: "/v1/providers", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: "/v1/providers", key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: body, req: reqInvalid})

	// ---- read ----
	path := "/v1/providers/" + id
	if got := e.do(oapiCall{method: "GET", path: path, key: A, status: 200}); got["receipt_token"] != nil || got["name"] != "acme-sms" {
		t.Errorf("read back: %v", got)
	}
	list := e.do(oapiCall{method: "GET", path: "/v1/providers", key: A, status: 200})
	if items, _ := list["items"].([]any); len(items) != 1 {
		t.Errorf("list: %v", list)
	}
	e.do(oapiCall{method: "GET", path: "/v1/providers", key: K, status: 403, code: "forbidden"})
	e.do(oapiCall{method: "GET", path: path, key: K, status: 403, code: "forbidden"})
	e.do(oapiCall{method: "GET", path: "/v1/providers/0190b1c2-0000-7000-8000-000000000000", key: A, status: 404, code: "not_found"})

	// ---- patch ----
	up := e.do(oapiCall{method: "PATCH", path: path, key: A, status: 200,
		body: `{"name":"acme","secrets":{"api_key":"********"},"settings":{"sender":"ACME"},"rotate_receipt_token":true}`})
	if up["name"] != "acme" || str(up["receipt_token"]) == "" || up["receipt_token"] == token ||
		!strings.Contains(fmt.Sprint(up["settings"]), "sender:ACME") {
		t.Errorf("patched: %v", up)
	}
	token = str(up["receipt_token"])
	e.do(oapiCall{method: "PATCH", path: path, key: A, status: 400, code: "invalid_request", req: reqSkip, body: `{"secrets":{"nothing":"********"}}`})
	e.do(oapiCall{method: "PATCH", path: path, key: A, status: 400, code: "invalid_request", req: reqInvalid, body: `{"role":"tertiary"}`})
	e.do(oapiCall{method: "PATCH", path: path, key: A, status: 400, code: "invalid_json", req: reqInvalid, body: `{"id":"x"}`})
	e.do(oapiCall{method: "PATCH", path: path, key: K, status: 403, code: "forbidden", body: `{}`})
	e.do(oapiCall{method: "PATCH", path: "/v1/providers/0190b1c2-0000-7000-8000-000000000000", key: A, status: 404, code: "not_found", body: `{}`})
	e.do(oapiCall{method: "PATCH", path: path, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "PATCH", path: path, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})
	sec2 := e.do(oapiCall{method: "POST", path: "/v1/providers", key: A, status: 201,
		body: `{"name":"backup","type":"http","channels":["viber"],"role":"secondary","settings":` + g.settings() + `,"secrets":{"api_key":"x"}}`})
	e.do(oapiCall{method: "PATCH", path: "/v1/providers/" + str(sec2["id"]), key: A, status: 409, code: "conflict", body: `{"name":"acme"}`})

	// ---- test sends: the gateway gets a fixed text; a refusal says little ----
	test := path + "/test"
	if r := e.do(oapiCall{method: "POST", path: test, key: A, status: 200, body: `{"to":"+4915112340001"}`}); r["sent"] != true || r["provider_message_id"] != nil {
		t.Errorf("test send: %v", r)
	}
	g.mu.Lock()
	g.down = true
	g.mu.Unlock()
	if r := e.do(oapiCall{method: "POST", path: test, key: A, status: 200, body: `{"to":"+4915112340001","channel":"sms"}`}); r["sent"] != false ||
		!strings.Contains(str(r["error"]), "503") || strings.Contains(str(r["error"]), "+4930123456") {
		t.Errorf("failed test send: %v", r)
	}
	e.do(oapiCall{method: "POST", path: test, key: A, status: 400, code: "invalid_request", req: reqSkip, body: `{"to":"+4915112340001","channel":"viber"}`})
	e.do(oapiCall{method: "POST", path: test, key: A, status: 400, code: "invalid_json", req: reqInvalid, body: `{"to":"+4915112340001","text":"hi"}`})
	e.do(oapiCall{method: "POST", path: test, key: K, status: 403, code: "forbidden", body: `{"to":"+4915112340001"}`})
	e.do(oapiCall{method: "POST", path: "/v1/providers/0190b1c2-0000-7000-8000-000000000000/test", key: A, status: 404, code: "not_found", body: `{"to":"+4915112340001"}`})
	e.do(oapiCall{method: "POST", path: test, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: test, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})
	for range 3 { // the recipient's send limit (5 per 10 minutes) is shared with verifications
		e.do(oapiCall{method: "POST", path: test, key: A, status: 200, body: `{"to":"+4915112340001"}`})
	}
	e.do(oapiCall{method: "POST", path: test, key: A, status: 429, code: "rate_limited", body: `{"to":"+4915112340001"}`})

	// ---- receipts ----
	rcpt := "/v1/receipts/" + id + "?token=" + url.QueryEscape(token)
	e.do(oapiCall{method: "POST", path: rcpt, status: 204, body: `{"id":"gw-1","status":"delivered"}`})
	e.do(oapiCall{method: "POST", path: rcpt, status: 204, body: "id=gw-1&status=delivered",
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
	e.do(oapiCall{method: "POST", path: "/v1/receipts/" + id + "?token=wrong", status: 404, code: "not_found", body: `{"id":"gw-1","status":"delivered"}`})
	e.do(oapiCall{method: "POST", path: "/v1/receipts/nope?token=" + token, status: 404, code: "not_found", body: `{}`})
	e.do(oapiCall{method: "POST", path: "/v1/receipts/" + id, status: 404, code: "not_found", body: `{}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: rcpt, status: 400, code: "invalid_request", body: `{"id":`, req: reqSkip})
	e.do(oapiCall{method: "POST", path: rcpt, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: rcpt, status: 415, code: "unsupported_media_type", header: textPlain, body: "id=1", req: reqInvalid})

	// ---- a deployment provider is read-only here ----
	restore := e.withDeploymentProvider(g)
	cfg := e.do(oapiCall{method: "GET", path: "/v1/providers/gw-config", key: A, status: 200})
	if cfg["source"] != "config" || fmt.Sprint(cfg["settings"]) != "map[]" || cfg["secrets"] != nil {
		t.Errorf("deployment provider as a tenant sees it: %v", cfg)
	}
	e.do(oapiCall{method: "PATCH", path: "/v1/providers/gw-config", key: A, status: 409, code: "conflict", body: `{"enabled":false}`})
	e.do(oapiCall{method: "DELETE", path: "/v1/providers/gw-config", key: A, status: 409, code: "conflict"})
	restore()

	// ---- the database is down: a receipt cannot be checked ----
	restore = e.withClosedDatabase()
	e.do(oapiCall{method: "POST", path: rcpt, status: 500, code: "internal", body: `{}`})
	restore()

	// ---- delete ----
	e.do(oapiCall{method: "DELETE", path: path, key: K, status: 403, code: "forbidden"})
	e.do(oapiCall{method: "DELETE", path: path, key: A, status: 204})
	e.do(oapiCall{method: "DELETE", path: path, key: A, status: 404, code: "not_found"})
	e.do(oapiCall{method: "POST", path: rcpt, status: 404, code: "not_found", body: `{}`})
}

// withDeploymentProvider serves the API, for a moment, from an engine on the same database whose
// configuration file has a provider gw-config; the returned function switches back.
func (e *oapiEnv) withDeploymentProvider(g *testGateway) func() {
	e.t.Helper()
	mk, err := keys.GenerateMasterKey()
	if err != nil {
		e.t.Fatal(err)
	}
	kr, err := keys.NewKeyring(mk)
	if err != nil {
		e.t.Fatal(err)
	}
	spec := engine.ProviderSpec{ID: "gw-config", Type: "http", Channels: []string{"sms"}, Role: "primary", Enabled: true,
		Settings: json.RawMessage(g.settings()), Secrets: map[string]string{"api_key": "k"}}
	if err := engine.CheckDeploymentProviders([]engine.ProviderSpec{spec}); err != nil {
		e.t.Fatal(err)
	}
	eng, err := engine.New(engine.Options{Store: e.st, Keys: kr, Clock: e.clk, Channels: []string{engine.ChannelSMS},
		Delivery: engine.DeliveryOptions{Providers: []engine.ProviderSpec{spec}}})
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Engine: eng, Logger: slog.New(slog.DiscardHandler), Ready: e.st.Ping}))
	prev := e.srv
	e.srv = srv
	return func() {
		e.srv = prev
		srv.Close()
	}
}

// withClosedDatabase serves the API, for a moment, from an engine whose database is closed (the
// receipt endpoint has no API key, so the document test's own "database goes away" round skips
// it).
func (e *oapiEnv) withClosedDatabase() func() {
	e.t.Helper()
	st, err := sqlstore.Open(context.Background(), filepath.Join(e.t.TempDir(), "closed.db"))
	if err != nil {
		e.t.Fatal(err)
	}
	st.Close()
	mk, _ := keys.GenerateMasterKey()
	kr, _ := keys.NewKeyring(mk)
	eng, err := engine.New(engine.Options{Store: st, Keys: kr, Clock: e.clk})
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Engine: eng, Logger: slog.New(slog.DiscardHandler)}))
	prev := e.srv
	e.srv = srv
	return func() {
		e.srv = prev
		srv.Close()
	}
}

// The receipt endpoint over a real engine records what the provider says (the full flow is in
// the engine's and the e2e tests).
func TestReceiptEndpointNeedsNoAPIKey(t *testing.T) {
	e := newOAPIEnv(t)
	g := newTestGateway(t)
	p := e.do(oapiCall{method: "POST", path: "/v1/providers", key: e.admin, status: 201,
		body: `{"name":"gw","type":"http","channels":["sms"],"settings":` + g.settings() + `,"secrets":{"api_key":"k"}}`})
	res, err := http.Post(e.srv.URL+"/v1/receipts/"+str(p["id"])+"?token="+url.QueryEscape(str(p["receipt_token"])),
		"application/json", strings.NewReader(`{"id":"gw-77","status":"DELIVRD"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Errorf("status %d", res.StatusCode)
	}
}
