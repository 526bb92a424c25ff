package scim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/otpd/otpd/internal/store/storetest"
)

// native calls otpd's native API with the tenant's admin key.
func (e *env) native(method, path string, body any) resp {
	e.t.Helper()
	j, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(j))
	req.Header.Set("Authorization", "Bearer "+e.adminKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, raw: raw}
}

// TestChallengeCountryNotAllowed: a challenge for an SMS device whose number lies in a country
// the tenant does not allow is a 400 invalidValue on phone — not a 429 — and nothing is sent.
func TestChallengeCountryNotAllowed(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, at("2026-11-24 10:00:00"))
		e.do("POST", "/Users", map[string]any{"userName": "ana"})
		r := e.do("POST", "/OtpDevice", `{"type":"SMS","user":"ana","phone":"+34666555444"}`)
		if r.status != 200 {
			t.Fatalf("create: %d %s", r.status, r.raw)
		}
		dev := "/OtpDevice/" + id(r)
		if r := e.native("PATCH", "/v1/settings/messaging", map[string]any{"allowed_countries": []string{"AU"}}); r.status != 200 {
			t.Fatalf("settings: %d %s", r.status, r.raw)
		}
		for range 2 {
			r := e.do("GET", dev+"/requestChallenge", nil)
			r.scimError(t, 400, "invalidValue")
			if d, _ := r.body["detail"].(string); !strings.HasPrefix(d, "phone: ") {
				t.Errorf("detail %q does not name phone", d)
			}
			if ra := r.header.Get("Retry-After"); ra != "" {
				t.Errorf("Retry-After %q on a country refusal", ra)
			}
		}
		if _, err := e.a.Worker.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if msgs, err := e.a.Store.ListDevMessages(context.Background(), e.a.TenantID, "+34666555444", 10); err != nil || len(msgs) != 0 {
			t.Errorf("a refused challenge was sent: %d messages, %v", len(msgs), err)
		}
		// Allowing Spain lets the same device through.
		if r := e.native("PATCH", "/v1/settings/messaging", map[string]any{"allowed_countries": []string{"AU", "ES"}}); r.status != 200 {
			t.Fatalf("settings: %d %s", r.status, r.raw)
		}
		if r := e.do("GET", dev+"/requestChallenge", nil); r.status != 200 {
			t.Fatalf("allowed country: %d %s", r.status, r.raw)
		}
	})
}
