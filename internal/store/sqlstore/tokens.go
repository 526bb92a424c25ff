package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// One-time tokens, login sessions, revoked access tokens, token settings, IAM settings and user
// OTP slots.

const ottCols = `hash, tenant_id, user_id, application_id, purpose, audit_data, created_at, expires_at, used_at`

var (
	sqlInsertOTT = def(`INSERT INTO one_time_tokens (` + ottCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`)
	sqlGetOTT    = def(`SELECT ` + ottCols + ` FROM one_time_tokens WHERE hash = $1`)
	// The single-use rule is this statement: of concurrent redemptions only the first to update
	// the row sees used_at IS NULL; PostgreSQL re-checks the WHERE clause on the row a concurrent
	// winner committed, SQLite has one writer. $4 = '' redeems whatever the tenant (the caller
	// holds only the token); otherwise another tenant's token is left untouched.
	sqlRedeemOTT = def(`UPDATE one_time_tokens SET used_at = $1
		WHERE hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1
		AND (tenant_id = $4 OR $4 = '')
		RETURNING ` + ottCols)

	sqlInsertLoginSession = def(`INSERT INTO login_sessions (hash, tenant_id, user_id, created_at, expires_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6)`)
	sqlGetLoginSession = def(`SELECT hash, tenant_id, user_id, created_at, expires_at, revoked_at
		FROM login_sessions WHERE hash = $1`)
	sqlRevokeLoginSession = def(`UPDATE login_sessions SET revoked_at = $2 WHERE hash = $1 AND revoked_at IS NULL`)

	sqlRevokeToken = def(`INSERT INTO revoked_tokens (jti, tenant_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (jti) DO NOTHING`)
	sqlIsTokenRevoked = def(`SELECT count(*) FROM revoked_tokens WHERE jti = $1`)

	sqlGetTokenSettings = def(`SELECT redirect_targets, self_service_require_key, updated_at
		FROM token_settings WHERE tenant_id = $1`)
	sqlListSelfServiceHosts = def(`SELECT host FROM self_service_hosts WHERE tenant_id = $1 ORDER BY host`)
	sqlUpsertTokenSettings  = def(`INSERT INTO token_settings (tenant_id, redirect_targets, self_service_require_key, updated_at)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (tenant_id) DO UPDATE SET redirect_targets = excluded.redirect_targets,
		self_service_require_key = excluded.self_service_require_key, updated_at = excluded.updated_at`)
	sqlDeleteSelfServiceHosts = def(`DELETE FROM self_service_hosts WHERE tenant_id = $1`)
	sqlInsertSelfServiceHost  = def(`INSERT INTO self_service_hosts (host, tenant_id) VALUES ($1, $2)`)
	sqlGetTenantIDByHost      = def(`SELECT tenant_id FROM self_service_hosts WHERE host = $1`)

	iamCols      = `tenant_id, application_id, enabled, introspection_url, client_id, client_secret, role_path, allowed_role, updated_at`
	sqlGetIAM    = def(`SELECT ` + iamCols + ` FROM application_iam WHERE tenant_id = $1 AND application_id = $2`)
	sqlUpsertIAM = def(`INSERT INTO application_iam (` + iamCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (application_id) DO UPDATE SET enabled = excluded.enabled,
		introspection_url = excluded.introspection_url, client_id = excluded.client_id,
		client_secret = excluded.client_secret, role_path = excluded.role_path,
		allowed_role = excluded.allowed_role, updated_at = excluded.updated_at
		WHERE application_iam.tenant_id = excluded.tenant_id`)
	sqlDeleteIAM = def(`DELETE FROM application_iam WHERE tenant_id = $1 AND application_id = $2`)

	// The slot is taken over only when it is no longer held. The condition reads only the slot
	// row: on a conflict PostgreSQL re-evaluates it on the row a concurrent claim committed, so
	// of two concurrent claims at most one changes the row. (A subquery on the session would be
	// judged on the statement's snapshot, which cannot see a session created concurrently.)
	sqlClaimUserOTP = def(`INSERT INTO user_otps (tenant_id, user_id, purpose, challenge_id, expires_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (tenant_id, user_id, purpose) DO UPDATE SET challenge_id = excluded.challenge_id,
		expires_at = excluded.expires_at
		WHERE user_otps.expires_at <= $6`)
	sqlReleaseUserOTP = def(`UPDATE user_otps SET expires_at = 0
		WHERE tenant_id = $1 AND user_id = $2 AND purpose = $3 AND challenge_id = $4`)
	sqlGetUserOTP = def(`SELECT challenge_id, expires_at FROM user_otps WHERE tenant_id = $1 AND user_id = $2 AND purpose = $3`)

	sqlPurgeOTT = def(`DELETE FROM one_time_tokens WHERE hash IN (SELECT hash FROM one_time_tokens
		WHERE expires_at < $1 LIMIT $2)`)
	sqlPurgeLoginSessions = def(`DELETE FROM login_sessions WHERE hash IN (SELECT hash FROM login_sessions
		WHERE expires_at < $1 LIMIT $2)`)
	sqlPurgeRevokedTokens = def(`DELETE FROM revoked_tokens WHERE jti IN (SELECT jti FROM revoked_tokens
		WHERE expires_at < $1 LIMIT $2)`)
)

func scanOTT(sc scanner) (*store.OneTimeToken, error) {
	var t store.OneTimeToken
	var created, expires int64
	var used sql.NullInt64
	err := sc.Scan(&t.Hash, &t.TenantID, &t.UserID, &t.ApplicationID, &t.Purpose, &t.AuditData,
		&created, &expires, &used)
	if err != nil {
		return nil, err
	}
	t.CreatedAt, t.ExpiresAt, t.UsedAt = fromMs(created), fromMs(expires), fromNullMs(used)
	return &t, nil
}

// CreateOneTimeToken stores t.
func (q *queries) CreateOneTimeToken(ctx context.Context, t *store.OneTimeToken) error {
	t.CreatedAt, t.ExpiresAt, t.UsedAt = truncMs(t.CreatedAt), truncMs(t.ExpiresAt), truncMsPtr(t.UsedAt)
	jsonOrEmpty(&t.AuditData)
	_, err := q.exec(ctx, sqlInsertOTT, t.Hash, t.TenantID, t.UserID, t.ApplicationID, t.Purpose,
		t.AuditData, ms(t.CreatedAt), ms(t.ExpiresAt), nullMs(t.UsedAt))
	return wrap(err, "create one-time token")
}

// GetOneTimeToken finds a token by hash.
func (q *queries) GetOneTimeToken(ctx context.Context, hash []byte) (*store.OneTimeToken, error) {
	t, err := scanOTT(q.queryRow(ctx, false, sqlGetOTT, hash))
	return t, wrap(err, "get one-time token")
}

// RedeemOneTimeToken marks an unused, unexpired token of the purpose (and of the tenant, unless
// tenantID is "") used and returns it.
func (q *queries) RedeemOneTimeToken(ctx context.Context, hash []byte, tenantID, purpose string, now time.Time) (*store.OneTimeToken, error) {
	t, err := scanOTT(q.queryRow(ctx, true, sqlRedeemOTT, ms(now), hash, purpose, tenantID))
	return t, wrap(err, "redeem one-time token")
}

func scanLoginSession(sc scanner) (*store.LoginSession, error) {
	var s store.LoginSession
	var created, expires int64
	var revoked sql.NullInt64
	if err := sc.Scan(&s.Hash, &s.TenantID, &s.UserID, &created, &expires, &revoked); err != nil {
		return nil, err
	}
	s.CreatedAt, s.ExpiresAt, s.RevokedAt = fromMs(created), fromMs(expires), fromNullMs(revoked)
	return &s, nil
}

// CreateLoginSession stores s.
func (q *queries) CreateLoginSession(ctx context.Context, s *store.LoginSession) error {
	s.CreatedAt, s.ExpiresAt, s.RevokedAt = truncMs(s.CreatedAt), truncMs(s.ExpiresAt), truncMsPtr(s.RevokedAt)
	_, err := q.exec(ctx, sqlInsertLoginSession, s.Hash, s.TenantID, s.UserID, ms(s.CreatedAt),
		ms(s.ExpiresAt), nullMs(s.RevokedAt))
	return wrap(err, "create login session")
}

// GetLoginSession finds a session by hash.
func (q *queries) GetLoginSession(ctx context.Context, hash []byte) (*store.LoginSession, error) {
	s, err := scanLoginSession(q.queryRow(ctx, false, sqlGetLoginSession, hash))
	return s, wrap(err, "get login session")
}

// RevokeLoginSession revokes a live session.
func (q *queries) RevokeLoginSession(ctx context.Context, hash []byte, now time.Time) (bool, error) {
	n, err := affected(q.exec(ctx, sqlRevokeLoginSession, hash, ms(now)))
	return n > 0, wrap(err, "revoke login session")
}

// RevokeToken records a revocation, once.
func (q *queries) RevokeToken(ctx context.Context, r *store.RevokedToken) error {
	r.ExpiresAt, r.RevokedAt = truncMs(r.ExpiresAt), truncMs(r.RevokedAt)
	_, err := q.exec(ctx, sqlRevokeToken, r.JTI, r.TenantID, ms(r.ExpiresAt), ms(r.RevokedAt))
	return wrap(err, "revoke token")
}

// IsTokenRevoked reads the revocation table.
func (q *queries) IsTokenRevoked(ctx context.Context, jti string) (bool, error) {
	var n int
	err := q.queryRow(ctx, false, sqlIsTokenRevoked, jti).Scan(&n)
	return n > 0, wrap(err, "is token revoked")
}

// GetTokenSettings returns the tenant's token settings with its hosts.
func (q *queries) GetTokenSettings(ctx context.Context, tenantID string) (*store.TokenSettings, error) {
	s := store.TokenSettings{TenantID: tenantID}
	var targets string
	var updated int64
	err := q.queryRow(ctx, false, sqlGetTokenSettings, tenantID).Scan(&targets, &s.SelfServiceRequireKey, &updated)
	if err != nil {
		return nil, wrap(err, "get token settings")
	}
	s.UpdatedAt = fromMs(updated)
	if err := json.Unmarshal([]byte(targets), &s.RedirectTargets); err != nil {
		return nil, fmt.Errorf("sqlstore: get token settings: redirect targets: %w", err)
	}
	rows, err := q.query(ctx, false, sqlListSelfServiceHosts, tenantID)
	hosts, err := scanAll(rows, err, func(sc scanner) (*string, error) {
		var h string
		return &h, sc.Scan(&h)
	})
	if err != nil {
		return nil, wrap(err, "get token settings: hosts")
	}
	s.SelfServiceHosts = hosts
	return &s, nil
}

// PutTokenSettings replaces the tenant's settings and hosts.
func (q *queries) PutTokenSettings(ctx context.Context, s *store.TokenSettings) error {
	s.UpdatedAt = truncMs(s.UpdatedAt)
	targets := s.RedirectTargets
	if targets == nil {
		targets = []string{}
	}
	raw, err := json.Marshal(targets)
	if err != nil {
		return err
	}
	if _, err := q.exec(ctx, sqlUpsertTokenSettings, s.TenantID, string(raw), s.SelfServiceRequireKey, ms(s.UpdatedAt)); err != nil {
		return wrap(err, "put token settings")
	}
	if _, err := q.exec(ctx, sqlDeleteSelfServiceHosts, s.TenantID); err != nil {
		return wrap(err, "put token settings: hosts")
	}
	for _, h := range s.SelfServiceHosts {
		if _, err := q.exec(ctx, sqlInsertSelfServiceHost, h, s.TenantID); err != nil {
			return wrap(err, "put token settings: host "+h)
		}
	}
	return nil
}

// GetTenantIDByHost maps a self-service host to its tenant.
func (q *queries) GetTenantIDByHost(ctx context.Context, host string) (string, error) {
	var id string
	err := q.queryRow(ctx, false, sqlGetTenantIDByHost, host).Scan(&id)
	return id, wrap(err, "get tenant by host")
}

// GetIAMSettings returns an application's IAM settings.
func (q *queries) GetIAMSettings(ctx context.Context, tenantID, applicationID string) (*store.IAMSettings, error) {
	var s store.IAMSettings
	var updated int64
	err := q.queryRow(ctx, false, sqlGetIAM, tenantID, applicationID).Scan(&s.TenantID, &s.ApplicationID,
		&s.Enabled, &s.IntrospectionURL, &s.ClientID, &s.ClientSecret, &s.RolePath, &s.AllowedRole, &updated)
	if err != nil {
		return nil, wrap(err, "get iam settings")
	}
	s.UpdatedAt = fromMs(updated)
	return &s, nil
}

// PutIAMSettings inserts or replaces an application's IAM settings.
func (q *queries) PutIAMSettings(ctx context.Context, s *store.IAMSettings) error {
	s.UpdatedAt = truncMs(s.UpdatedAt)
	n, err := affected(q.exec(ctx, sqlUpsertIAM, s.TenantID, s.ApplicationID, s.Enabled, s.IntrospectionURL,
		s.ClientID, nullBytes(s.ClientSecret), s.RolePath, s.AllowedRole, ms(s.UpdatedAt)))
	if err == nil && n == 0 { // the application id exists, but in another tenant
		err = sql.ErrNoRows
	}
	return wrap(err, "put iam settings")
}

// DeleteIAMSettings removes an application's IAM settings.
func (q *queries) DeleteIAMSettings(ctx context.Context, tenantID, applicationID string) error {
	n, err := affected(q.exec(ctx, sqlDeleteIAM, tenantID, applicationID))
	if err == nil && n == 0 {
		err = sql.ErrNoRows
	}
	return wrap(err, "delete iam settings")
}

// ClaimUserOTPSlot takes the slot unless it is held.
func (q *queries) ClaimUserOTPSlot(ctx context.Context, s *store.UserOTPSlot, now time.Time) (bool, error) {
	s.ExpiresAt = truncMs(s.ExpiresAt)
	n, err := affected(q.exec(ctx, sqlClaimUserOTP, s.TenantID, s.UserID, s.Purpose, s.ChallengeID, ms(s.ExpiresAt), ms(now)))
	return n > 0, wrap(err, "claim user otp slot")
}

// ReleaseUserOTPSlot frees the slot if it still holds challengeID.
func (q *queries) ReleaseUserOTPSlot(ctx context.Context, tenantID, userID, purpose, challengeID string) error {
	_, err := q.exec(ctx, sqlReleaseUserOTP, tenantID, userID, purpose, challengeID)
	return wrap(err, "release user otp slot")
}

// GetUserOTPSlot returns the slot of (tenant, user, purpose).
func (q *queries) GetUserOTPSlot(ctx context.Context, tenantID, userID, purpose string) (*store.UserOTPSlot, error) {
	s := store.UserOTPSlot{TenantID: tenantID, UserID: userID, Purpose: purpose}
	var exp int64
	err := q.queryRow(ctx, false, sqlGetUserOTP, tenantID, userID, purpose).Scan(&s.ChallengeID, &exp)
	if err != nil {
		return nil, wrap(err, "get user otp slot")
	}
	s.ExpiresAt = fromMs(exp)
	return &s, nil
}

// PurgeTokens deletes expired tokens, sessions and revocation records in batches.
func (q *queries) PurgeTokens(ctx context.Context, p store.TokenPurge) (int64, error) {
	batch := limit(p.Batch, 1000, 5000)
	var total int64
	for _, query := range []string{sqlPurgeOTT, sqlPurgeLoginSessions, sqlPurgeRevokedTokens} {
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			n, err := affected(q.exec(ctx, query, ms(p.Before), batch))
			total += n
			if err != nil {
				return total, wrap(err, "purge tokens")
			}
			if n < int64(batch) {
				break
			}
		}
	}
	return total, nil
}
