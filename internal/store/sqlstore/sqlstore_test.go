package sqlstore_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/sqlstore"
	"github.com/otpd/otpd/internal/store/storetest"
	"github.com/otpd/otpd/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

// TestConformance runs the store suite on SQLite and PostgreSQL.
func TestConformance(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		storetest.Run(t, func(t *testing.T) store.Store { return storetest.Open(t, b.NewDSN(t)) })
	})
}

// TestSQLiteFile: the database file and its directory are private to the server.
func TestSQLiteFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := filepath.Join(dir, "otpd.db")
	s := storetest.Open(t, path)
	if s.Dialect() != sqlstore.DialectSQLite {
		t.Errorf("Dialect() = %q", s.Dialect())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("database file mode %v, want 0600", mode)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if mode := di.Mode().Perm(); mode&0o077 != 0 {
		t.Errorf("database directory mode %v, want no group/other access", mode)
	}
	// Write something so the WAL exists, and check it is private too.
	ctx := context.Background()
	if err := s.CreateTenant(ctx, &store.Tenant{Name: "x", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("WAL file mode %v, want 0600", fi.Mode().Perm())
	}
	// Prefixes are accepted.
	s2, err := sqlstore.Open(ctx, "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n, err := s2.CountTenants(ctx); err != nil || n != 1 {
		t.Errorf("reopened with file: prefix: %d tenants, %v", n, err)
	}
}

func TestOpenRejects(t *testing.T) {
	ctx := context.Background()
	for _, dsn := range []string{"", ":memory:", filepath.Join(t.TempDir(), "x.db") + "?mode=ro"} {
		if s, err := sqlstore.Open(ctx, dsn); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", dsn)
		}
	}
	if s, err := sqlstore.Open(ctx, "postgres://127.0.0.1:1/x?default_query_exec_mode=simple_protocol"); err == nil {
		s.Close()
		t.Errorf("Open accepted the simple protocol")
	} else if !strings.Contains(err.Error(), "simple_protocol") {
		t.Errorf("simple protocol refused for the wrong reason: %v", err)
	}
}

// TestLibcVersion: modernc.org/sqlite is only tested with the modernc.org/libc its go.mod names,
// so the build must use exactly that one. Test binaries record no dependency list in their build
// info, so when it is empty the versions come from `go list -deps` for this package's build.
func TestLibcVersion(t *testing.T) {
	want := map[string]string{"modernc.org/libc": "v1.79.0", "modernc.org/sqlite": "v1.61.1"}
	got := map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			got[d.Path] = d.Version
			if d.Replace != nil {
				got[d.Path] = d.Replace.Version + " (replaced)"
			}
		}
	}
	if len(got) == 0 {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(goTool, "list", "-deps", "-f",
			"{{with .Module}}{{.Path}} {{.Version}}{{with .Replace}} {{.Version}} (replaced){{end}}{{end}}",
			"github.com/otpd/otpd/internal/store/sqlstore")
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("no build info and no go tool to ask (%v)", err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if path, v, ok := strings.Cut(line, " "); ok {
				got[path] = v
			}
		}
	}
	for path, v := range want {
		if got[path] != v {
			t.Errorf("%s is %q in the build, want %s", path, got[path], v)
		}
	}
}

func TestMigrationStatus(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		s, err := sqlstore.Open(ctx, b.NewDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st, err := s.MigrationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) == 0 || st[0].Applied || st[0].Name != "00001_init.sql" {
			t.Fatalf("before Migrate: %v", st)
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		st, err = s.MigrationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st {
			if !m.Applied || m.AppliedAt.IsZero() {
				t.Errorf("after Migrate: %v", m)
			}
			if !strings.Contains(m.String(), "applied") {
				t.Errorf("String() = %q", m.String())
			}
		}
	})
}

// TestConcurrentMigrate: instances starting together on one PostgreSQL database migrate once.
func TestConcurrentMigrate(t *testing.T) {
	dsn := testpg.New(t)
	ctx := context.Background()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := sqlstore.Open(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			errs <- s.Migrate(ctx)
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestDump: storetest.Dump sees what was written, on both engines.
func TestDump(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		dsn := b.NewDSN(t)
		s := storetest.Open(t, dsn)
		ctx := context.Background()
		tn := &store.Tenant{Name: "needle-tenant", CreatedAt: time.Now()}
		if err := s.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAPIKey(ctx, &store.APIKey{TenantID: tn.ID, Role: store.RoleAdmin, SecretHash: []byte("needle-hash"), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		dump := storetest.Dump(t, s, dsn)
		if !bytes.Contains(dump, []byte("needle-tenant")) {
			t.Error("dump misses a text column")
		}
		if !bytes.Contains(dump, []byte("needle-hash")) && !bytes.Contains(dump, []byte(hex.EncodeToString([]byte("needle-hash")))) {
			t.Error("dump misses a byte column")
		}
	})
}

// TestUnstorableText: text that is not valid UTF-8 or holds a NUL byte finds nothing when read
// and is refused with ErrInvalidText when written — alike on SQLite and PostgreSQL (PostgreSQL
// would otherwise fail the statement, which surfaced as a 500).
func TestUnstorableText(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		s := storetest.Open(t, b.NewDSN(t))
		ctx := context.Background()
		tn := &store.Tenant{Name: "t", CreatedAt: time.Now()}
		if err := s.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"a\x00b", "\xff", "\xc3\x28"} {
			if _, err := s.GetChallenge(ctx, tn.ID, bad); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("get %q: %v", bad, err)
			}
			if _, err := s.GetUserByLogin(ctx, tn.ID, bad); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("user by login %q: %v", bad, err)
			}
			if cs, err := s.ListChallenges(ctx, tn.ID, store.ChallengeFilter{Recipient: bad}); err != nil || len(cs) != 0 {
				t.Errorf("list %q: %v %v", bad, cs, err)
			}
			u := &store.User{TenantID: tn.ID, Login: bad, Enabled: true, CreatedAt: time.Now(), UpdatedAt: time.Now()}
			if err := s.CreateUser(ctx, u); !errors.Is(err, store.ErrInvalidText) {
				t.Errorf("create user %q: %v", bad, err)
			}
		}
	})
}
