package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/testiam"
	"github.com/otpd/otpd/internal/testpg"
)

// raw sends a request with a raw body and headers (name, value pairs) and returns the status,
// the decoded JSON object (if any) and the raw answer.
func (p *proc) raw(method, path string, body string, headers ...string) (int, map[string]any, []byte) {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.url+path, strings.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return res.StatusCode, out, b
}

// accessToken creates an application and returns an access token from the token endpoint.
func accessToken(t *testing.T, p *proc, admin string) string {
	t.Helper()
	st, app := p.call("POST", "/v1/applications", admin, map[string]string{"name": fmt.Sprintf("e2e-%d", time.Now().UnixNano())})
	if st != 201 {
		t.Fatalf("create application: %d %v", st, app)
	}
	basic := base64.StdEncoding.EncodeToString([]byte(app["client_id"].(string) + ":" + app["client_secret"].(string)))
	st, tok, raw := p.raw("POST", "/api/2/idp/token", "grant_type=client_credentials",
		"Content-Type", "application/x-www-form-urlencoded", "Authorization", "Basic "+basic)
	if st != 200 {
		t.Fatalf("token: %d %s", st, raw)
	}
	return tok["access_token"].(string)
}

// TestTokensTwoInstancesOnPostgres: two otpd processes on one PostgreSQL. 50 requests race to
// redeem one one-time token, half on each process: exactly one login. An access token revoked
// on one process is refused by the other at once.
func TestTokensTwoInstancesOnPostgres(t *testing.T) {
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
	procs := []*proc{a, b}
	if st, u := a.call("POST", "/v1/users", admin, map[string]string{"login": "johncustomer@mysite.com"}); st != 201 {
		t.Fatalf("user: %d %v", st, u)
	}
	access := accessToken(t, a, admin)
	for round := range 3 {
		st, o, raw := procs[round%2].raw("POST", "/api/2/idp/ott", `{"login":"johncustomer@mysite.com","purpose":"user_login"}`,
			"Content-Type", "application/json", "Authorization", "Bearer "+access)
		if st != 200 {
			t.Fatalf("issue: %d %s", st, raw)
		}
		ott := o["ott"].(string)
		var ok, refused atomic.Int32
		gate := make(chan struct{})
		var rw sync.WaitGroup
		for i := range 50 {
			rw.Go(func() {
				<-gate
				req, _ := http.NewRequest("POST", procs[i%2].url+"/api/2/idp/ott/login", strings.NewReader(`{"ott":"`+ott+`"}`))
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
					t.Errorf("login: %d", res.StatusCode)
				}
			})
		}
		close(gate)
		rw.Wait()
		if ok.Load() != 1 || refused.Load() != 49 {
			t.Fatalf("round %d: %d logins, %d refused; want 1 and 49", round, ok.Load(), refused.Load())
		}
	}

	// Revocation on A, refused on B from the next request.
	issue := func(p *proc) int {
		st, _, _ := p.raw("POST", "/api/2/idp/ott", `{"login":"johncustomer@mysite.com","purpose":"user_login"}`,
			"Content-Type", "application/json", "Authorization", "Bearer "+access)
		return st
	}
	if st := issue(b); st != 200 {
		t.Fatalf("B before revocation: %d", st)
	}
	if st, _, raw := a.raw("POST", "/idp/oauth2/revoke", "token_type_hint=access_token&token="+url.QueryEscape(access),
		"Content-Type", "application/x-www-form-urlencoded"); st != 200 {
		t.Fatalf("revoke on A: %d %s", st, raw)
	}
	if st := issue(b); st != 401 {
		t.Fatalf("B accepts a token revoked on A: %d", st)
	}
	a.stop()
	b.stop()
}

