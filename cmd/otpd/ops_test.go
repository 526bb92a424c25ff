package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
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
