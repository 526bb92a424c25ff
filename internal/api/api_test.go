package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
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

// env is a running otpd (real wiring from internal/app) behind httptest.
type env struct {
	t   *testing.T
	a   *app.App
	srv *httptest.Server
	key string // admin key of the default tenant
	clk *clock.Fake
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
	clk := clock.NewFake(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	a, err := app.Open(context.Background(), c, slog.New(slog.DiscardHandler), app.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	srv := httptest.NewServer(a.API)
	t.Cleanup(srv.Close)
	return &env{t: t, a: a, srv: srv, key: a.AdminKey, clk: clk}
}

type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (e *env) do(method, path, key string, body any, headers ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
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

// problem asserts an RFC 9457 answer with the status and code.
func (r resp) problem(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != "application/problem+json" ||
		r.body["code"] != code || r.body["status"] != float64(status) || r.body["title"] == "" || r.body["type"] == "" {
		t.Fatalf("want problem %d %s, got %d %s %s", status, code, r.status, r.header.Get("Content-Type"), r.raw)
	}
	if bytes.Contains(r.raw, []byte("goroutine")) || bytes.Contains(r.raw, []byte(".go:")) {
		t.Fatalf("answer leaks a stack trace: %s", r.raw)
	}
}

func (e *env) countSessions() int {
	e.t.Helper()
	r := e.do("GET", "/v1/verifications?limit=500", e.key, nil)
	if r.status != 200 {
		e.t.Fatalf("list: %d %s", r.status, r.raw)
	}
	return len(r.body["items"].([]any))
}

func TestVerificationFlow(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		r := e.do("POST", "/v1/verifications", e.key, map[string]any{"channel": "none", "to": "alice@example.com", "purpose": "login"})
		if r.status != 201 || r.header.Get("Location") != "/v1/verifications/"+r.body["id"].(string) {
			t.Fatalf("start: %d %s", r.status, r.raw)
		}
		for _, f := range []string{"id", "status", "channel", "to", "expires_at", "attempts_left", "sends_left", "code"} {
			if _, ok := r.body[f]; !ok {
				t.Errorf("start answer lacks %q: %s", f, r.raw)
			}
		}
		if r.body["attempts_left"] != 5.0 || r.body["sends_left"] != 4.0 || r.body["status"] != "pending" {
			t.Errorf("start answer: %s", r.raw)
		}
		id, code := r.body["id"].(string), r.body["code"].(string)
		if !regexp.MustCompile(`^[0-9]{6}$`).MatchString(code) {
			t.Fatalf("code %q", code)
		}
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		r = e.do("POST", "/v1/verifications/"+id+"/check", e.key, map[string]string{"code": wrong})
		if r.status != 200 || r.body["valid"] != false || r.body["attempts_left"] != 4.0 || r.body["status"] != "pending" {
			t.Fatalf("wrong code: %d %s", r.status, r.raw)
		}
		r = e.do("POST", "/v1/verifications/"+id+"/check", e.key, map[string]string{"code": "12345"})
		r.problem(t, 400, "malformed_code")
		r = e.do("POST", "/v1/verifications/"+id+"/check", e.key, map[string]string{"code": code})
		if r.status != 200 || r.body["valid"] != true || r.body["status"] != "verified" || r.body["attempts_left"] != 0.0 {
			t.Fatalf("right code: %d %s", r.status, r.raw)
		}
		r = e.do("POST", "/v1/verifications/"+id+"/check", e.key, map[string]string{"code": code})
		if r.status != 200 || r.body["valid"] != false || r.body["status"] != "verified" {
			t.Fatalf("second use: %d %s", r.status, r.raw)
		}
		r = e.do("GET", "/v1/verifications/"+id, e.key, nil)
		if r.status != 200 || r.body["status"] != "verified" || r.body["finished_at"] == nil || r.body["code"] != nil {
			t.Fatalf("get: %d %s", r.status, r.raw)
		}
		r = e.do("POST", "/v1/verifications/"+id+"/resend", e.key, nil)
		r.problem(t, 409, "session_finished")
		if r.body["session_status"] != "verified" {
			t.Errorf("resend of a verified session: %s", r.raw)
		}
		r = e.do("POST", "/v1/verifications/"+id+"/cancel", e.key, nil)
		r.problem(t, 409, "session_finished")
	})
}

func TestExpiredSessionSaysWhy(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		r := e.do("POST", "/v1/verifications", e.key, map[string]any{"channel": "none", "to": "bob@example.com", "ttl_seconds": 60})
		id, code := r.body["id"].(string), r.body["code"].(string)
		e.clk.Advance(61 * time.Second)
		r = e.do("POST", "/v1/verifications/"+id+"/check", e.key, map[string]string{"code": code})
		if r.status != 200 || r.body["valid"] != false || r.body["status"] != "expired" {
			t.Fatalf("check after expiry: %d %s", r.status, r.raw)
		}
	})
}

