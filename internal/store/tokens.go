package store

import (
	"context"
	"time"
)

// OneTimeToken is a single-use login token (Acronis /idp/ott). Only the SHA-256 of the token is
// stored; the token itself is shown once, to the API client that asked for it.
type OneTimeToken struct {
	Hash          []byte // SHA-256 of the token
	TenantID      string
	UserID        string
	ApplicationID string // the API client that issued it ("" for an admin key or the operator)
	Purpose       string // user_login | verify
	AuditData     string // JSON object given by the issuer, kept for the audit trail
	CreatedAt     time.Time
	ExpiresAt     time.Time
	UsedAt        *time.Time
}

// LoginSession is an IdP session opened by redeeming a one-time token. Only the SHA-256 of the
// session id (the cookie value) is stored.
type LoginSession struct {
	Hash      []byte
	TenantID  string
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt *time.Time
}

// RevokedToken records that a signed access token (by its "jti") must no longer be accepted.
// ExpiresAt is the token's own expiry: after it, the record may be purged.
type RevokedToken struct {
	JTI       string
	TenantID  string
	ExpiresAt time.Time
	RevokedAt time.Time
}

// TokenSettings are a tenant's settings for the token surfaces.
type TokenSettings struct {
	TenantID string
	// RedirectTargets are the URL prefixes the external-login page may redirect to.
	RedirectTargets []string
	// SelfServiceRequireKey refuses OpenIAM self-service requests without an API key.
	SelfServiceRequireKey bool
	// SelfServiceHosts are the Host names whose key-less self-service requests belong to this
	// tenant. A host belongs to at most one tenant.
	SelfServiceHosts []string
	UpdatedAt        time.Time
}

// IAMSettings are an application's settings for checking a requestor token against the
// customer's IAM by RFC 7662 introspection (Haventec surface). ClientSecret is sealed by the
// keyring with associated data "application_iam:"+ApplicationID; nil when not set.
type IAMSettings struct {
	TenantID         string
	ApplicationID    string
	Enabled          bool
	IntrospectionURL string
	ClientID         string
	ClientSecret     []byte
	RolePath         string
	AllowedRole      string
	UpdatedAt        time.Time
}

// UserOTPSlot holds the one verification session that is a user's OTP for a purpose, until
// ExpiresAt (the session's expiry) or until it is released because the session finished.
type UserOTPSlot struct {
	TenantID    string
	UserID      string
	Purpose     string
	ChallengeID string
	ExpiresAt   time.Time
}

// TokenPurge says which expired token rows the purge may delete: rows whose expiry is before
// Before, at most Batch per statement.
type TokenPurge struct {
	Before time.Time
	Batch  int
}

// TokenQueries is the part of Queries for one-time login tokens, login sessions, revoked access
// tokens, token settings, IAM introspection settings and user OTP slots (issue: Acronis, OpenIAM,
// Haventec).
type TokenQueries interface {
	// CreateOneTimeToken stores t; ErrNotFound if its user is not one of its tenant's,
	// ErrAlreadyExists if the hash is taken.
	CreateOneTimeToken(ctx context.Context, t *OneTimeToken) error
	// GetOneTimeToken finds a token by hash, whatever its tenant (the token names its tenant).
	GetOneTimeToken(ctx context.Context, hash []byte) (*OneTimeToken, error)
	// RedeemOneTimeToken marks the token used — only if it has the purpose, is unused, expires
	// after now and, when tenantID is not "", belongs to that tenant — in one conditional
	// update, and returns it. Of any number of concurrent calls for one token, at most one
	// succeeds; the others, and every call for an unknown, used, expired, other-purpose or
	// other-tenant token, get ErrNotFound (and leave the token as it was).
	RedeemOneTimeToken(ctx context.Context, hash []byte, tenantID, purpose string, now time.Time) (*OneTimeToken, error)

	// CreateLoginSession stores s; ErrNotFound if its user is not one of its tenant's.
	CreateLoginSession(ctx context.Context, s *LoginSession) error
	// GetLoginSession finds a session by hash, whatever its tenant, revoked or expired or not.
	GetLoginSession(ctx context.Context, hash []byte) (*LoginSession, error)
	// RevokeLoginSession sets revoked_at unless already set; it reports whether it changed a row.
	RevokeLoginSession(ctx context.Context, hash []byte, now time.Time) (bool, error)

	// RevokeToken records the revocation; revoking a revoked token again is not an error.
	RevokeToken(ctx context.Context, r *RevokedToken) error
	// IsTokenRevoked reports whether a revocation of jti is recorded. It always reads the
	// database, so a revocation on one instance holds on every instance at once.
	IsTokenRevoked(ctx context.Context, jti string) (bool, error)

	// GetTokenSettings returns the tenant's settings; ErrNotFound when never set.
	GetTokenSettings(ctx context.Context, tenantID string) (*TokenSettings, error)
	// PutTokenSettings replaces the tenant's settings and host list; ErrAlreadyExists if one of
	// the hosts belongs to another tenant. Call inside InTx (it writes two tables).
	PutTokenSettings(ctx context.Context, s *TokenSettings) error
	// GetTenantIDByHost returns the tenant a self-service host belongs to.
	GetTenantIDByHost(ctx context.Context, host string) (string, error)

	// GetIAMSettings returns an application's IAM settings; ErrNotFound when never set.
	GetIAMSettings(ctx context.Context, tenantID, applicationID string) (*IAMSettings, error)
	// PutIAMSettings inserts or replaces s; ErrNotFound if the application is not the tenant's.
	PutIAMSettings(ctx context.Context, s *IAMSettings) error
	// DeleteIAMSettings removes them; ErrNotFound when there were none.
	DeleteIAMSettings(ctx context.Context, tenantID, applicationID string) error

	// ClaimUserOTPSlot points the (tenant, user, purpose) slot at s.ChallengeID until
	// s.ExpiresAt unless the slot is held: its expires_at is after now. It reports whether it
	// did; the check and the write are one statement on the slot row alone, so of concurrent
	// claims at most one succeeds (on PostgreSQL the losers re-check the winner's row).
	// ErrNotFound if the user is not one of the tenant's.
	ClaimUserOTPSlot(ctx context.Context, s *UserOTPSlot, now time.Time) (bool, error)
	// ReleaseUserOTPSlot frees the slot if it still holds challengeID (its session finished).
	ReleaseUserOTPSlot(ctx context.Context, tenantID, userID, purpose, challengeID string) error
	// GetUserOTPSlot returns the slot; ErrNotFound when there is none.
	GetUserOTPSlot(ctx context.Context, tenantID, userID, purpose string) (*UserOTPSlot, error)

	// PurgeTokens deletes one-time tokens, login sessions and revocation records that expired
	// before p.Before, in batches, and returns how many rows it deleted.
	PurgeTokens(ctx context.Context, p TokenPurge) (int64, error)
}
