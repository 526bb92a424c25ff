package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/otp"
)

// otpdRun runs the CLI in process and returns its exit status, stdout and stderr.
func otpdRun(t *testing.T, vars []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, vars, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// TestServePostgresWithoutMasterKey: `otpd serve` on PostgreSQL with neither OTPD_MASTER_KEY
// nor a chosen data directory refuses to start and says what to set — instead of generating
// the key in ./otpd-data of the working directory, where a container loses it.
func TestServePostgresWithoutMasterKey(t *testing.T) {
	t.Chdir(t.TempDir())
	code, _, stderr := otpdRun(t, []string{"OTPD_DATABASE_URL=postgres://otpd@127.0.0.1:1/otpd?connect_timeout=1"}, "",
		"serve", "--addr", "127.0.0.1:0")
	if code == 0 || !strings.Contains(stderr, "OTPD_MASTER_KEY") || !strings.Contains(stderr, "OTPD_DATA_DIR") {
		t.Fatalf("exit %d, stderr: %s", code, stderr)
	}
	if _, err := os.Stat("otpd-data"); !os.IsNotExist(err) {
		t.Fatalf("a master key directory was created in the working directory: %v", err)
	}
}

// lockedBuf is a bytes.Buffer safe to read while a command writes to it.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveUntilListening runs `otpd serve` until it listens, then stops it, and returns its output.
func serveUntilListening(t *testing.T, vars []string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuf
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, vars, strings.NewReader(""), &out, &errb)
	}()
	for !strings.Contains(out.String(), "listening on") {
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d before listening\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited with %d\nstderr: %s", code, errb.String())
	}
	return out.String(), errb.String()
}

