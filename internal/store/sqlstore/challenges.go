package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/store"
)

const challengeCols = `id, tenant_id, application_id, channel, recipient, purpose, code_hash, code_length,
	status, attempts, max_attempts, sends, max_sends, last_sent_at, ttl_ms, delivery, user_id,
	client_ip, metadata, created_at, expires_at, finished_at, version, device_id, handle, surface`

var (
	sqlInsertChallenge = def(`INSERT INTO challenges (` + challengeCols + `) VALUES ($1, $2, $3, $4,
		$5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)`)
	sqlGetChallenge = def(`SELECT ` + challengeCols + ` FROM challenges WHERE tenant_id = $1 AND id = $2`)
	// PostgreSQL only; on SQLite the IMMEDIATE transaction already holds the database's write lock.
	sqlGetChallengeForUpdate = def(sqlGetChallenge + ` FOR UPDATE`)
	sqlUpdateChallenge       = def(`UPDATE challenges SET application_id = $3, channel = $4,
		recipient = $5, purpose = $6, code_hash = $7, code_length = $8, status = $9, attempts = $10,
		max_attempts = $11, sends = $12, max_sends = $13, last_sent_at = $14, ttl_ms = $15,
		delivery = $16, user_id = $17, client_ip = $18, metadata = $19, expires_at = $20,
		finished_at = $21, device_id = $23, handle = $24, version = version + 1
		WHERE tenant_id = $1 AND id = $2 AND version = $22`)
	sqlSetChallengeOutcome = def(`UPDATE challenges SET status = $3, attempts = $4, finished_at = $5,
		version = version + 1
		WHERE tenant_id = $1 AND id = $2 AND version = $6`)
	sqlGetChallengeByHandle = def(`SELECT ` + challengeCols + ` FROM challenges WHERE tenant_id = $1 AND handle = $2 AND handle <> ''`)
	sqlChallengeExists      = def(`SELECT 1 FROM challenges WHERE tenant_id = $1 AND id = $2`)
	sqlExpireChallenges     = def(`UPDATE challenges SET status = 'expired', finished_at = expires_at,
		version = version + 1
		WHERE tenant_id = $1 AND status = 'pending' AND expires_at <= $2`)
)

func scanChallenge(sc scanner) (*store.Challenge, error) {
	var c store.Challenge
	var lastSent, ttl, created, expires int64
	var finished sql.NullInt64
	err := sc.Scan(&c.ID, &c.TenantID, &c.ApplicationID, &c.Channel, &c.Recipient, &c.Purpose,
		&c.CodeHash, &c.CodeLength, &c.Status, &c.Attempts, &c.MaxAttempts, &c.Sends, &c.MaxSends,
		&lastSent, &ttl, &c.Delivery, &c.UserID, &c.ClientIP, &c.Metadata, &created, &expires,
		&finished, &c.Version, &c.DeviceID, &c.Handle, &c.Surface)
	if err != nil {
		return nil, err
	}
	c.LastSentAt = fromMs(lastSent)
	c.TTL = time.Duration(ttl) * time.Millisecond
	c.CreatedAt = fromMs(created)
	c.ExpiresAt = fromMs(expires)
	c.FinishedAt = fromNullMs(finished)
	return &c, nil
}

// normalizeChallenge rounds c's times and TTL to what the columns hold.
func normalizeChallenge(c *store.Challenge) {
	c.LastSentAt = truncMs(c.LastSentAt)
	c.TTL = c.TTL.Truncate(time.Millisecond)
	c.CreatedAt = truncMs(c.CreatedAt)
	c.ExpiresAt = truncMs(c.ExpiresAt)
	c.FinishedAt = truncMsPtr(c.FinishedAt)
	jsonOrEmpty(&c.Metadata)
}

// CreateChallenge inserts c with version 1; ErrNotFound if the tenant does not exist.
func (q *queries) CreateChallenge(ctx context.Context, c *store.Challenge) error {
	if c.ID == "" {
		c.ID = newID()
	}
	normalizeChallenge(c)
	c.Version = 1
	_, err := q.exec(ctx, sqlInsertChallenge, c.ID, c.TenantID, c.ApplicationID, c.Channel,
		c.Recipient, c.Purpose, nullBytes(c.CodeHash), c.CodeLength, c.Status, c.Attempts,
		c.MaxAttempts, c.Sends, c.MaxSends, ms(c.LastSentAt), c.TTL.Milliseconds(), c.Delivery,
		c.UserID, c.ClientIP, c.Metadata, ms(c.CreatedAt), ms(c.ExpiresAt), nullMs(c.FinishedAt),
		c.Version, c.DeviceID, c.Handle, c.Surface)
	return wrap(err, "create challenge")
}

func (q *queries) GetChallenge(ctx context.Context, tenantID, id string) (*store.Challenge, error) {
	c, err := scanChallenge(q.queryRow(ctx, false, sqlGetChallenge, tenantID, id))
	return c, wrap(err, "get challenge")
}

