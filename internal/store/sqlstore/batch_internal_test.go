package sqlstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// TestBatchSurvivesCancelledCaller: a caller whose context ends while its statement runs inside
// a group commit does not take the other callers of the batch down with it (modernc interrupts
// the statement, and SQLite rolls back the whole transaction on an interrupt, unless the batch
// runs its statements detached from their callers' cancellation).
func TestBatchSurvivesCancelledCaller(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "otpd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tenant := func(name string) func(q *queries) error {
		return func(q *queries) error {
			return q.CreateTenant(ctx, &store.Tenant{Name: name, CreatedAt: time.Now()})
		}
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	slow := func(q *queries) error {
		// A write that outlives the caller's deadline (SQLite rolls back the whole transaction
		// when an INSERT, UPDATE or DELETE inside it is interrupted).
		if _, err := q.exec(short, `INSERT INTO meta (key, value)
			WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000)
			SELECT 'k' || x, 'v' FROM c`); err != nil {
			return err
		}
		return q.CreateTenant(short, &store.Tenant{Name: "slow", CreatedAt: time.Now()})
	}
	reqs := []*txReq{
		{ctx: ctx, fn: tenant("first"), ready: make(chan struct{})},
		{ctx: short, fn: slow, ready: make(chan struct{})},
		{ctx: ctx, fn: tenant("third"), ready: make(chan struct{})},
	}
	s.batch.run(reqs)
	for i, r := range reqs {
		<-r.ready
		if i != 1 && r.err != nil {
			t.Errorf("caller %d failed because another caller's context ended: %v", i, r.err)
		}
	}
	for _, name := range []string{"first", "third"} {
		if _, err := s.GetTenantByName(ctx, name); err != nil {
			t.Errorf("tenant %s: %v", name, err)
		}
	}
}
