package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// batcher is SQLite's group commit. SQLite has one writer at a time, and on the hot paths most
// of a write transaction's cost is BEGIN and COMMIT, not the statements. The batcher owns the
// write connection: it takes every transaction waiting at that moment (up to maxBatch), runs them
// one after another inside a single BEGIN IMMEDIATE … COMMIT, each in its own SAVEPOINT, and
// answers every caller only after the shared COMMIT.
//
// Each function keeps its transaction semantics: its error or panic rolls back exactly its own
// savepoint; it sees the writes of the functions before it in the batch, just as it would see
// them had they committed separately before it; and it learns of its success only once its
// writes are committed. If the shared COMMIT fails, every function of the batch gets the error.
type batcher struct {
	db      *sql.DB
	s       *Store
	reqs    chan *txReq
	done    chan struct{} // closed by close: take no more work
	stopped chan struct{} // closed when the loop has finished its last batch
	once    sync.Once
	// shared counts batches that carried more than one transaction (for tests and metrics).
	shared atomic.Int64
}

// maxBatch bounds how many transactions share one COMMIT, so a burst cannot make one caller wait
// behind an unbounded batch.
const maxBatch = 64

type txReq struct {
	ctx    context.Context
	fn     func(q *queries) error
	err    error
	panicV any
	ready  chan struct{}
}

var errClosed = errors.New("sqlstore: store is closed")

// The savepoint statements are prepared once with the others (def), not parsed per transaction.
var (
	sqlSavepoint  = def(`SAVEPOINT otpd_tx`)
	sqlRollbackTo = def(`ROLLBACK TO otpd_tx`)
	sqlRelease    = def(`RELEASE otpd_tx`)
)

func newBatcher(s *Store, db *sql.DB) *batcher {
	b := &batcher{db: db, s: s, reqs: make(chan *txReq), done: make(chan struct{}), stopped: make(chan struct{})}
	go b.loop()
	return b
}

// do runs fn in the next batch and waits for its outcome. A panic in fn is re-raised here, in
// the caller's goroutine.
func (b *batcher) do(ctx context.Context, fn func(q *queries) error) error {
	r := &txReq{ctx: ctx, fn: fn, ready: make(chan struct{})}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.done:
		return errClosed
	}
	<-r.ready // the batch always answers, also when ctx ends meanwhile: fn may be running
	if r.panicV != nil {
		panic(r.panicV)
	}
	return r.err
}

// close stops taking work and waits for the batch under way.
func (b *batcher) close() {
	b.once.Do(func() { close(b.done) })
	<-b.stopped
}

func (b *batcher) loop() {
	defer close(b.stopped)
	batch := make([]*txReq, 0, maxBatch)
	for {
		select {
		case r := <-b.reqs:
			batch = append(batch[:0], r)
		case <-b.done:
			return
		}
	collect:
		for len(batch) < maxBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break collect
			}
		}
		if len(batch) > 1 {
			b.shared.Add(1)
		}
		b.run(batch)
	}
}

func (b *batcher) run(batch []*txReq) {
	answer := func(err error) {
		for _, r := range batch {
			if r.err == nil && r.panicV == nil {
				r.err = err
			}
			close(r.ready)
		}
	}
	// The batch's transaction is not tied to any one caller's context, and its statements run
	// detached from their callers' cancellation (queries.detached): modernc interrupts a statement
	// whose context ends, and SQLite answers an interrupt by rolling back the whole transaction —
	// one caller giving up would undo the others' work. A caller whose context ended before its
	// turn is skipped.
	tx, err := b.db.BeginTx(context.Background(), nil)
	if err != nil {
		answer(fmt.Errorf("sqlstore: begin: %w", err))
		return
	}
	q := &queries{s: b.s, tx: tx, stmts: map[string]*sql.Stmt{}, detached: true}
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			continue
		}
		if _, err := q.exec(r.ctx, sqlSavepoint); err != nil {
			r.err = fmt.Errorf("sqlstore: savepoint: %w", err)
			continue
		}
		r.err, r.panicV = runGuarded(r.fn, q)
		if r.err != nil || r.panicV != nil {
			if _, err := q.exec(context.Background(), sqlRollbackTo); err != nil {
				// The transaction is in an unknown state: give up on the whole batch.
				_ = tx.Rollback()
				answer(fmt.Errorf("sqlstore: rollback to savepoint: %w", err))
				return
			}
		}
		if _, err := q.exec(context.Background(), sqlRelease); err != nil {
			_ = tx.Rollback()
			answer(fmt.Errorf("sqlstore: release savepoint: %w", err))
			return
		}
	}
	if err := tx.Commit(); err != nil {
		answer(fmt.Errorf("sqlstore: commit: %w", err))
		return
	}
	answer(nil)
}

// runGuarded runs fn, turning a panic into a value the caller re-raises.
func runGuarded(fn func(q *queries) error, q *queries) (err error, panicV any) {
	defer func() {
		if v := recover(); v != nil {
			panicV = v
		}
	}()
	return fn(q), nil
}