// GetChallengeByHandle finds a challenge by its dialect handle (unique per tenant).
func (q *queries) GetChallengeByHandle(ctx context.Context, tenantID, handle string) (*store.Challenge, error) {
	c, err := scanChallenge(q.queryRow(ctx, false, sqlGetChallengeByHandle, tenantID, handle))
	return c, wrap(err, "get challenge by handle")
}

// GetChallengeForUpdate reads the challenge inside the transaction: with SELECT … FOR UPDATE on
// PostgreSQL; on SQLite a plain read, because the IMMEDIATE transaction already excludes every
// other writer. Outside a transaction it is GetChallenge.
func (q *queries) GetChallengeForUpdate(ctx context.Context, tenantID, id string) (*store.Challenge, error) {
	if q.tx == nil {
		return q.GetChallenge(ctx, tenantID, id)
	}
	query := sqlGetChallenge
	if q.s.dialect == DialectPostgres {
		query = sqlGetChallengeForUpdate
	}
	c, err := scanChallenge(q.queryRow(ctx, true, query, tenantID, id))
	return c, wrap(err, "get challenge for update")
}

// UpdateChallenge writes every field but the id, tenant and creation time if the stored version
// is still c.Version, and sets c.Version to the new one. ErrConflict if the version moved,
// ErrNotFound if the challenge is gone.
func (q *queries) UpdateChallenge(ctx context.Context, c *store.Challenge) error {
	normalizeChallenge(c)
	n, err := affected(q.exec(ctx, sqlUpdateChallenge, c.TenantID, c.ID, c.ApplicationID, c.Channel,
		c.Recipient, c.Purpose, nullBytes(c.CodeHash), c.CodeLength, c.Status, c.Attempts,
		c.MaxAttempts, c.Sends, c.MaxSends, ms(c.LastSentAt), c.TTL.Milliseconds(), c.Delivery,
		c.UserID, c.ClientIP, c.Metadata, ms(c.ExpiresAt), nullMs(c.FinishedAt), c.Version,
		c.DeviceID, c.Handle))
	if err != nil {
		return wrap(err, "update challenge")
	}
	if n == 0 {
		return q.whyNotUpdated(ctx, sqlChallengeExists, "update challenge", c.TenantID, c.ID)
	}
	c.Version++
	return nil
}

// SetChallengeOutcome writes Status, Attempts and FinishedAt if the stored version is still
// c.Version, and sets c.Version to the new one. ErrConflict if the version moved, ErrNotFound if
// the challenge is gone.
func (q *queries) SetChallengeOutcome(ctx context.Context, c *store.Challenge) error {
	c.FinishedAt = truncMsPtr(c.FinishedAt)
	n, err := affected(q.exec(ctx, sqlSetChallengeOutcome, c.TenantID, c.ID, c.Status, c.Attempts,
		nullMs(c.FinishedAt), c.Version))
	if err != nil {
		return wrap(err, "set challenge outcome")
	}
	if n == 0 {
		return q.whyNotUpdated(ctx, sqlChallengeExists, "set challenge outcome", c.TenantID, c.ID)
	}
	c.Version++
	return nil
}

// ExpireChallenges marks the tenant's pending challenges with expires_at <= now as expired
// (finished_at = expires_at, version bumped) and returns how many changed.
func (q *queries) ExpireChallenges(ctx context.Context, tenantID string, now time.Time) (int64, error) {
	n, err := affected(q.exec(ctx, sqlExpireChallenges, tenantID, ms(now)))
	return n, wrap(err, "expire challenges")
}

// ListChallenges returns the tenant's challenges matching f, newest (largest id) first, at most
// f.Limit (default 50, at most 500), continuing below f.AfterID.
func (q *queries) ListChallenges(ctx context.Context, tenantID string, f store.ChallengeFilter) ([]store.Challenge, error) {
	var b strings.Builder
	args := []any{tenantID}
	b.WriteString(`SELECT ` + challengeCols + ` FROM challenges WHERE tenant_id = $1`)
	// Only fixed fragments and placeholder numbers go into the text; values are parameters.
	and := func(cond string, v any) {
		args = append(args, v)
		fmt.Fprintf(&b, " AND %s $%d", cond, len(args))
	}
	if f.Status != "" {
		and("status =", f.Status)
	}
	if f.Recipient != "" {
		and("recipient =", f.Recipient)
	}
	if f.Channel != "" {
		and("channel =", f.Channel)
	}
	if !f.From.IsZero() {
		and("created_at >=", ms(f.From))
	}
	if !f.To.IsZero() {
		and("created_at <", ms(f.To))
	}
	if f.AfterID != "" {
		and("id <", f.AfterID)
	}
	args = append(args, limit(f.Limit, 50, 500))
	fmt.Fprintf(&b, " ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := q.query(ctx, false, b.String(), args...)
	cs, err := scanAll(rows, err, scanChallenge)
	return cs, wrap(err, "list challenges")
}
