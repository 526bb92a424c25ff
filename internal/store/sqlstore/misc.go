package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// Rate limits, idempotency keys, the dev inbox and the audit log.

var (
	sqlRateLock = def(`SELECT pg_advisory_xact_lock($1)`)
	// No upper bound on at: an event another instance recorded with a clock reading a moment
	// later than ours has happened all the same, and must count (two instances read their
	// clocks before they queue for the lock, not in the lock's order).
	sqlRateCount = def(`SELECT count(*), coalesce(min(at), 0) FROM rate_events
		WHERE tenant_id = $1 AND scope = $2 AND key = $3 AND at > $4`)
	sqlRateNth = def(`SELECT at FROM rate_events
		WHERE tenant_id = $1 AND scope = $2 AND key = $3 AND at > $4
		ORDER BY at LIMIT 1 OFFSET $5`)
	sqlRateInsert = def(`INSERT INTO rate_events (tenant_id, scope, key, at) VALUES ($1, $2, $3, $4)`)
)

// TakeRate counts the key's events after now-window (also those stamped after now); below the
// limit it records one at now and returns ok, otherwise it returns false and how long until
// enough events leave the window for one more to fit. The count and the insert run in the
// caller's transaction (or a transaction of their own outside InTx); on PostgreSQL a
// transaction-scoped advisory lock on the key serialises them across connections and instances,
// on SQLite the IMMEDIATE transaction does. A limit below 1 refuses every event (retryAfter =
// the window).
func (q *queries) TakeRate(ctx context.Context, tenantID string, l store.RateLimit, now time.Time) (ok bool, retryAfter time.Duration, err error) {
	if q.tx == nil {
		err = q.s.inTx(ctx, func(tq *queries) error {
			ok, retryAfter, err = tq.TakeRate(ctx, tenantID, l, now)
			return err
		})
		return ok, retryAfter, err
	}
	window := l.Window.Milliseconds()
	if window <= 0 {
		return false, 0, fmt.Errorf("sqlstore: take rate %s: window %v is under a millisecond", l.Scope, l.Window)
	}
	if l.Limit < 1 {
		return false, l.Window, nil
	}
	if q.s.dialect == DialectPostgres {
		if _, err := q.exec(ctx, sqlRateLock, rateLockKey(tenantID, l.Scope, l.Key)); err != nil {
			return false, 0, wrap(err, "take rate: lock")
		}
	}
	nowMs := ms(now)
	from := nowMs - window
	var n, oldest int64
	if err := q.queryRow(ctx, true, sqlRateCount, tenantID, l.Scope, l.Key, from).Scan(&n, &oldest); err != nil {
		return false, 0, wrap(err, "take rate: count")
	}
	if n < int64(l.Limit) {
		if _, err := q.exec(ctx, sqlRateInsert, tenantID, l.Scope, l.Key, nowMs); err != nil {
			return false, 0, wrap(err, "take rate: record")
		}
		return true, 0, nil
	}
	// One more fits once the (n-limit+1)-th oldest event has left the window.
	if excess := n - int64(l.Limit); excess > 0 {
		err := q.queryRow(ctx, true, sqlRateNth, tenantID, l.Scope, l.Key, from, excess).Scan(&oldest)
		if err != nil {
			return false, 0, wrap(err, "take rate: oldest")
		}
	}
	return false, time.Duration(oldest+window-nowMs) * time.Millisecond, nil
}

// rateLockKey is the advisory lock id of a rate key. A collision only makes two keys wait for
// each other.
func rateLockKey(tenantID, scope, key string) int64 {
	h := fnv.New64a()
	h.Write([]byte(tenantID))
	h.Write([]byte{0})
	h.Write([]byte(scope))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return int64(h.Sum64())
}

const idempotencyCols = `tenant_id, key, fingerprint, resource_id, created_at`

var (
	// DO NOTHING rather than a failing insert: a unique violation would abort a PostgreSQL
	// transaction, and the caller's InTx must go on to return the stored record.
	sqlInsertIdempotency = def(`INSERT INTO idempotency_keys (` + idempotencyCols + `)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, key) DO NOTHING`)
	sqlGetIdempotency = def(`SELECT ` + idempotencyCols + ` FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`)
)

// PutIdempotency stores r and returns it; if the tenant's key is taken it returns the stored
// record and ErrAlreadyExists.
func (q *queries) PutIdempotency(ctx context.Context, r *store.Idempotency) (*store.Idempotency, error) {
	r.CreatedAt = truncMs(r.CreatedAt)
	// Twice at most: the stored record may be purged between the insert and the read.
	for range 2 {
		n, err := affected(q.exec(ctx, sqlInsertIdempotency, r.TenantID, r.Key, nullBytes(r.Fingerprint), r.ResourceID, ms(r.CreatedAt)))
		if err != nil {
			return nil, wrap(err, "put idempotency key")
		}
		if n == 1 {
			return r, nil
		}
		var got store.Idempotency
		var created int64
		err = q.queryRow(ctx, true, sqlGetIdempotency, r.TenantID, r.Key).
			Scan(&got.TenantID, &got.Key, &got.Fingerprint, &got.ResourceID, &created)
		if err == nil {
			got.CreatedAt = fromMs(created)
			return &got, fmt.Errorf("sqlstore: put idempotency key: %w", store.ErrAlreadyExists)
		}
		if !errors.Is(wrap(err, ""), store.ErrNotFound) {
			return nil, wrap(err, "put idempotency key")
		}
	}
	return nil, fmt.Errorf("sqlstore: put idempotency key: %w", store.ErrConflict)
}

