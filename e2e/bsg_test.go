package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/testpg"
)

// TestBSGMigrationFlow is the README's "Migrating from BSG" example against the built binary on
// its defaults: allow a country (a new deployment sends BSG codes nowhere), log in with an otpd
// API key, send with the default template, read the code from the dev inbox, verify; and an
// operator approving a moderated template with `otpd template approve`.
func TestBSGMigrationFlow(t *testing.T) {
	dir := t.TempDir()
	p := start(t, []string{"OTPD_DATA_DIR=" + dir})
	admin := p.adminKey()
	send := map[string]any{"recipient": "61401629754", "channel": "sms", "sender": "SENDER", "template_id": 1,
		"code_lifetime": 300, "code_max_tries": 3, "code_digits": 6}

	st, v := p.call("POST", "/api/auth/login", "", map[string]string{"api_key": admin})
	tok, _ := v["bearer"].(string)
	if st != 200 || tok == "" {
		t.Fatalf("login: %d %v", st, v)
	}
	st, v = p.call("GET", "/api/2fa/authentications/templates", tok, nil)
	if st != 200 || fmt.Sprint(v["data"].(map[string]any)["list"].([]any)[0].(map[string]any)["template_id"]) != "1" {
		t.Fatalf("templates: %d %v", st, v)
	}
	st, v = p.call("POST", "/api/2fa/authentications/otp", tok, send)
	if st != 422 || !strings.Contains(fmt.Sprint(v["errors"]), "not on the list of countries allowed for your account") {
		t.Fatalf("a new deployment must refuse: %d %v", st, v)
	}
	if st, v = p.call("PATCH", "/v1/settings/messaging", admin, map[string]any{"allowed_countries": []string{"AU"}}); st != 200 {
		t.Fatalf("settings: %d %v", st, v)
	}
	st, v = p.call("POST", "/api/2fa/authentications/otp", tok, send)
	if st != 201 {
		t.Fatalf("send: %d %v", st, v)
	}
	id := v["data"].(map[string]any)["id"].(string)
	var code string
	for deadline := time.Now().Add(10 * time.Second); code == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, inbox := p.call("GET", "/v1/dev/messages?to=%2B61401629754", admin, nil)
		if msgs, _ := inbox["messages"].([]any); len(msgs) > 0 {
			code = strings.TrimPrefix(msgs[0].(map[string]any)["body"].(string), "Your code is ")
		}
	}
	if len(code) != 6 {
		t.Fatalf("no code in the dev inbox: %q", code)
	}
	st, v = p.call("POST", "/api/2fa/authentications/otp/"+id+"/verify", tok, map[string]string{"access_code": code})
	if st != 200 || v["data"].(map[string]any)["status"] != "verified" {
		t.Fatalf("verify: %d %v", st, v)
	}
	st, v = p.call("POST", "/api/2fa/authentications/otp/"+id+"/verify", tok, map[string]string{"access_code": code})
	if st != 422 {
		t.Fatalf("second verify: %d %v", st, v)
	}

	// Moderation: the template waits for the operator.
	p.call("PATCH", "/v1/settings/messaging", admin, map[string]any{"moderation": true})
	st, v = p.call("POST", "/api/2fa/authentications/templates", tok, map[string]any{"name": "login", "text": "Login code {code2fa}"})
	if st != 200 || v["data"].(map[string]any)["status"] != "requested" {
		t.Fatalf("moderated template: %d %v", st, v)
	}
	tid := fmt.Sprint(v["data"].(map[string]any)["template_id"])
	out, err := exec.Command(binary, "template", "approve", tid, "--server", p.url, "--api-key", admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"status": "approved"`) {
		t.Fatalf("otpd template approve: %v\n%s", err, out)
	}
	st, v = p.call("POST", "/api/2fa/authentications/otp", tok, map[string]any{"recipient": "61401629755", "channel": "sms",
		"sender": "SENDER", "template_id": tid, "code_lifetime": 300, "code_max_tries": 3, "code_digits": 6})
	if st != 201 || v["data"].(map[string]any)["message_text"] != "Login code {code2fa}" {
		t.Fatalf("send with the approved template: %d %v", st, v)
	}
	p.stop()
	if leaks(p.stderr.String(), code) || leaks(p.stderr.String(), tok) {
		t.Error("a code or a bearer token reached the log")
	}
}

// TestBSGLimitAcrossInstances: two otpd processes on one PostgreSQL share the number-block
// limit: of 20 concurrent sends into one block, spread over both, exactly the limit (5) pass,
// and only their messages reach the provider.
func TestBSGLimitAcrossInstances(t *testing.T) {
	dsn := testpg.New(t)
	mk, _ := keys.GenerateMasterKey()
	admin := "e2e-admin-key-0123456789abcdef0123456789"
	env := []string{"OTPD_DATABASE_URL=" + dsn, "OTPD_MASTER_KEY=" + keys.EncodeMasterKey(mk),
		"OTPD_BOOTSTRAP_API_KEY=" + admin, "OTPD_DATA_DIR=" + t.TempDir()}
	var a, b *proc
	var wg sync.WaitGroup
	wg.Go(func() { a = start(t, env) })
	wg.Go(func() { b = start(t, env) })
	wg.Wait()
	if st, v := a.call("PATCH", "/v1/settings/messaging", admin, map[string]any{"allowed_countries": []string{"AU"},
		"prefix_limit": map[string]int{"count": 5, "window_seconds": 3600}}); st != 200 {
		t.Fatalf("settings: %d %v", st, v)
	}
	tokens := make([]string, 2)
	for i, p := range []*proc{a, b} {
		_, v := p.call("POST", "/api/auth/login", "", map[string]string{"api_key": admin})
		tokens[i], _ = v["bearer"].(string)
	}
	var created, limited atomic.Int32
	gate := make(chan struct{})
	for i := range 20 {
		wg.Go(func() {
			<-gate
			p := []*proc{a, b}[i%2]
			st, v := p.call("POST", "/api/2fa/authentications/otp", tokens[i%2], map[string]any{
				"recipient": fmt.Sprintf("61401629%03d", i), "channel": "sms", "sender": "SENDER", "template_id": 1,
				"code_lifetime": 300, "code_max_tries": 3, "code_digits": 6})
			switch {
			case st == 201:
				created.Add(1)
			case st == 429 && v["message"] == "Too many requests":
				limited.Add(1)
			default:
				t.Errorf("send: %d %v", st, v)
			}
		})
	}
	close(gate)
	wg.Wait()
	if created.Load() != 5 || limited.Load() != 15 {
		t.Fatalf("%d sends passed and %d were limited, want 5 and 15", created.Load(), limited.Load())
	}
	var n int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_, inbox := a.call("GET", "/v1/dev/messages", admin, nil)
		if n = len(inbox["messages"].([]any)); n >= 5 {
			break
		}
	}
	time.Sleep(300 * time.Millisecond) // nothing more may arrive
	if _, inbox := b.call("GET", "/v1/dev/messages", admin, nil); len(inbox["messages"].([]any)) != 5 {
		t.Fatalf("%d messages reached the provider, want 5", len(inbox["messages"].([]any)))
	}
	a.stop()
	b.stop()
}
