package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/store/storetest"
)

// TestLoginTokensHTTP: the native login-token endpoints through the real wiring, on SQLite and
// PostgreSQL: issue, redeem once, 30 s lifetime, tenant isolation.
func TestLoginTokensHTTP(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		u := e.do("POST", "/v1/users", e.key, map[string]any{"login": "nina", "email": "nina@example.com"})
		if u.status != 201 {
			t.Fatalf("user: %d %s", u.status, u.raw)
		}
		tok := e.do("POST", "/v1/login-tokens", e.key, map[string]any{"purpose": "verify", "login": "nina"})
		if tok.status != 201 || tok.body["expires_at"] != "2026-11-24T12:00:30Z" {
			t.Fatalf("issue: %d %s", tok.status, tok.raw)
		}
		token := tok.body["token"].(string)
		// Another tenant cannot redeem it, and its attempt leaves the token usable: the tenant is
		// part of the redemption's conditional update, not checked after the token is spent.
		_, otherKey, err := e.a.Engine.CreateTenant(context.Background(), "other")
		if err != nil {
			t.Fatal(err)
		}
		e.do("POST", "/v1/login-tokens/redeem", otherKey, map[string]any{"token": token}).problem(t, 400, "invalid_request")
		r := e.do("POST", "/v1/login-tokens/redeem", e.key, map[string]any{"token": token})
		if r.status != 200 || r.body["user"].(map[string]any)["login"] != "nina" {
			t.Fatalf("redeem after a foreign tenant's attempt: %d %s", r.status, r.raw)
		}
		e.do("POST", "/v1/login-tokens/redeem", e.key, map[string]any{"token": token}).problem(t, 400, "invalid_request")
		tok2 := e.do("POST", "/v1/login-tokens", e.key, map[string]any{"purpose": "verify", "login": "nina"})
		r = e.do("POST", "/v1/login-tokens/redeem", e.key, map[string]any{"token": tok2.body["token"]})
		if r.status != 200 || r.body["user"].(map[string]any)["login"] != "nina" {
			t.Fatalf("redeem: %d %s", r.status, r.raw)
		}
		e.do("POST", "/v1/login-tokens/redeem", e.key, map[string]any{"token": tok2.body["token"]}).problem(t, 400, "invalid_request")
		tok3 := e.do("POST", "/v1/login-tokens", e.key, map[string]any{"purpose": "verify", "login": "nina"})
		e.clk.Advance(31 * time.Second)
		e.do("POST", "/v1/login-tokens/redeem", e.key, map[string]any{"token": tok3.body["token"]}).problem(t, 400, "invalid_request")
		if strings.Contains(string(tok.raw), "hash") {
			t.Errorf("answer mentions a hash: %s", tok.raw)
		}
	})
}
