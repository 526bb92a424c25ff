// Package sqlstore is otpd's one database/sql implementation of store.Store, for SQLite
// (modernc.org/sqlite, cgo-free, the embedded default) and PostgreSQL (pgx through its stdlib
// adapter, extended protocol only).
//
// Both engines run the same SQL text wherever they can: modernc binds $1… like PostgreSQL, times
// are BIGINT/INTEGER Unix milliseconds, booleans bind as Go bool (BOOLEAN on PostgreSQL, INTEGER
// 0/1 on SQLite), JSON is TEXT, byte strings are BYTEA/BLOB. The few places that differ (row locks,
// SKIP LOCKED, advisory locks, row addresses for batched deletes) switch on the dialect.
//
// SQLite runs two pools on one file: a write pool with exactly one connection whose transactions
// begin IMMEDIATE, so writers queue in Go instead of spinning on SQLITE_BUSY, and a query_only
// read pool for reads outside transactions (WAL lets them run beside the writer). InTx always
// uses the write pool, so a function passed to InTx must only use the Queries it is given: calling
// the Store from inside it would wait for the connection the transaction holds. Statements are
// prepared once per connection and reused; PostgreSQL connections cache their prepared statements
// in pgx.
//
// Times are stored with millisecond precision; Create and Update methods truncate the time fields
// of the struct they are given to milliseconds (UTC), so the struct equals what a later read
// returns. Empty JSON fields (Settings, Metadata, Details) are stored and returned as "{}". Create
// methods fill an empty ID with a UUIDv7 and set Version to 1 where the entity has one.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/otpd/otpd/internal/store"
)

// Dialect names, as returned by Store.Dialect.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// Store is a store.Store on SQLite or PostgreSQL. Its methods outside InTx each run on their own
// (a single statement, or a short transaction where one statement cannot do the job).
type Store struct {
	queries // the autocommit Queries; InTx hands out a transactional one

	dialect string
	w       *pool    // writes and transactions (SQLite: one connection)
	r       *pool    // reads outside transactions (PostgreSQL: the same pool as w)
	batch   *batcher // SQLite: group commit of transactions (nil on PostgreSQL)
}

var _ store.Store = (*Store)(nil)

// Open opens the database named by dsn. "postgres://…" and "postgresql://…" open PostgreSQL
// through pgx; anything else is the path of a SQLite file (a "file:" or "sqlite://" prefix is
// accepted and dropped), created with mode 0600 in a parent directory created 0700 if missing.
// Open does not migrate: call Migrate.
func Open(ctx context.Context, dsn string) (*Store, error) {
	var s *Store
	var err error
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		s, err = openPostgres(ctx, dsn)
	} else {
		s, err = openSQLite(ctx, dsn)
	}
	if err != nil {
		return nil, err
	}
	// Prepare the statements now if the schema is already there; Migrate does it again.
	s.warm(ctx)
	return s, nil
}

func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: parse postgres dsn: %w", err)
	}
	if cfg.DefaultQueryExecMode == pgx.QueryExecModeSimpleProtocol {
		return nil, errors.New("sqlstore: default_query_exec_mode=simple_protocol is not supported: otpd binds every parameter through the extended protocol")
	}
	db := stdlib.OpenDB(*cfg)
	n := max(16, 4*runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	db.SetConnMaxLifetime(time.Hour)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: connect to postgres: %w", err)
	}
	p := &pool{db: db}
	s := &Store{dialect: DialectPostgres, w: p, r: p}
	s.queries = queries{s: s}
	return s, nil
}

func openSQLite(ctx context.Context, dsn string) (*Store, error) {
	path := dsn
	for _, prefix := range []string{"sqlite://", "sqlite:", "file:"} {
		path = strings.TrimPrefix(path, prefix)
	}
	if path == "" {
		return nil, errors.New("sqlstore: empty database path")
	}
	if strings.Contains(path, "?") || path == ":memory:" {
		return nil, fmt.Errorf("sqlstore: %q is not a plain SQLite file path", dsn)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlstore: create database directory: %w", err)
	}
	// Create the file ourselves so it is 0600 from the start; SQLite gives the -wal and -shm files
	// the mode of the database file.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: create database file: %w", err)
	}
	f.Close()

	const common = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	w, err := sql.Open("sqlite", path+"?"+common+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// The writer connects first so the file is in WAL mode before any reader opens it.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlstore: open sqlite %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	n := max(8, 4*runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(10 * time.Minute)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlstore: open sqlite %s: %w", path, err)
	}
	s := &Store{dialect: DialectSQLite, w: &pool{db: w, cache: true}, r: &pool{db: r, cache: true}}
	s.queries = queries{s: s}
	s.batch = newBatcher(s, w)
	return s, nil
}

