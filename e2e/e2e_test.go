// Package e2e tests the built otpd binary as a black box over loopback: the README flow, restarts,
// graceful shutdown, what ends up on disk and in the logs, two instances on one PostgreSQL, and
// the CLI.
package e2e

import (
	"bufio"
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
	"syscall"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/testlog"
	"github.com/otpd/otpd/internal/testpg"
	"github.com/otpd/otpd/internal/testsmtp"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "otpd-e2e-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "otpd")
	cmd := exec.Command("go", "build", "-o", binary, "../cmd/otpd")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building otpd:", err)
		os.Exit(1)
	}
	code := testpg.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running otpd.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	stdout *syncBuf
	stderr *syncBuf
	done   chan error
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listenRE = regexp.MustCompile(`listening on (http://[0-9.:]+)`)

// start runs `otpd serve` with env and waits until it listens.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{t: t, cmd: cmd, stdout: &syncBuf{}, stderr: &syncBuf{}, done: make(chan error, 1)}
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(p.stdout, pw)
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait(); pw.Close() }()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case p.url = <-found:
	case err := <-p.done:
		t.Fatalf("otpd exited before listening: %v\nstdout: %s\nstderr: %s", err, p.stdout, p.stderr)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("otpd did not listen within 30s\nstderr: %s", p.stderr)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

var keyRE = regexp.MustCompile(`\n\s+(otpd_[0-9a-f]{16}_[A-Za-z0-9_-]{43})\n`)

func (p *proc) adminKey() string {
	m := keyRE.FindStringSubmatch(p.stdout.String())
	if m == nil {
		p.t.Fatalf("no admin key printed:\n%s", p.stdout)
	}
	return m[1]
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Fatalf("otpd exited with %v after SIGTERM\nstderr: %s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		p.t.Fatal("otpd did not stop within 30s of SIGTERM")
	}
}

// kill sends SIGKILL: no chance to clean up.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) call(method, path, key string, body any) (int, map[string]any) {
	p.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.url+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

var codeRE = regexp.MustCompile(`\b[0-9]{6}\b`)

// TestReadmeFlow is the README's quick start: serve on the defaults, send a code by email into the
// development inbox, read it, verify it, stop with SIGTERM.
func TestReadmeFlow(t *testing.T) {
	dir := t.TempDir()
	p := start(t, []string{"OTPD_DATA_DIR=" + dir})
	key := p.adminKey()
	if fi, err := os.Stat(filepath.Join(dir, "master.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key file: %v %v", err, fi)
	}
	st, v := p.call("POST", "/v1/verifications", key, map[string]string{"channel": "email", "to": "alice@example.com"})
	if st != 201 {
		t.Fatalf("start: %d %v", st, v)
	}
	id := v["id"].(string)
	var code string
	for deadline := time.Now().Add(10 * time.Second); code == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, inbox := p.call("GET", "/v1/dev/messages?to=alice@example.com", key, nil)
		if msgs, _ := inbox["messages"].([]any); len(msgs) > 0 {
			code = codeRE.FindString(msgs[0].(map[string]any)["body"].(string))
		}
	}
	if code == "" {
		t.Fatal("no code in the dev inbox within 10s")
	}
	st, v = p.call("POST", "/v1/verifications/"+id+"/check", key, map[string]string{"code": code})
	if st != 200 || v["valid"] != true {
		t.Fatalf("check: %d %v", st, v)
	}
	p.stop()
	if leaks(p.stderr.String(), code) || leaks(p.stderr.String(), key) {
		t.Fatal("the log contains the code or the admin key")
	}
	if !strings.Contains(p.stderr.String(), `"msg":"shutting down"`) {
		t.Errorf("no shutdown log line:\n%s", p.stderr)
	}
}

// TestStateSurvivesKill: a session created before a SIGKILL verifies after a restart, and the
// second start does not print a new admin key.
func TestStateSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	env := []string{"OTPD_DATA_DIR=" + dir}
	p := start(t, env)
	key := p.adminKey()
	_, v := p.call("POST", "/v1/verifications", key, map[string]string{"channel": "none", "to": "bob@example.com"})
	id, code := v["id"].(string), v["code"].(string)
	p.kill()

	p2 := start(t, env)
	if keyRE.MatchString(p2.stdout.String()) {
		t.Fatal("a restart printed a new admin key")
	}
	st, v := p2.call("POST", "/v1/verifications/"+id+"/check", key, map[string]string{"code": code})
	if st != 200 || v["valid"] != true {
		t.Fatalf("check after restart: %d %v", st, v)
	}
	p2.stop()
}

