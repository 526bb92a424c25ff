package testpg_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/otpd/otpd/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

func TestNew(t *testing.T) {
	a := testpg.New(t)
	b := testpg.New(t)
	if a == b {
		t.Fatalf("two calls returned the same database %s", a)
	}
	if !strings.HasPrefix(a, "postgres://postgres@127.0.0.1:") || !strings.HasSuffix(a, "?sslmode=disable") {
		t.Errorf("DSN %q", a)
	}
	ctx := context.Background()
	for _, dsn := range []string{a, b} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("fresh database has %d tables", n)
		}
		if _, err := conn.Exec(ctx, `CREATE TABLE t (id int)`); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
	}
}

func TestAvailable(t *testing.T) {
	dir, ok := testpg.Available()
	if ok && dir == "" {
		t.Error("Available: ok without a directory")
	}
	t.Logf("binaries: %q %v", dir, ok)
}