// SharedCommits is how many SQLite group commits carried more than one transaction so far
// (always 0 on PostgreSQL).
func (s *Store) SharedCommits() int64 {
	if s.batch == nil {
		return 0
	}
	return s.batch.shared.Load()
}

// Dialect is "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }

// Ping checks the database is reachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.db.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlstore: ping: %w", err)
	}
	if s.r != s.w {
		if err := s.r.db.PingContext(ctx); err != nil {
			return fmt.Errorf("sqlstore: ping readers: %w", err)
		}
	}
	return nil
}

// Close closes the pools. The SQLite writer closes last, so it checkpoints the WAL.
func (s *Store) Close() error {
	var errs []error
	if s.batch != nil {
		s.batch.close()
	}
	if s.r != s.w {
		errs = append(errs, s.r.close())
	}
	errs = append(errs, s.w.close())
	return errors.Join(errs...)
}

// InTx runs fn in one transaction on the write pool: IMMEDIATE on SQLite (the write lock is
// held from the start), READ COMMITTED on PostgreSQL. fn's error (returned unchanged) or panic
// rolls back. Nothing is retried: fn may have effects outside the database. On SQLite, fn runs
// in a savepoint of a group commit with the other transactions waiting at that moment (see
// batcher); its semantics are those of its own transaction.
func (s *Store) InTx(ctx context.Context, fn func(q store.Queries) error) error {
	return s.inTx(ctx, func(q *queries) error { return fn(q) })
}

func (s *Store) inTx(ctx context.Context, fn func(q *queries) error) (err error) {
	if s.batch != nil {
		return s.batch.do(ctx, fn)
	}
	tx, err := s.w.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: begin: %w", err)
	}
	q := &queries{s: s, tx: tx, stmts: map[string]*sql.Stmt{}}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	if err := fn(q); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: commit: %w", err)
	}
	committed = true
	return nil
}

// pool is one *sql.DB and, for SQLite, its prepared statements by SQL text.
type pool struct {
	db     *sql.DB
	cache  bool
	nstmt  atomic.Int32
	stmts  sync.Map // string → *sql.Stmt
	closed atomic.Bool
}

// maxStmts bounds the statement cache: the static texts plus the ListChallenges filter
// combinations fit many times over; texts with variable-length IN lists beyond it run unprepared.
const maxStmts = 256

// stmt returns the prepared statement for query, preparing it if mayPrepare. It returns nil when
// the pool does not cache or the statement is not (and may not be) prepared; the caller then runs
// the text directly. Preparing needs a connection, so it must never happen while the caller holds
// the pool's only connection in a transaction.
func (p *pool) stmt(ctx context.Context, query string, mayPrepare bool) *sql.Stmt {
	if !p.cache {
		return nil
	}
	if v, ok := p.stmts.Load(query); ok {
		return v.(*sql.Stmt)
	}
	if !mayPrepare || p.nstmt.Load() >= maxStmts || p.closed.Load() {
		return nil
	}
	st, err := p.db.PrepareContext(ctx, query)
	if err != nil {
		return nil // the direct run reports the error
	}
	if v, loaded := p.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return v.(*sql.Stmt)
	}
	p.nstmt.Add(1)
	return st
}

func (p *pool) close() error {
	p.closed.Store(true)
	p.stmts.Range(func(k, v any) bool {
		v.(*sql.Stmt).Close()
		p.stmts.Delete(k)
		return true
	})
	return p.db.Close()
}

// statements lists every static SQL text, so warm can prepare them up front: the hot paths run
// inside transactions, where a statement can be reused but not prepared for the pool.
var statements []string

func def(query string) string {
	statements = append(statements, query)
	return query
}

// warm prepares the static statements on SQLite. Failures (no schema yet, the other dialect's
// texts) are ignored: such texts simply run unprepared.
func (s *Store) warm(ctx context.Context) {
	if !s.w.cache {
		return
	}
	for _, q := range statements {
		s.w.stmt(ctx, q, true)
		if strings.HasPrefix(q, "SELECT") {
			s.r.stmt(ctx, q, true)
		}
	}
}

// queries implements store.Queries, either in autocommit mode (tx == nil) or in a transaction.
type queries struct {
	s  *Store
	tx *sql.Tx
	// stmts caches the pool's prepared statements bound to tx, by SQL text.
	stmts map[string]*sql.Stmt
	// detached runs statements without their caller's cancellation. A group commit sets it:
	// modernc interrupts a statement whose context ends, and SQLite then rolls back the whole
	// transaction — every other caller's work in the batch — not just one savepoint.
	detached bool
}