// TestNoSecretsAtRest: with real SMTP delivery, neither the code nor the master key nor the admin
// key appears in the SQLite files or in the logs (debug level).
func TestNoSecretsAtRest(t *testing.T) {
	smtp := testsmtp.Start(t, testsmtp.Options{})
	dir := t.TempDir()
	mk, _ := keys.GenerateMasterKey()
	master := keys.EncodeMasterKey(mk)
	p := start(t, []string{"OTPD_DATA_DIR=" + dir, "OTPD_MASTER_KEY=" + master, "OTPD_LOG_LEVEL=debug",
		"OTPD_SMTP_URL=" + smtp.URL(), "OTPD_SMTP_FROM=otpd@example.com"})
	key := p.adminKey()
	st, v := p.call("POST", "/v1/verifications", key, map[string]string{"channel": "email", "to": "dora@example.com"})
	if st != 201 {
		t.Fatalf("start: %d %v", st, v)
	}
	mail := smtp.WaitFor(t, "dora@example.com", 15*time.Second)
	code := codeRE.FindString(mail.Text)
	if code == "" {
		t.Fatalf("no code in the mail: %q", mail.Text)
	}
	if st, v := p.call("POST", "/v1/verifications/"+v["id"].(string)+"/check", key, map[string]string{"code": code}); st != 200 || v["valid"] != true {
		t.Fatalf("check: %d %v", st, v)
	}
	p.stop()
	secrets := map[string]string{"code": code, "master key": master, "admin key": key}
	files, _ := filepath.Glob(filepath.Join(dir, "otpd.db*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	var all []byte
	for _, f := range files {
		b, _ := os.ReadFile(f)
		all = append(all, b...)
		for what, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains the %s", filepath.Base(f), what)
			}
		}
	}
	// Positive controls: the files and the log do hold this session's data, so the scans above
	// looked at the right bytes.
	if !bytes.Contains(all, []byte("dora@example.com")) {
		t.Error("the database files do not contain the recipient: the scan read the wrong files")
	}
	if !strings.Contains(p.stderr.String(), `"route":"POST /v1/verifications/{id}/check"`) {
		t.Error("the log does not contain the check request: the scan read the wrong log")
	}
	for what, s := range secrets {
		if leaks(p.stderr.String(), s) {
			t.Errorf("the log contains the %s", what)
		}
	}
}

// TestTwoInstancesOnPostgres: two otpd processes on one PostgreSQL, started together (migrations
// are serialised), race 50 checks of one code: exactly one succeeds.
func TestTwoInstancesOnPostgres(t *testing.T) {
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
	for round := range 3 {
		st, v := a.call("POST", "/v1/verifications", admin, map[string]string{"channel": "none", "to": fmt.Sprintf("race%d@example.com", round)})
		if st != 201 {
			t.Fatalf("start: %d %v", st, v)
		}
		id, code := v["id"].(string), v["code"].(string)
		var valid, verifiedSeen atomic.Int32
		gate := make(chan struct{})
		var cw sync.WaitGroup
		for i := range 50 {
			cw.Go(func() {
				<-gate
				st, v := procs[i%2].call("POST", "/v1/verifications/"+id+"/check", admin, map[string]string{"code": code})
				if st != 200 {
					t.Errorf("check: %d %v", st, v)
					return
				}
				if v["valid"] == true {
					valid.Add(1)
				} else if v["status"] == "verified" {
					verifiedSeen.Add(1)
				}
			})
		}
		close(gate)
		cw.Wait()
		if valid.Load() != 1 || verifiedSeen.Load() != 49 {
			t.Fatalf("round %d: %d valid, %d saw verified; want 1 and 49", round, valid.Load(), verifiedSeen.Load())
		}
	}
	a.stop()
	b.stop()
}