// TestTokenSurfacesBinary replays the three seeds' client flows against the built binary on its
// embedded defaults: Acronis steps 2–9, the OpenIAM snippets, the Haventec contract with a real
// introspection server — and checks that neither tokens nor codes reach the logs.
func TestTokenSurfacesBinary(t *testing.T) {
	dir := t.TempDir()
	p := start(t, []string{"OTPD_DATA_DIR=" + dir})
	admin := p.adminKey()

	// Acronis.
	p.call("POST", "/v1/users", admin, map[string]string{"login": "johncustomer@mysite.com", "first_name": "John", "last_name": "Customer"})
	access := accessToken(t, p, admin)
	st, o, raw := p.raw("POST", "/api/2/idp/ott", "{\n    \"login\": \"johncustomer@mysite.com\",\n    \"purpose\": \"user_login\"\n}",
		"Content-Type", "application/json", "Authorization", "Bearer "+access)
	if st != 200 {
		t.Fatalf("ott: %d %s", st, raw)
	}
	ott := o["ott"].(string)
	st, acct, raw := p.raw("POST", "/api/2/idp/ott/login", url.Values{"ott": {ott}}.Encode(), "Content-Type", "application/json")
	if st != 200 || acct["login"] != "johncustomer@mysite.com" || acct["contact"].(map[string]any)["firstname"] != "John" {
		t.Fatalf("ott/login: %d %s", st, raw)
	}
	if st, _, _ := p.raw("POST", "/api/2/idp/ott/login", `{"ott":"`+ott+`"}`, "Content-Type", "application/json"); st != 401 {
		t.Fatalf("second login: %d", st)
	}

	// OpenIAM.
	st, env, raw := p.raw("POST", "/selfservice/send-verification-code-by-email", `{"email": "youremail@openiam.com"}`, "Content-Type", "application/json")
	if st != 200 || env["successToken"].(map[string]any)["message"] != "EMAIL_SENT" {
		t.Fatalf("send email: %d %s", st, raw)
	}
	mf := int64(env["contextValues"].(map[string]any)["emailMovingFactor"].(float64))
	var code string
	for deadline := time.Now().Add(10 * time.Second); code == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, inbox := p.call("GET", "/v1/dev/messages?to=youremail@openiam.com", admin, nil)
		if msgs, _ := inbox["messages"].([]any); len(msgs) > 0 {
			code = codeRE.FindString(msgs[0].(map[string]any)["body"].(string))
		}
	}
	if code == "" {
		t.Fatal("no code in the dev inbox")
	}
	st, _, raw = p.raw("POST", "/selfservice/check-verification-code", fmt.Sprintf(`{"emailCode": "%s","emailMovingFactor": "%d"}`, code, mf), "Content-Type", "application/json")
	if st != 200 || !bytes.Contains(raw, []byte(`"status":200,"errorList":null`)) {
		t.Fatalf("check: %d %s", st, raw)
	}

	// Haventec, with the IAM settings made through the CLI on the running server.
	iam := testiam.New(t, "connect", "e2e-iam-secret")
	iam.SetToken("eyJh.eyJz.c2ln", map[string]any{"active": true, "username": "agent", "roles": []any{"otp-requestor"}})
	st, app := p.call("POST", "/v1/applications", admin, map[string]string{"name": "crm"})
	if st != 201 {
		t.Fatal(st)
	}
	appID, appKey := app["id"].(string), app["api_key"].(string)
	cli := exec.Command(binary, "iam", "set", appID, "--enable", "--url", iam.IntrospectURL(), "--client-id", "connect",
		"--client-secret-file", "-", "--role-path", "roles", "--allowed-role", "otp-requestor", "--server", p.url, "--api-key", admin)
	cli.Stdin = strings.NewReader("e2e-iam-secret\n")
	out, err := cli.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"ready": true`) || strings.Contains(string(out), "e2e-iam-secret") {
		t.Fatalf("otpd iam set: %v\n%s", err, out)
	}
	_, u := p.call("POST", "/v1/users", admin, map[string]string{"login": "customer", "email": "customer@example.com"})
	uid := u["id"].(string)
	body := fmt.Sprintf(`{"applicationUuid":"%s","purpose":"login","requestorToken":"eyJh.eyJz.c2ln","requestorUsername":"agent"}`, appID)
	st, res, raw := p.raw("POST", "/authenticate/v1-2/iam/user/"+uid+"/otp", body, "Content-Type", "application/json", "x-api-key", appKey)
	if st != 200 || res["responseStatus"].(map[string]any)["status"] != "SUCCESS" {
		t.Fatalf("haventec: %d %s", st, raw)
	}
	otp := res["otp"].(string)
	st, res, _ = p.raw("POST", "/authenticate/v1-2/iam/user/"+uid+"/otp", body, "Content-Type", "application/json", "x-api-key", appKey)
	if st != 409 || res["responseStatus"].(map[string]any)["code"] != "AN-UOTP-1004" {
		t.Fatalf("second OTP: %d %v", st, res)
	}
	st, v := p.call("POST", "/v1/users/"+uid+"/otp/verify", appKey, map[string]string{"purpose": "login", "otp": otp})
	if st != 200 || v["valid"] != true {
		t.Fatalf("verify: %d %v", st, v)
	}
	// The CLI shows the settings with the secret masked.
	out, err = exec.Command(binary, "iam", "show", appID, "--server", p.url, "--api-key", admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"client_secret": "********"`) || strings.Contains(string(out), "e2e-iam-secret") {
		t.Fatalf("otpd iam show: %v\n%s", err, out)
	}

	p.stop()
	logs := p.stderr.String() + p.stdout.String()
	for _, s := range []string{ott, access, code, otp, "e2e-iam-secret"} {
		if leaks(logs, s) {
			t.Errorf("a secret (%q…) is in the logs", s[:4])
		}
	}
	if !strings.Contains(logs, "/api/2/idp/ott") {
		t.Fatal("the request log does not mention the routes: the log check read nothing")
	}
}