func TestListAndCursor(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		var ids []string
		for _, to := range []string{"a@example.com", "b@example.com", "c@example.com"} {
			r := e.do("POST", "/v1/verifications", e.key, map[string]any{"channel": "none", "to": to})
			ids = append(ids, r.body["id"].(string))
			e.clk.Advance(time.Second)
		}
		r := e.do("GET", "/v1/verifications?limit=2", e.key, nil)
		items := r.body["items"].([]any)
		if r.status != 200 || len(items) != 2 || items[0].(map[string]any)["id"] != ids[2] || r.body["next_cursor"] == nil {
			t.Fatalf("page 1: %s", r.raw)
		}
		r = e.do("GET", "/v1/verifications?limit=2&cursor="+r.body["next_cursor"].(string), e.key, nil)
		items = r.body["items"].([]any)
		if len(items) != 1 || items[0].(map[string]any)["id"] != ids[0] {
			t.Fatalf("page 2: %s", r.raw)
		}
		r = e.do("GET", "/v1/verifications?to=B@Example.com", e.key, nil)
		if items = r.body["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != ids[1] {
			t.Fatalf("filter by to: %s", r.raw)
		}
		for _, q := range []string{"status=done", "limit=0", "limit=501", "limit=x", "from=yesterday", "cursor=%%%"} {
			e.do("GET", "/v1/verifications?"+q, e.key, nil).problem(t, 400, "invalid_request")
		}
	})
}