// TestCLI drives the operator CLI on the local database and against the running server.
func TestCLI(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "OTPD_DATA_DIR="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("app", "create", "--name", "shop")
	if err != nil || !strings.Contains(out, `"api_key": "otpd_`) || !strings.Contains(out, `"client_secret"`) {
		t.Fatalf("app create: %v\n%s", err, out)
	}
	out, err = run("verify", "start", "--channel", "none", "--to", "+14155550100")
	if err != nil {
		t.Fatalf("verify start: %v\n%s", err, out)
	}
	var v struct{ ID, Code string }
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &v); err != nil || v.Code == "" {
		t.Fatalf("verify start output: %v\n%s", err, out)
	}
	out, err = run("verify", "check", v.ID, v.Code)
	if err != nil || !strings.Contains(out, `"valid": true`) {
		t.Fatalf("verify check: %v\n%s", err, out)
	}
	if out, err = run("verify", "check", v.ID, "12"); err == nil || !strings.Contains(out, "400") {
		t.Fatalf("malformed code: %v\n%s", err, out)
	}
	if out, _ := run("app", "--help"); !strings.Contains(out, "create") {
		t.Fatalf("app --help: %s", out)
	}
	if out, err := run("frobnicate"); err == nil || !strings.Contains(out, "unknown command") {
		t.Fatalf("unknown command: %v %s", err, out)
	}

	// Against the running server with the app's key.
	p := start(t, []string{"OTPD_DATA_DIR=" + dir})
	out, err = run("user", "create", "--login", "alice", "--email", "Alice@Example.com", "--server", p.url, "--api-key", appKey(t, dir))
	if err != nil || !strings.Contains(out, `"email": "alice@example.com"`) {
		t.Fatalf("user create via server: %v\n%s", err, out)
	}
	p.stop()

	out, err = run("config", "--smtp-url", "smtp://u:hunter2@mail.example.com:587", "--smtp-from", "a@example.com")
	if err != nil || strings.Contains(out, "hunter2") || !strings.Contains(out, "mail.example.com") {
		t.Fatalf("config: %v\n%s", err, out)
	}
	if out, err := run("version"); err != nil || !strings.HasPrefix(out, "otpd ") {
		t.Fatalf("version: %v %s", err, out)
	}
}

// appKey creates an application through the local CLI and returns its API key.
func appKey(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command(binary, "app", "create", "--name", "cli-remote")
	cmd.Env = append(os.Environ(), "OTPD_DATA_DIR="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var a struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(out, &a); err != nil || a.APIKey == "" {
		t.Fatalf("app create output: %v\n%s", err, out)
	}
	return a.APIKey
}

// TestWrongMasterKeyRefused: an instance with a different master key refuses to start on a
// database set up with another one, and a rotation (new key, old key kept) is accepted.
func TestWrongMasterKeyRefused(t *testing.T) {
	dir := t.TempDir()
	k1, _ := keys.GenerateMasterKey()
	k2, _ := keys.GenerateMasterKey()
	one, two := keys.EncodeMasterKey(k1), keys.EncodeMasterKey(k2)
	p := start(t, []string{"OTPD_DATA_DIR=" + dir, "OTPD_MASTER_KEY=" + one})
	key := p.adminKey()
	_, v := p.call("POST", "/v1/verifications", key, map[string]string{"channel": "none", "to": "eve@example.com"})
	p.stop()

	cmd := exec.Command(binary, "serve", "--addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "OTPD_DATA_DIR="+dir, "OTPD_MASTER_KEY="+two)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "OTPD_MASTER_KEY") {
		t.Fatalf("a wrong master key was accepted: %v\n%s", err, out)
	}

	// Rotation: the new key current, the old one still known — and the old session still checks.
	p = start(t, []string{"OTPD_DATA_DIR=" + dir, "OTPD_MASTER_KEY=" + two, "OTPD_OLD_MASTER_KEYS=" + one})
	st, res := p.call("POST", "/v1/verifications/"+v["id"].(string)+"/check", key, map[string]string{"code": v["code"].(string)})
	if st != 200 || res["valid"] != true {
		t.Fatalf("check after rotation: %d %v", st, res)
	}
	p.stop()
}

// leaks reports whether a secret reached a log (see testlog.Leaks).
var leaks = testlog.Leaks