// TestBootstrapKeyNotEchoed: a key the operator set in OTPD_BOOTSTRAP_API_KEY is never printed
// back (serve, migrate, local CLI commands); a key otpd generated is printed once.
func TestBootstrapKeyNotEchoed(t *testing.T) {
	const key = "operator-chosen-admin-key-0123456789abcdef"
	mk, _ := keys.GenerateMasterKey()
	base := []string{"OTPD_MASTER_KEY=" + keys.EncodeMasterKey(mk), "OTPD_BOOTSTRAP_API_KEY=" + key}

	stdout, stderr := serveUntilListening(t, append(base, "OTPD_DATA_DIR="+t.TempDir()))
	if strings.Contains(stdout+stderr, key) || !strings.Contains(stdout, "OTPD_BOOTSTRAP_API_KEY") {
		t.Errorf("serve:\nstdout: %s\nstderr: %s", stdout, stderr)
	}
	code, stdout, stderr := otpdRun(t, append(base, "OTPD_DATA_DIR="+t.TempDir()), "", "migrate")
	if code != 0 || strings.Contains(stdout+stderr, key) || !strings.Contains(stdout, "OTPD_BOOTSTRAP_API_KEY") {
		t.Errorf("migrate: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, args := range [][]string{{"app", "list"}, {"tenant", "list"}} {
		code, stdout, stderr = otpdRun(t, append(base, "OTPD_DATA_DIR="+t.TempDir()), "", args...)
		if code != 0 || strings.Contains(stdout+stderr, key) || !strings.Contains(stderr, "OTPD_BOOTSTRAP_API_KEY") {
			t.Errorf("%v: exit %d\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
		}
	}

	// Without OTPD_BOOTSTRAP_API_KEY the generated key is shown, once.
	dir := t.TempDir()
	stdout, _ = serveUntilListening(t, []string{base[0], "OTPD_DATA_DIR=" + dir})
	if !regexp.MustCompile(`\n    otpd_[0-9a-f]{16}_\S+\n`).MatchString(stdout) {
		t.Errorf("serve did not print the generated key:\n%s", stdout)
	}
	if stdout, _ = serveUntilListening(t, []string{base[0], "OTPD_DATA_DIR=" + dir}); strings.Contains(stdout, "otpd_") {
		t.Errorf("the second start printed a key again:\n%s", stdout)
	}
}

// TestDeviceEnrollSecretFiles: a seed and a PIN can come from a file or standard input instead
// of the command line; the old flags still work but warn on stderr.
func TestDeviceEnrollSecretFiles(t *testing.T) {
	dir := t.TempDir()
	mk, _ := keys.GenerateMasterKey()
	vars := []string{"OTPD_MASTER_KEY=" + keys.EncodeMasterKey(mk), "OTPD_DATA_DIR=" + dir}
	otpd := func(want int, stdin string, args ...string) (map[string]any, string) {
		t.Helper()
		code, stdout, stderr := otpdRun(t, vars, stdin, args...)
		if code != want {
			t.Fatalf("otpd %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, stdout, stderr)
		}
		var v map[string]any
		if i := strings.Index(stdout, "{"); i >= 0 {
			_ = json.NewDecoder(strings.NewReader(stdout[i:])).Decode(&v)
		}
		return v, stderr
	}
	otpd(0, "", "user", "create", "--login", "alice")
	seed := make([]byte, 20)
	rand.Read(seed)
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(seed)

	// The seed from standard input: the device checks codes made from it.
	d, stderr := otpd(0, b32+"\n", "device", "enroll", "--user", "alice", "--type", "hotp", "--secret-file", "-")
	if strings.Contains(stderr, "warning") {
		t.Errorf("--secret-file warned: %s", stderr)
	}
	code, _ := otp.HOTP(seed, 1, 6, otp.SHA1)
	if v, _ := otpd(0, "", "device", "verify", "--user", "alice", fmt.Sprint(d["id"]), code); v["success"] != true {
		t.Fatalf("a code from the seed read from stdin: %v", v)
	}

	// The PIN from a file.
	pinPath := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinPath, []byte("482915\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, stderr = otpd(0, "", "device", "enroll", "--user", "alice", "--type", "pin", "--pin-file", pinPath)
	if strings.Contains(stderr, "warning") || strings.Contains(fmt.Sprint(d), "482915") {
		t.Errorf("pin enrolment: %v\nstderr: %s", d, stderr)
	}
	if v, _ := otpd(0, "", "device", "verify", "--user", "alice", fmt.Sprint(d["id"]), "482915"); v["success"] != true {
		t.Fatalf("the PIN read from a file: %v", v)
	}

	// The old flag still works, with a warning; both at once, or two readers of stdin, are refused.
	_, stderr = otpd(0, "", "device", "enroll", "--user", "alice", "--type", "pin", "--pin", "771903")
	if !strings.Contains(stderr, "warning: --pin") || !strings.Contains(stderr, "--pin-file") || strings.Contains(stderr, "771903") {
		t.Errorf("--pin: stderr %s", stderr)
	}
	otpd(2, "", "device", "enroll", "--user", "alice", "--type", "pin", "--pin", "771903", "--pin-file", pinPath)
	otpd(2, "", "device", "enroll", "--user", "alice", "--type", "hotp", "--secret-file", "-", "--pin-file", "-")
	otpd(1, "", "device", "enroll", "--user", "alice", "--type", "pin", "--pin-file", filepath.Join(dir, "missing"))
}

// TestBackupCommand: `otpd backup FILE` copies the local SQLite database — also while a server
// runs on it — into a new 0600 file that otpd opens as a data directory with the same master key;
// it never overwrites, and on PostgreSQL it points to pg_dump.
func TestBackupCommand(t *testing.T) {
	dir := t.TempDir()
	mk, _ := keys.GenerateMasterKey()
	master := "OTPD_MASTER_KEY=" + keys.EncodeMasterKey(mk)
	vars := []string{master, "OTPD_DATA_DIR=" + dir}
	code, stdout, stderr := otpdRun(t, vars, "", "app", "create", "--name", "before-backup")
	if code != 0 {
		t.Fatalf("app create: %d %s %s", code, stdout, stderr)
	}

	// A server keeps running (and writing) on the database during the backup.
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuf
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, vars, strings.NewReader(""), &out, &out)
	}()
	for !strings.Contains(out.String(), "listening on") {
		select {
		case c := <-done:
			t.Fatalf("serve exited with %d: %s", c, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	defer func() { cancel(); <-done }()

	backup := filepath.Join(t.TempDir(), "restore", "otpd.db")
	if err := os.MkdirAll(filepath.Dir(backup), 0o700); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = otpdRun(t, vars, "", "backup", backup)
	if code != 0 || !strings.Contains(stdout, "master key") {
		t.Fatalf("backup: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	fi, err := os.Stat(backup)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", err, fi)
	}
	if code, _, stderr = otpdRun(t, vars, "", "backup", backup); code != 1 || !strings.Contains(stderr, "already exists") {
		t.Errorf("a second backup to the same file: exit %d, %s", code, stderr)
	}

	// The copy is a working data directory (with the same master key).
	code, stdout, stderr = otpdRun(t, []string{master, "OTPD_DATA_DIR=" + filepath.Dir(backup)}, "", "app", "list")
	if code != 0 || !strings.Contains(stdout, "before-backup") {
		t.Fatalf("app list on the copy: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}

	code, _, stderr = otpdRun(t, []string{"OTPD_DATABASE_URL=postgres://otpd@db/otpd"}, "", "backup", filepath.Join(t.TempDir(), "x"))
	if code != 1 || !strings.Contains(stderr, "pg_dump") {
		t.Errorf("backup on PostgreSQL: exit %d, %s", code, stderr)
	}
	if code, _, _ = otpdRun(t, vars, "", "backup"); code != 2 {
		t.Errorf("backup without FILE: exit %d, want 2", code)
	}
}