// TestBadInputWritesNothing: malformed bodies get a problem+json and leave no row behind — in
// any table (storetest.RowCounts before and after), on the session endpoints, users and
// applications alike.
func TestBadInputWritesNothing(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		var dsn string
		e := newEnv(t, b, func(c *config.Config) { dsn = c.DSN() })
		pending := e.do("POST", "/v1/verifications", e.key, map[string]string{"channel": "none", "to": "pending@example.com"})
		if pending.status != 201 {
			t.Fatalf("start: %d %s", pending.status, pending.raw)
		}
		sid := pending.body["id"].(string)
		before := storetest.RowCounts(t, e.a.Store, dsn)
		big := `{"channel":"none","to":"` + strings.Repeat("a", 70<<10) + `"}`
		cases := []struct {
			name, body, ctype string
			status            int
			code              string
		}{
			{"not json", `{"channel": none}`, "application/json", 400, "invalid_json"},
			{"truncated", `{"channel":"none","to":"a@b.co"`, "application/json", 400, "invalid_json"},
			{"empty", ``, "application/json", 400, "invalid_json"},
			{"array", `[1,2]`, "application/json", 400, "invalid_json"},
			{"trailing data", `{"channel":"none","to":"a@b.co"} {"x":1}`, "application/json", 400, "invalid_json"},
			{"wrong type", `{"channel":"none","to":"a@b.co","code_length":"6"}`, "application/json", 400, "invalid_json"},
			{"wrong type bool", `{"channel":"none","to":true}`, "application/json", 400, "invalid_json"},
			{"fraction", `{"channel":"none","to":"a@b.co","max_attempts":2.5}`, "application/json", 400, "invalid_json"},
			{"unknown field", `{"channel":"none","to":"a@b.co","colour":"red"}`, "application/json", 400, "invalid_json"},
			{"invalid field", `{"channel":"none","to":"a@b.co","code_length":4}`, "application/json", 400, "invalid_request"},
			{"overflowing ttl", `{"channel":"none","to":"a@b.co","ttl_seconds":36028797018964028}`, "application/json", 400, "invalid_request"},
			{"oversized", big, "application/json", 413, "body_too_large"},
			{"form body", `channel=none&to=a@b.co`, "application/x-www-form-urlencoded", 415, "unsupported_media_type"},
		}
		for _, c := range cases {
			req, _ := http.NewRequest("POST", e.srv.URL+"/v1/verifications", strings.NewReader(c.body))
			req.Header.Set("Content-Type", c.ctype)
			req.Header.Set("x-api-key", e.key)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			r := resp{status: res.StatusCode, header: res.Header, raw: raw}
			_ = json.Unmarshal(raw, &r.body)
			t.Run(c.name, func(t *testing.T) { r.problem(t, c.status, c.code) })
		}
		// Other writers, each with a body of the wrong shape or value.
		for _, c := range []struct {
			path, body string
			status     int
			code       string
		}{
			{"/v1/verifications/" + sid + "/check", `{"code":123456}`, 400, "invalid_json"},
			{"/v1/verifications/" + sid + "/check", `{"code":"12345a"}`, 400, "malformed_code"}, // no try spent
			{"/v1/verifications/" + sid + "/check", big, 413, "body_too_large"},
			{"/v1/users", `{"login":["x"]}`, 400, "invalid_json"},
			{"/v1/users", `{"login":"ok","email":"not an address"}`, 400, "invalid_request"},
			{"/v1/applications", `{"name":""}`, 400, "invalid_request"},
			{"/v1/applications", `{"name":"a","extra":1}`, 400, "invalid_json"},
		} {
			e.do("POST", c.path, e.key, c.body).problem(t, c.status, c.code)
		}
		if after := storetest.RowCounts(t, e.a.Store, dsn); !maps.Equal(before, after) {
			t.Fatalf("bad requests wrote rows:\nbefore %v\nafter  %v", before, after)
		}
		if n := e.countSessions(); n != 1 {
			t.Fatalf("bad requests left %d sessions, want the 1 pending", n)
		}
		// Control: the counts see a write — a good request changes them.
		e.do("POST", "/v1/users", e.key, `{"login":"ok"}`)
		if after := storetest.RowCounts(t, e.a.Store, dsn); after["users"] != before["users"]+1 || len(after) < 10 {
			t.Fatalf("row counts miss a write: before %v, after %v", before, after)
		}
		// The wrong-type answer names the field.
		r := e.do("POST", "/v1/verifications", e.key, `{"channel":"none","to":"a@b.co","code_length":"6"}`)
		if errs, _ := r.body["errors"].([]any); len(errs) != 1 || errs[0].(map[string]any)["field"] != "code_length" {
			t.Errorf("wrong-type answer does not name the field: %s", r.raw)
		}
	})
}

func TestAuth(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		for _, h := range [][]string{
			{},
			{"Authorization", "Bearer nope"},
			{"Authorization", "Basic " + e.key},
			{"x-api-key", e.key + "x"},
		} {
			r := e.do("GET", "/v1/verifications", "", nil, h...)
			r.problem(t, 401, "unauthorized")
			if r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		}
		if r := e.do("GET", "/v1/verifications", "", nil, "x-api-key", e.key); r.status != 200 {
			t.Fatalf("x-api-key header refused: %d", r.status)
		}
		// An application key may verify but not manage applications.
		r := e.do("POST", "/v1/applications", e.key, map[string]string{"name": "shop"})
		if r.status != 201 || r.body["api_key"] == nil || r.body["client_secret"] == nil || r.body["client_id"] == nil {
			t.Fatalf("create application: %d %s", r.status, r.raw)
		}
		appKey := r.body["api_key"].(string)
		e.do("GET", "/v1/applications", appKey, nil).problem(t, 403, "forbidden")
		if r := e.do("POST", "/v1/verifications", appKey, map[string]any{"channel": "none", "to": "x@example.com"}); r.status != 201 {
			t.Fatalf("app key start: %d %s", r.status, r.raw)
		}
		// Secrets are shown once: the list does not carry them.
		r = e.do("GET", "/v1/applications", e.key, nil)
		if bytes.Contains(r.raw, []byte("client_secret")) || bytes.Contains(r.raw, []byte("api_key")) {
			t.Fatalf("application list leaks secrets: %s", r.raw)
		}
		appID := r.body["items"].([]any)[0].(map[string]any)["id"].(string)
		if r := e.do("DELETE", "/v1/applications/"+appID, e.key, nil); r.status != 204 {
			t.Fatalf("delete application: %d", r.status)
		}
		e.do("GET", "/v1/verifications", appKey, nil).problem(t, 401, "unauthorized")
	})
}

