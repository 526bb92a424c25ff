package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/sqlstore"
	"github.com/otpd/otpd/internal/store/storetest"
)

// TestBackup: a backup taken while writers commit is a consistent, private (0600) SQLite file
// holding everything committed before it began — rows still in the WAL too — and a backup never
// overwrites a file. PostgreSQL points to pg_dump.
func TestBackup(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		s := storetest.Open(t, b.NewDSN(t)).(*sqlstore.Store)
		dest := filepath.Join(t.TempDir(), "backup.db")
		if b.Name == sqlstore.DialectPostgres {
			if err := s.Backup(ctx, dest); !errors.Is(err, sqlstore.ErrBackupUnsupported) {
				t.Fatalf("backup on PostgreSQL: %v", err)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Fatalf("backup on PostgreSQL left a file: %v", err)
			}
			return
		}
		now := time.Now()
		for i := range 50 {
			if err := s.CreateTenant(ctx, &store.Tenant{Name: fmt.Sprintf("before-%d", i), CreatedAt: now}); err != nil {
				t.Fatal(err)
			}
		}
		// Writers keep committing while the backup runs.
		var stop atomic.Bool
		var wg sync.WaitGroup
		var during atomic.Int64
		for w := range 4 {
			wg.Go(func() {
				for i := 0; !stop.Load(); i++ {
					if err := s.CreateTenant(ctx, &store.Tenant{Name: fmt.Sprintf("during-%d-%d", w, i), CreatedAt: now}); err != nil {
						t.Error(err)
						return
					}
					during.Add(1)
				}
			})
		}
		for during.Load() < 20 {
			time.Sleep(time.Millisecond)
		}
		err := s.Backup(ctx, dest)
		stop.Store(true)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dest)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("backup mode %v, want 0600", fi.Mode().Perm())
		}

		c := storetest.Open(t, dest)
		ts, err := c.ListTenants(ctx)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, tn := range ts {
			names[tn.Name] = true
		}
		for i := range 50 {
			if !names[fmt.Sprintf("before-%d", i)] {
				t.Fatalf("the backup lacks before-%d (%d tenants)", i, len(ts))
			}
		}
		if len(ts) < 70 || int64(len(ts)) > 50+during.Load() {
			t.Errorf("the backup holds %d tenants; %d were written before it began and %d in all", len(ts), 70, 50+during.Load())
		}

		// Never over an existing file, not even an empty one.
		empty := filepath.Join(t.TempDir(), "empty.db")
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{dest, empty} {
			before, _ := os.ReadFile(p)
			if err := s.Backup(ctx, p); err == nil {
				t.Errorf("backup over %s succeeded", filepath.Base(p))
			}
			if after, _ := os.ReadFile(p); string(after) != string(before) {
				t.Errorf("backup changed the existing %s", filepath.Base(p))
			}
		}
	})
}
