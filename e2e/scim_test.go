package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	potp "github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/testpg"
	"github.com/otpd/otpd/internal/testsmtp"
)

// scim sends a SCIM request with HTTP Basic client credentials and decodes the JSON answer.
func (p *proc) scim(method, path, id, secret string, body string) (int, map[string]any) {
	p.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, p.url+"/soffid/webservice/scim2/v1"+path, rd)
	req.Header.Set("Content-Type", "application/scim+json")
	req.SetBasicAuth(id, secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// clientCredentials creates an application with the local CLI and returns its client id and
// secret.
func clientCredentials(t *testing.T, env []string) (string, string) {
	t.Helper()
	cmd := exec.Command(binary, "app", "create", "--name", "soffid")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("app create: %v", err)
	}
	var a struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.Unmarshal(out[bytes.IndexByte(out, '{'):], &a); err != nil || a.ClientID == "" {
		t.Fatalf("app create output: %v\n%s", err, out)
	}
	return a.ClientID, a.ClientSecret
}

func totpNow(t *testing.T, uri string) string {
	t.Helper()
	k, err := potp.NewKeyFromURL(uri)
	if err != nil {
		t.Fatal(err)
	}
	c, err := totp.GenerateCodeCustom(k.Secret(), time.Now(), totp.ValidateOpts{Period: 30, Digits: potp.DigitsSix, Algorithm: potp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSCIMOverTheBinary: an identity platform provisions a user and devices over SCIM against
// the built binary; the TOTP code computed independently validates once; an EMAIL device's code
// travels through a real SMTP server; nothing secret is logged.
func TestSCIMOverTheBinary(t *testing.T) {
	smtp := testsmtp.Start(t, testsmtp.Options{})
	dir := t.TempDir()
	env := []string{"OTPD_DATA_DIR=" + dir}
	id, secret := clientCredentials(t, env)
	p := start(t, append(env, "OTPD_SMTP_URL="+smtp.URL(), "OTPD_SMTP_FROM=otpd@example.com", "OTPD_LOG_LEVEL=debug"))
	if st, v := p.scim("POST", "/Users", id, secret, `{"userName":"franck","emails":[{"value":"franck@example.com"}]}`); st != 201 {
		t.Fatalf("create user: %d %v", st, v)
	}
	st, dev := p.scim("POST", "/OtpDevice", id, secret, `{"type":"TOTP","user":"franck"}`)
	uri, _ := dev["uri"].(string)
	if st != 200 || !strings.HasPrefix(uri, "otpauth://totp/") || dev["image"] == nil || dev["status"] != "C" {
		t.Fatalf("create device: %d %v", st, dev)
	}
	path := fmt.Sprintf("/OtpDevice/%d/responseChallenge", int(dev["id"].(float64)))
	code := totpNow(t, uri)
	if st, v := p.scim("POST", path, id, secret, `{"pin":"`+code+`"}`); st != 200 || v["success"] != true {
		t.Fatalf("the right code: %d %v", st, v)
	}
	if _, v := p.scim("POST", path, id, secret, `{"pin":"`+code+`"}`); v["success"] != false {
		t.Fatalf("the same code again: %v", v)
	}
	// The enrolment notice went to franck by SMTP, and holds no secret.
	notice := smtp.WaitFor(t, "franck@example.com", 15*time.Second)
	k, _ := potp.NewKeyFromURL(uri)
	if !strings.Contains(notice.Text, "TOTP") || strings.Contains(notice.Text, k.Secret()) {
		t.Errorf("enrolment notice: %q", notice.Text)
	}
	// EMAIL device: requestChallenge sends the code by SMTP; responseChallenge takes it once.
	st, mail := p.scim("POST", "/OtpDevice", id, secret, `{"type":"EMAIL","user":"franck","email":"franck.work@example.com"}`)
	if st != 200 || mail["name"] != "Email message to fr*****@ex*****.co*" {
		t.Fatalf("email device: %d %v", st, mail)
	}
	mpath := fmt.Sprintf("/OtpDevice/%d", int(mail["id"].(float64)))
	if st, v := p.scim("GET", mpath+"/requestChallenge", id, secret, ""); st != 200 || v["cell"] != "PIN" || v["cardNumber"] != "Email message to fr*****@ex*****.co*" {
		t.Fatalf("requestChallenge: %d %v", st, v)
	}
	m := smtp.WaitFor(t, "franck.work@example.com", 15*time.Second)
	mcode := codeRE.FindString(m.Text)
	if st, v := p.scim("POST", mpath+"/responseChallenge", id, secret, `{"pin":"`+mcode+`"}`); st != 200 || v["success"] != true {
		t.Fatalf("the mailed code: %d %v (%q)", st, v, m.Text)
	}
	if st, v := p.scim("GET", "/OtpDevice?filter=user%20eq%20%22franck%22%20and%20status%20eq%20%22V%22", id, secret, ""); st != 200 || v["totalResults"] != 2.0 {
		t.Fatalf("filtered list: %d %v", st, v)
	}
	if st, v := p.scim("GET", "/OtpDevice?filter=secret%20sw%20%22A%22", id, secret, ""); st != 400 || v["scimType"] != "invalidFilter" {
		t.Fatalf("filter on the seed: %d %v", st, v)
	}
	p.stop()
	log := p.stderr.String()
	if !strings.Contains(log, "/soffid/webservice/scim2/v1/") {
		t.Fatal("the log has no SCIM request: the scan read the wrong log")
	}
	for what, s := range map[string]string{"seed": k.Secret(), "totp code": code, "mailed code": mcode, "client secret": secret} {
		if leaks(log, s) {
			t.Errorf("the log contains the %s", what)
		}
	}
}

// TestTOTPTwoInstancesOnPostgres: two otpd processes on one PostgreSQL; 50 concurrent
// submissions of one right TOTP code, alternating between them, give exactly one success; a
// device disabled on one instance is refused at once on the other.
func TestTOTPTwoInstancesOnPostgres(t *testing.T) {
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
	if st, v := a.call("POST", "/v1/users", admin, map[string]string{"login": "racer"}); st != 201 {
		t.Fatalf("user: %d %v", st, v)
	}
	for round := range 2 {
		st, d := a.call("POST", "/v1/users/login:racer/devices", admin, map[string]string{"type": "TOTP"})
		if st != 201 {
			t.Fatalf("enrol: %d %v", st, d)
		}
		verify := "/v1/users/login:racer/devices/" + d["id"].(string) + "/verify"
		code := totpNow(t, d["uri"].(string))
		var ok, refused atomic.Int32
		gate := make(chan struct{})
		var cw sync.WaitGroup
		for i := range 50 {
			cw.Go(func() {
				<-gate
				st, v := []*proc{a, b}[i%2].call("POST", verify, admin, map[string]string{"code": code})
				switch {
				case st != 200:
					t.Errorf("verify: %d %v", st, v)
				case v["success"] == true:
					ok.Add(1)
				case v["locked"] == false:
					refused.Add(1)
				}
			})
		}
		close(gate)
		cw.Wait()
		if ok.Load() != 1 || refused.Load() != 49 {
			t.Fatalf("round %d: %d successes, %d refusals; want 1 and 49", round, ok.Load(), refused.Load())
		}
		if round == 1 {
			dev := "/v1/users/login:racer/devices/" + d["id"].(string)
			if st, v := a.call("PATCH", dev, admin, map[string]string{"status": "disabled"}); st != 200 {
				t.Fatalf("disable: %d %v", st, v)
			}
			// No cache to expire: the next read on b sees it.
			if _, v := b.call("POST", verify, admin, map[string]string{"code": totpNow(t, d["uri"].(string))}); v["success"] != false {
				t.Fatalf("disabled on a, verified on b: %v", v)
			}
		}
	}
	a.stop()
	b.stop()
}

var uriRE = regexp.MustCompile(`otpauth://totp/\S+`)

// TestDeviceCLI: "otpd device enroll --user alice --type totp" prints the URI and a QR code in
// half blocks; the code computed from the URI verifies through "otpd device verify".
func TestDeviceCLI(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "OTPD_DATA_DIR="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("user", "create", "--login", "alice"); err != nil {
		t.Fatalf("user create: %v\n%s", err, out)
	}
	out, err := run("device", "enroll", "--user", "alice", "--type", "totp")
	uri := uriRE.FindString(out)
	if err != nil || uri == "" || !strings.Contains(out, "▀") || !strings.Contains(out, "█") || strings.Contains(out, "qr_png") {
		t.Fatalf("device enroll: %v\n%s", err, out)
	}
	var d struct{ ID, Status string }
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):strings.Index(out, "}")+1]), &d); err != nil || d.Status != "created" {
		t.Fatalf("device enroll JSON: %v\n%s", err, out)
	}
	if out, err := run("device", "verify", "--user", "alice", d.ID, totpNow(t, uri)); err != nil || !strings.Contains(out, `"success": true`) {
		t.Fatalf("device verify: %v\n%s", err, out)
	}
	if out, err := run("device", "list", "--user", "alice"); err != nil || !strings.Contains(out, `"status": "validated"`) {
		t.Fatalf("device list: %v\n%s", err, out)
	}
	for range 5 {
		run("device", "verify", "--user", "alice", d.ID, "000000")
	}
	if out, _ := run("device", "get", "--user", "alice", d.ID); !strings.Contains(out, `"status": "locked"`) {
		t.Fatalf("after 5 failures: %s", out)
	}
	if out, err := run("device", "unlock", "--user", "alice", d.ID); err != nil || !strings.Contains(out, `"status": "validated"`) {
		t.Fatalf("device unlock: %v\n%s", err, out)
	}
	if out, err := run("device", "verify", "--user", "alice"); err == nil || !strings.Contains(out, "usage") {
		t.Fatalf("device verify without arguments: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "otpd.db*"))
	k, _ := potp.NewKeyFromURL(uri)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte(k.Secret())) {
			t.Errorf("%s holds the base32 seed", filepath.Base(f))
		}
	}
}
