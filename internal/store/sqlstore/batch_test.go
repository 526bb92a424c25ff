package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/sqlstore"
)

// TestGroupCommitIsolation: transactions that share a SQLite group commit keep their own
// outcome — a failing or panicking one rolls back only itself, a caller whose context ended
// while queued writes nothing — and the test keeps going until batches really were shared.
func TestGroupCommitIsolation(t *testing.T) {
	ctx := context.Background()
	s, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "otpd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	errBoom := errors.New("boom")
	want := map[string]bool{}
	var mu sync.Mutex
	for round := 0; round < 50 && (round < 5 || s.SharedCommits() < 3); round++ {
		var wg sync.WaitGroup
		for i := range 24 {
			name := fmt.Sprintf("r%d-t%d", round, i)
			wg.Go(func() {
				defer func() {
					if v := recover(); v != nil && v != "kaboom" {
						t.Errorf("unexpected panic %v", v)
					}
				}()
				cctx := ctx
				if i%6 == 5 {
					c, cancel := context.WithCancel(ctx)
					cancel()
					cctx = c
				}
				err := s.InTx(cctx, func(q store.Queries) error {
					if err := q.CreateTenant(cctx, &store.Tenant{Name: name, CreatedAt: time.Now()}); err != nil {
						return err
					}
					switch i % 6 {
					case 1:
						return errBoom
					case 3:
						panic("kaboom")
					}
					return nil
				})
				switch i % 6 {
				case 1:
					if !errors.Is(err, errBoom) {
						t.Errorf("%s: err %v, want boom", name, err)
					}
				case 5:
					if err == nil {
						t.Errorf("%s: a cancelled caller's transaction succeeded", name)
					}
				case 3: // panicked; recovered above
				default:
					if err != nil {
						t.Errorf("%s: %v", name, err)
					}
					mu.Lock()
					want[name] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	if s.SharedCommits() == 0 {
		t.Fatal("no group commit carried more than one transaction: the isolation was not exercised")
	}
	ts, err := s.ListTenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, tn := range ts {
		got[tn.Name] = true
	}
	for n := range want {
		if !got[n] {
			t.Errorf("committed tenant %s is missing", n)
		}
	}
	for n := range got {
		if !want[n] {
			t.Errorf("tenant %s was written by a failed, panicked or cancelled transaction", n)
		}
	}
	t.Logf("%d tenants committed, %d shared group commits", len(got), s.SharedCommits())
}