// stmtCtx is the context a statement runs under.
func (q *queries) stmtCtx(ctx context.Context) context.Context {
	if q.detached {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// prep picks the prepared statement for query: in a transaction, the write pool's statement
// bound to the transaction; outside, the read or write pool's.
func (q *queries) prep(ctx context.Context, write bool, query string) (*sql.Stmt, *sql.DB) {
	p := q.s.r
	if write || q.tx != nil {
		p = q.s.w
	}
	if q.tx != nil {
		if st, ok := q.stmts[query]; ok {
			return st, p.db
		}
	}
	st := p.stmt(ctx, query, q.tx == nil)
	if st != nil && q.tx != nil {
		// Bound with a background context: the bound statement lives as long as the transaction,
		// which may outlive the first caller's context (a batch).
		st = q.tx.StmtContext(context.Background(), st)
		if q.stmts != nil {
			q.stmts[query] = st
		}
	}
	return st, p.db
}

// storableText reports whether every text argument can be stored on both engines: valid UTF-8
// without NUL bytes (PostgreSQL refuses either with an error that would otherwise surface as a
// 500, while SQLite stores them). Byte-slice arguments are not text and are not checked.
func storableText(args []any) bool {
	for _, a := range args {
		if s, ok := a.(string); ok && (!utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0) {
			return false
		}
	}
	return true
}

func (q *queries) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if !storableText(args) {
		return nil, store.ErrInvalidText
	}
	ctx = q.stmtCtx(ctx)
	st, db := q.prep(ctx, true, query)
	switch {
	case st != nil:
		return st.ExecContext(ctx, args...)
	case q.tx != nil:
		return q.tx.ExecContext(ctx, query, args...)
	default:
		return db.ExecContext(ctx, query, args...)
	}
}

// query runs a query on the transaction, or outside one on the write pool (write) or the
// read pool.
func (q *queries) query(ctx context.Context, write bool, query string, args ...any) (*sql.Rows, error) {
	if !storableText(args) {
		// No row can match such a value: an empty result on both engines alike.
		query, args = sqlNoRow, nil
	}
	ctx = q.stmtCtx(ctx)
	st, db := q.prep(ctx, write, query)
	switch {
	case st != nil:
		return st.QueryContext(ctx, args...)
	case q.tx != nil:
		return q.tx.QueryContext(ctx, query, args...)
	default:
		return db.QueryContext(ctx, query, args...)
	}
}

func (q *queries) queryRow(ctx context.Context, write bool, query string, args ...any) *sql.Row {
	if !storableText(args) {
		// No row can hold such a key: answer "no rows" (ErrNotFound) on both engines alike.
		query, args = sqlNoRow, nil
	}
	ctx = q.stmtCtx(ctx)
	st, db := q.prep(ctx, write, query)
	switch {
	case st != nil:
		return st.QueryRowContext(ctx, args...)
	case q.tx != nil:
		return q.tx.QueryRowContext(ctx, query, args...)
	default:
		return db.QueryRowContext(ctx, query, args...)
	}
}

// sqlNoRow returns no row on both engines.
var sqlNoRow = def(`SELECT 1 WHERE 1 = 0`)

// execOnce runs a statement that is not worth preparing (variable IN lists).
func (q *queries) execOnce(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if !storableText(args) {
		return nil, store.ErrInvalidText
	}
	ctx = q.stmtCtx(ctx)
	if q.tx != nil {
		return q.tx.ExecContext(ctx, query, args...)
	}
	return q.s.w.db.ExecContext(ctx, query, args...)
}

// affected returns the affected-row count of an exec.
func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// wrap maps driver errors to the store's sentinels and adds context.
func wrap(err error, op string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlstore: %s: %w", op, store.ErrNotFound)
	case isUniqueViolation(err):
		return fmt.Errorf("sqlstore: %s: %w (%w)", op, store.ErrAlreadyExists, err)
	case isForeignKeyViolation(err):
		return fmt.Errorf("sqlstore: %s: referenced row missing: %w (%w)", op, store.ErrNotFound, err)
	default:
		return fmt.Errorf("sqlstore: %s: %w", op, err)
	}
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

func isForeignKeyViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23503"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return false
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanAll reads every row with scan.
func scanAll[T any](rows *sql.Rows, err error, scan func(scanner) (*T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, rows.Err()
}

// Conversions between Go values and columns.

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMs(v int64) time.Time { return time.UnixMilli(v).UTC() }

// truncMs is t as it will read back.
func truncMs(t time.Time) time.Time { return fromMs(ms(t)) }

func truncMsPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := truncMs(*t)
	return &v
}

func nullMs(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

func fromNullMs(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMs(v.Int64)
	return &t
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func jsonOrEmpty(s *string) {
	if *s == "" {
		*s = "{}"
	}
}

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		panic("sqlstore: uuid: " + err.Error()) // only when crypto/rand fails
	}
	return id.String()
}

// limit applies a default and a ceiling to a caller's limit.
func limit(n, def, ceiling int) int {
	if n <= 0 {
		return def
	}
	return min(n, ceiling)
}

// placeholders returns "$from, $from+1, …" for n parameters.
func placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", from+i)
	}
	return b.String()
}