// TestIAMCLILocal: otpd iam on the local database, without a server.
func TestIAMCLILocal(t *testing.T) {
	dir := t.TempDir()
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "OTPD_DATA_DIR="+dir)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("", "app", "create", "--name", "crm")
	if err != nil {
		t.Fatalf("app create: %v\n%s", err, out)
	}
	var app struct{ ID string }
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &app); err != nil {
		t.Fatal(err)
	}
	secretFile := dir + "/secret"
	if err := os.WriteFile(secretFile, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run("", "iam", "set", app.ID, "--enable", "--client-id", "c", "--client-secret-file", secretFile)
	if err != nil || !strings.Contains(out, `"ready": false`) || !strings.Contains(out, "introspection_url") || strings.Contains(out, "from-a-file") {
		t.Fatalf("partial set: %v\n%s", err, out)
	}
	out, err = run("", "iam", "set", app.ID, "--url", "https://iam.example.com/introspect", "--role-path", "$.roles", "--allowed-role", "x")
	if err != nil || !strings.Contains(out, `"ready": true`) || !strings.Contains(out, `"client_id": "c"`) {
		t.Fatalf("completing set: %v\n%s", err, out)
	}
	if out, err := run("", "iam", "set", app.ID, "--url", "http://iam.example.com/introspect"); err == nil || !strings.Contains(out, "https") {
		t.Fatalf("plain http to a remote IAM accepted: %v\n%s", err, out)
	}
	if out, err := run("", "iam", "clear", app.ID); err != nil {
		t.Fatalf("clear: %v\n%s", err, out)
	}
	if out, err := run("", "iam", "show", app.ID); err != nil || !strings.Contains(out, `"enabled": false`) {
		t.Fatalf("show after clear: %v\n%s", err, out)
	}
	if out, err := run("", "iam", "set", app.ID, "--enable", "--disable"); err == nil || !strings.Contains(out, "exclude") {
		t.Fatalf("--enable --disable: %v\n%s", err, out)
	}
}