func TestTenantIsolationHTTP(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		_, otherKey, err := e.a.Engine.CreateTenant(context.Background(), "other")
		if err != nil {
			t.Fatal(err)
		}
		r := e.do("POST", "/v1/verifications", e.key, map[string]any{"channel": "none", "to": "alice@example.com"})
		id, code := r.body["id"].(string), r.body["code"].(string)
		u := e.do("POST", "/v1/users", e.key, map[string]any{"login": "alice"})
		uid := u.body["id"].(string)
		for _, c := range []struct{ method, path string }{
			{"GET", "/v1/verifications/" + id},
			{"POST", "/v1/verifications/" + id + "/check"},
			{"POST", "/v1/verifications/" + id + "/resend"},
			{"POST", "/v1/verifications/" + id + "/cancel"},
			{"GET", "/v1/users/" + uid},
			{"PATCH", "/v1/users/" + uid},
			{"DELETE", "/v1/users/" + uid},
		} {
			var body any
			if strings.HasSuffix(c.path, "/check") {
				body = map[string]string{"code": code}
			} else if c.method == "PATCH" {
				body = map[string]string{"email": "evil@example.com"}
			}
			e.do(c.method, c.path, otherKey, body).problem(t, 404, "not_found")
		}
		if r := e.do("GET", "/v1/verifications", otherKey, nil); len(r.body["items"].([]any)) != 0 {
			t.Fatalf("other tenant lists sessions: %s", r.raw)
		}
		if r := e.do("POST", "/v1/verifications/"+id+"/check", e.key, map[string]string{"code": code}); r.body["valid"] != true {
			t.Fatalf("owner's check after foreign attempts: %s", r.raw)
		}
	})
}

func TestUnroutedAnswersProblem(t *testing.T) {
	e := newEnv(t, storetest.Backends()[0], nil)
	e.do("GET", "/v1/nope", e.key, nil).problem(t, 404, "not_found")
	r := e.do("PUT", "/v1/verifications", e.key, map[string]string{})
	r.problem(t, 405, "method_not_allowed")
	if !strings.Contains(r.header.Get("Allow"), "POST") {
		t.Errorf("405 without Allow: %v", r.header)
	}
	if r := e.do("GET", "/healthz", "", nil); r.status != 200 {
		t.Errorf("healthz %d", r.status)
	}
	if r := e.do("GET", "/readyz", "", nil); r.status != 200 {
		t.Errorf("readyz %d", r.status)
	}
	// A made-up method answers 405/404 and does not become a metric series of its own.
	for i := range 3 {
		e.do(fmt.Sprintf("X%dMETHOD", i), "/v1/verifications", e.key, nil)
	}
	r = e.do("GET", "/metrics", "", nil)
	if r.status != 200 || !bytes.Contains(r.raw, []byte("otpd_http_requests_total")) {
		t.Errorf("metrics: %d", r.status)
	}
	if bytes.Contains(r.raw, []byte("X0METHOD")) || !bytes.Contains(r.raw, []byte(`method="OTHER"`)) {
		t.Errorf("client-chosen methods became metric labels")
	}
}

func TestIdempotencyAndRateLimitHTTP(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		body := map[string]any{"channel": "none", "to": "+14155550100"}
		a := e.do("POST", "/v1/verifications", e.key, body, "Idempotency-Key", "order-42")
		again := e.do("POST", "/v1/verifications", e.key, body, "Idempotency-Key", "order-42")
		if a.status != 201 || again.status != 200 || again.header.Get("Idempotent-Replayed") != "true" ||
			again.body["id"] != a.body["id"] || again.body["code"] != nil {
			t.Fatalf("replay: %d %d %s", a.status, again.status, again.raw)
		}
		e.do("POST", "/v1/verifications", e.key, map[string]any{"channel": "none", "to": "+14155550101"},
			"Idempotency-Key", "order-42").problem(t, 422, "idempotency_mismatch")
		// Default recipient limit: 5 per 10 minutes (the replay did not count).
		for i := range 4 {
			if r := e.do("POST", "/v1/verifications", e.key, body); r.status != 201 {
				t.Fatalf("start %d: %d %s", i+2, r.status, r.raw)
			}
		}
		r := e.do("POST", "/v1/verifications", e.key, body)
		r.problem(t, 429, "rate_limited")
		if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Errorf("429 without Retry-After: %v", r.header)
		}
	})
}

