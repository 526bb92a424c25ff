// Package storetest is the conformance suite every store.Store backend passes, and the helpers
// other packages use to run their own tests on every backend (SQLite and PostgreSQL).
//
// A package whose tests use the PostgreSQL backend needs testpg's TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
//			s := storetest.Open(t, b.NewDSN(t))
//			…
//		})
//	}
package storetest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/sqlstore"
	"github.com/otpd/otpd/internal/testpg"
)

// Backend is a kind of database the store runs on.
type Backend struct {
	Name string
	// NewDSN returns the DSN of a fresh, empty database that lives as long as t. The PostgreSQL
	// backend skips t when no server is installed (see testpg).
	NewDSN func(t testing.TB) string
}

// Backends returns SQLite (a file in t.TempDir()) and PostgreSQL (a database in testpg's cluster).
func Backends() []Backend {
	return []Backend{
		{Name: sqlstore.DialectSQLite, NewDSN: func(t testing.TB) string {
			return filepath.Join(t.TempDir(), "otpd.db")
		}},
		{Name: sqlstore.DialectPostgres, NewDSN: testpg.New},
	}
}

// ForEachBackend runs fn as a subtest named after each backend.
func ForEachBackend(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	for _, b := range Backends() {
		t.Run(b.Name, func(t *testing.T) { fn(t, b) })
	}
}

// dsns remembers which DSN each store opened by Open uses, so the suite can open a second
// instance on the same database for its multi-instance tests.
var dsns sync.Map // store.Store → string

// Open opens and migrates the store at dsn, and closes it when t ends.
func Open(t testing.TB, dsn string) store.Store {
	t.Helper()
	ctx := context.Background()
	s, err := sqlstore.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		dsns.Delete(store.Store(s))
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	dsns.Store(store.Store(s), dsn)
	return s
}

// sibling opens a second, independent instance on s's database, or skips t when s was not opened
// by Open.
func sibling(t *testing.T, s store.Store) store.Store {
	t.Helper()
	dsn, ok := dsns.Load(s)
	if !ok {
		t.Skip("store was not opened by storetest.Open: no second instance for the multi-instance test")
	}
	return Open(t, dsn.(string))
}