const devMessageCols = `id, tenant_id, channel, recipient, body, created_at`

var (
	sqlInsertDevMessage = def(`INSERT INTO dev_messages (` + devMessageCols + `) VALUES ($1, $2, $3, $4, $5, $6)`)
	sqlListDevMessages  = def(`SELECT ` + devMessageCols + ` FROM dev_messages WHERE tenant_id = $1
		ORDER BY created_at DESC, id DESC LIMIT $2`)
	sqlListDevMessagesTo = def(`SELECT ` + devMessageCols + ` FROM dev_messages WHERE tenant_id = $1
		AND recipient = $2 ORDER BY created_at DESC, id DESC LIMIT $3`)
)

func (q *queries) CreateDevMessage(ctx context.Context, m *store.DevMessage) error {
	if m.ID == "" {
		m.ID = newID()
	}
	m.CreatedAt = truncMs(m.CreatedAt)
	_, err := q.exec(ctx, sqlInsertDevMessage, m.ID, m.TenantID, m.Channel, m.Recipient, nullBytes(m.Body), ms(m.CreatedAt))
	return wrap(err, "create dev message")
}

// ListDevMessages returns up to limit (default 50, at most 500) messages, newest first;
// recipient "" lists all.
func (q *queries) ListDevMessages(ctx context.Context, tenantID, recipient string, n int) ([]store.DevMessage, error) {
	n = limit(n, 50, 500)
	query, args := sqlListDevMessages, []any{tenantID, n}
	if recipient != "" {
		query, args = sqlListDevMessagesTo, []any{tenantID, recipient, n}
	}
	rows, err := q.query(ctx, false, query, args...)
	msgs, err := scanAll(rows, err, func(sc scanner) (*store.DevMessage, error) {
		var m store.DevMessage
		var created int64
		if err := sc.Scan(&m.ID, &m.TenantID, &m.Channel, &m.Recipient, &m.Body, &created); err != nil {
			return nil, err
		}
		m.CreatedAt = fromMs(created)
		return &m, nil
	})
	return msgs, wrap(err, "list dev messages")
}

const auditCols = `id, tenant_id, at, actor, action, target, result, ip, details`

var sqlInsertAudit = def(`INSERT INTO audit_events (` + auditCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`)

func (q *queries) CreateAuditEvent(ctx context.Context, e *store.AuditEvent) error {
	if e.ID == "" {
		e.ID = newID()
	}
	e.At = truncMs(e.At)
	jsonOrEmpty(&e.Details)
	_, err := q.exec(ctx, sqlInsertAudit, e.ID, e.TenantID, ms(e.At), e.Actor, e.Action, e.Target, e.Result, e.IP, e.Details)
	return wrap(err, "create audit event")
}

// ListAuditEvents returns up to limit (default 50, at most 500) events, newest first: the first
// page of PageAuditEvents.
func (q *queries) ListAuditEvents(ctx context.Context, tenantID string, n int) ([]store.AuditEvent, error) {
	return q.PageAuditEvents(ctx, tenantID, store.AuditFilter{Limit: n})
}

// The optional filters are bound, not spliced: an empty action and a zero time switch them off,
// so one prepared text serves every combination.
var sqlPageAudit = def(`SELECT ` + auditCols + ` FROM audit_events WHERE tenant_id = $1
	AND ($2 = '' OR action = $2)
	AND (CAST($3 AS BIGINT) = 0 OR at < $3 OR (at = $3 AND id < $4))
	ORDER BY at DESC, id DESC LIMIT $5`)

// PageAuditEvents returns up to f.Limit (default 50, at most 500) events, newest first.
func (q *queries) PageAuditEvents(ctx context.Context, tenantID string, f store.AuditFilter) ([]store.AuditEvent, error) {
	var before int64
	if f.BeforeID != "" {
		before = ms(f.BeforeAt)
	}
	rows, err := q.query(ctx, false, sqlPageAudit, tenantID, f.Action, before, f.BeforeID, limit(f.Limit, 50, 500))
	es, err := scanAll(rows, err, func(sc scanner) (*store.AuditEvent, error) {
		var e store.AuditEvent
		var at int64
		if err := sc.Scan(&e.ID, &e.TenantID, &at, &e.Actor, &e.Action, &e.Target, &e.Result, &e.IP, &e.Details); err != nil {
			return nil, err
		}
		e.At = fromMs(at)
		return &e, nil
	})
	return es, wrap(err, "list audit events")
}

var (
	sqlInsertMeta = def(`INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`)
	sqlGetMeta    = def(`SELECT value FROM meta WHERE key = $1`)
	sqlSetMeta    = def(`INSERT INTO meta (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`)
)

// PutMetaIfAbsent stores value under key unless the key exists, and returns the stored value.
func (q *queries) PutMetaIfAbsent(ctx context.Context, key, value string) (string, error) {
	if _, err := q.exec(ctx, sqlInsertMeta, key, value); err != nil {
		return "", wrap(err, "put meta")
	}
	var stored string
	err := q.queryRow(ctx, true, sqlGetMeta, key).Scan(&stored)
	return stored, wrap(err, "get meta")
}

// SetMeta stores value under key.
func (q *queries) SetMeta(ctx context.Context, key, value string) error {
	_, err := q.exec(ctx, sqlSetMeta, key, value)
	return wrap(err, "set meta")
}