func TestUsersHTTP(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		r := e.do("POST", "/v1/users", e.key, map[string]any{"login": "alice", "email": "Alice@Example.com",
			"phone": "+1 415 555 0100", "external_id": "ext-1", "first_name": "Alice"})
		if r.status != 201 || r.body["email"] != "alice@example.com" || r.body["phone"] != "+14155550100" || r.body["enabled"] != true {
			t.Fatalf("create: %d %s", r.status, r.raw)
		}
		id := r.body["id"].(string)
		e.do("POST", "/v1/users", e.key, map[string]any{"login": "alice"}).problem(t, 409, "conflict")
		e.do("POST", "/v1/users", e.key, map[string]any{"email": "x@example.com"}).problem(t, 400, "invalid_request")
		e.do("POST", "/v1/users", e.key, map[string]any{"login": "bob", "phone": "12"}).problem(t, 400, "invalid_request")
		r = e.do("PATCH", "/v1/users/"+id, e.key, map[string]any{"last_name": "Liddell", "enabled": false})
		if r.status != 200 || r.body["last_name"] != "Liddell" || r.body["enabled"] != false || r.body["email"] != "alice@example.com" {
			t.Fatalf("patch: %d %s", r.status, r.raw)
		}
		e.do("PATCH", "/v1/users/"+id, e.key, `{"enabled":"no"}`).problem(t, 400, "invalid_json")
		if r := e.do("GET", "/v1/users", e.key, nil); r.status != 200 || len(r.body["items"].([]any)) != 1 {
			t.Fatalf("list: %s", r.raw)
		}
		if r := e.do("DELETE", "/v1/users/"+id, e.key, nil); r.status != 204 {
			t.Fatalf("delete: %d", r.status)
		}
		e.do("GET", "/v1/users/"+id, e.key, nil).problem(t, 404, "not_found")
	})
}

// TestDevInbox: with the log provider, an email code lands in the dev inbox, not in the log.
func TestDevInbox(t *testing.T) {
	e := newEnv(t, storetest.Backends()[0], nil)
	r := e.do("POST", "/v1/verifications", e.key, map[string]any{"channel": "email", "to": "Carol@Example.com"})
	if r.status != 201 || r.body["delivery"] != "queued" || r.body["code"] != nil {
		t.Fatalf("start: %d %s", r.status, r.raw)
	}
	id := r.body["id"].(string)
	if n, err := e.a.Worker.RunOnce(context.Background()); err != nil || n != 1 {
		t.Fatalf("worker: %d %v", n, err)
	}
	r = e.do("GET", "/v1/dev/messages?to=carol@example.com", e.key, nil)
	msgs, _ := r.body["messages"].([]any)
	if r.status != 200 || len(msgs) != 1 {
		t.Fatalf("inbox: %d %s", r.status, r.raw)
	}
	code := regexp.MustCompile(`\b[0-9]{6}\b`).FindString(msgs[0].(map[string]any)["body"].(string))
	if r := e.do("POST", "/v1/verifications/"+id+"/check", e.key, map[string]string{"code": code}); r.body["valid"] != true {
		t.Fatalf("code from the inbox did not verify: %s", r.raw)
	}
	if r := e.do("GET", "/v1/verifications/"+id, e.key, nil); r.body["delivery"] != "sent" {
		t.Errorf("delivery after the worker ran: %s", r.raw)
	}
}

func TestDevInboxOffWithoutLogProvider(t *testing.T) {
	e := newEnv(t, storetest.Backends()[0], func(c *config.Config) { c.LogProvider = "off" })
	e.do("GET", "/v1/dev/messages", e.key, nil).problem(t, 404, "not_found")
	e.do("POST", "/v1/verifications", e.key, map[string]any{"channel": "email", "to": "a@example.com"}).
		problem(t, 422, "channel_unavailable")
}
