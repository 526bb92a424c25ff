// Package store defines otpd's persistent entities, the small interfaces the engine uses to read
// and change them, and the sentinel errors every backend returns. It holds no business rules:
// the engine decides, the store applies decisions atomically.
//
// All times are stored as Unix milliseconds and handed over as time.Time in UTC. Every method
// takes the tenant it acts for; no method reads or writes across tenants except the purge and
// the outbox claim, which are operator work.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Backends wrap them with %w; callers test with errors.Is.
var (
	// ErrNotFound: no row with that key in that tenant.
	ErrNotFound = errors.New("store: not found")
	// ErrAlreadyExists: a unique key is taken.
	ErrAlreadyExists = errors.New("store: already exists")
	// ErrConflict: a conditional update matched no row because the row changed since it was read.
	ErrConflict = errors.New("store: conflict")
	// ErrInvalidText: a text argument is not valid UTF-8 or holds a NUL byte, which PostgreSQL
	// cannot store; both backends refuse it alike, before the database sees it.
	ErrInvalidText = errors.New("store: text is not valid UTF-8 or holds a NUL byte")
)

// Challenge statuses.
const (
	StatusPending  = "pending"
	StatusVerified = "verified"
	StatusFailed   = "failed"
	StatusCanceled = "canceled"
	StatusExpired  = "expired"
)

// Delivery states of a challenge (summary of its latest message).
const (
	DeliveryNone   = ""       // nothing to deliver (channel none)
	DeliveryQueued = "queued" // waiting in the outbox
	DeliverySent   = "sent"   // handed to a provider
	DeliveryFailed = "failed" // the outbox gave up
)

// Message statuses (SPEC.md §1 Message, plus "sending" while leased by a worker).
const (
	MsgQueued      = "queued"
	MsgSending     = "sending"
	MsgSent        = "sent"
	MsgAccepted    = "accepted"
	MsgDelivered   = "delivered"
	MsgUndelivered = "undelivered"
	MsgFailed      = "failed"
)

// API key roles.
const (
	RoleAdmin = "admin"
	RoleApp   = "app"
)

// Tenant is the isolation boundary.
type Tenant struct {
	ID        string
	Name      string
	Settings  string // JSON object
	CreatedAt time.Time
}

// Application is an API client of a tenant.
type Application struct {
	ID               string
	TenantID         string
	Name             string
	ClientID         string
	ClientSecretHash []byte
	Settings         string // JSON object
	CreatedAt        time.Time
}

// APIKey is a credential. The key itself is never stored: only ID (public) and SecretHash.
type APIKey struct {
	ID            string
	TenantID      string
	ApplicationID string // empty for tenant admin keys
	Role          string
	SecretHash    []byte
	CreatedAt     time.Time
	RevokedAt     *time.Time
}

// User is an end user of a tenant.
type User struct {
	ID         string
	TenantID   string
	Login      string
	Email      string
	Phone      string
	ExternalID string
	FirstName  string
	LastName   string
	Language   string
	Enabled    bool
	Role       string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	Version    int64
}

// Challenge is a verification session.
type Challenge struct {
	ID            string
	TenantID      string
	ApplicationID string
	Channel       string
	Recipient     string // normalised
	Purpose       string
	CodeHash      []byte // keys.HashCode output (self-describing: carries its key id)
	CodeLength    int
	Status        string
	Attempts      int // tries used; only ever grows
	MaxAttempts   int
	Sends         int
	MaxSends      int
	LastSentAt    time.Time
	TTL           time.Duration
	Delivery      string
	UserID        string
	DeviceID      string // the OTP device an SMS/EMAIL challenge belongs to
	// Handle is a dialect's own lookup key for the session, unique per tenant when set (e.g.
	// OpenIAM's moving factor). Empty for most sessions.
	Handle string
	// Surface is the surface that owns the session ("" = the native API); only it may check,
	// resend or cancel the session.
	Surface    string
	ClientIP   string
	Metadata   string // JSON object, dialect data
	CreatedAt  time.Time
	ExpiresAt  time.Time
	FinishedAt *time.Time
	Version    int64
}

// ChallengeFilter selects challenges of one tenant for listing. Zero fields do not filter.
// Results are ordered by ID descending (newest first); AfterID continues after that id.
type ChallengeFilter struct {
	Status    string
	Recipient string
	Channel   string
	From      time.Time // created_at >= From
	To        time.Time // created_at < To
	AfterID   string
	Limit     int
}

// Message is one outgoing message in the outbox.
type Message struct {
	ID                string
	TenantID          string
	ChallengeID       string
	Channel           string
	Recipient         string
	Body              []byte // sealed by keys.Keyring (carries its key id); nil once final
	Provider          string
	Status            string
	Attempts          int
	MaxAttempts       int
	NextAttemptAt     time.Time
	LeaseUntil        *time.Time
	LeaseOwner        string
	ProviderMessageID string
	LastError         string
	CreatedAt         time.Time
	UpdatedAt         time.Time
	SentAt            *time.Time
	Sender            string // sender id / name shown to the recipient (SMS, Viber)
	// FallbackChannel: when this message finally fails, the same content goes out again on this
	// channel (Viber → SMS). Empty: no fallback.
	FallbackChannel string
	// FallbackSender is the sender of the fallback message (BSG's sender_alt); empty: the
	// provider's default.
	FallbackSender string
	Price          string // decimal, e.g. "0.0642"; empty = unpriced
	Currency       string // ISO 4217
}

// MessageAttempt records one try to hand a message to a provider.
type MessageAttempt struct {
	MessageID  string
	Attempt    int
	Provider   string
	StartedAt  time.Time
	FinishedAt *time.Time
	Outcome    string // started | ok | error
	Error      string
}

// DevMessage is a message the log provider "sent" (the development inbox).
type DevMessage struct {
	ID        string
	TenantID  string
	Channel   string
	Recipient string
	Body      []byte // sealed by keys.Keyring
	CreatedAt time.Time
}

// AuditEvent is an append-only record of a security-relevant action. Never holds a secret.
type AuditEvent struct {
	ID       string
	TenantID string
	At       time.Time
	Actor    string
	Action   string
	Target   string
	Result   string
	IP       string
	Details  string // JSON object
}

// AuditFilter selects a page of audit events. Zero fields do not filter; BeforeID is set with
// BeforeAt (the last event of the previous page).
type AuditFilter struct {
	Action   string
	BeforeAt time.Time
	BeforeID string
	Limit    int
}

// Idempotency remembers which resource a tenant's Idempotency-Key created.
type Idempotency struct {
	TenantID    string
	Key         string
	Fingerprint []byte
	ResourceID  string
	CreatedAt   time.Time
}

// RateLimit is one sliding-window limit: at most Limit events per Window for one key.
type RateLimit struct {
	Scope  string // recipient | ip | application | tenant | …
	Key    string
	Limit  int
	Window time.Duration
}

// PurgePolicy says what the janitor may delete. Rows are deleted only when older than the cutoffs.
type PurgePolicy struct {
	// ExpirePendingBefore: pending challenges whose expires_at is before this become expired
	// (finished_at = expires_at) first, so abandoned sessions age out like finished ones.
	ExpirePendingBefore      time.Time
	ChallengesFinishedBefore time.Time // finished (or expired) before this
	MessagesFinalBefore      time.Time // messages in a final state updated before this
	RateEventsBefore         time.Time
	IdempotencyBefore        time.Time
	DevMessagesBefore        time.Time
	Batch                    int // rows per statement, to avoid long locks
}

// PurgeResult counts deleted rows.
type PurgeResult struct {
	Expired                                                    int64 // pending → expired
	Challenges, Messages, RateEvents, Idempotency, DevMessages int64
}

// Queries is what can be done inside or outside a transaction.
type Queries interface {
	// Tenants
	CreateTenant(ctx context.Context, t *Tenant) error
	GetTenant(ctx context.Context, id string) (*Tenant, error)
	GetTenantByName(ctx context.Context, name string) (*Tenant, error)
	ListTenants(ctx context.Context) ([]Tenant, error)
	CountTenants(ctx context.Context) (int, error)

	// Applications
	CreateApplication(ctx context.Context, a *Application) error
	GetApplication(ctx context.Context, tenantID, id string) (*Application, error)
	// GetApplicationByClientID looks an application up by its OAuth client id across tenants
	// (client authentication needs that).
	GetApplicationByClientID(ctx context.Context, clientID string) (*Application, error)
	ListApplications(ctx context.Context, tenantID string) ([]Application, error)
	// DeleteApplication deletes the application and its API keys.
	DeleteApplication(ctx context.Context, tenantID, id string) error

	// API keys
	CreateAPIKey(ctx context.Context, k *APIKey) error
	// GetAPIKey looks a key up by its public id across tenants (authentication needs that).
	GetAPIKey(ctx context.Context, id string) (*APIKey, error)

	// Users
	CreateUser(ctx context.Context, u *User) error
	GetUser(ctx context.Context, tenantID, id string) (*User, error)
	GetUserByLogin(ctx context.Context, tenantID, login string) (*User, error)
	GetUserByExternalID(ctx context.Context, tenantID, externalID string) (*User, error)
	ListUsers(ctx context.Context, tenantID string, afterID string, limit int) ([]User, error)
	// UpdateUser writes u if its stored version is still u.Version, then bumps the version.
	UpdateUser(ctx context.Context, u *User) error
	DeleteUser(ctx context.Context, tenantID, id string) error

	// Challenges
	CreateChallenge(ctx context.Context, c *Challenge) error
	GetChallenge(ctx context.Context, tenantID, id string) (*Challenge, error)
	// GetChallengeForUpdate reads the row and, where the engine supports it, locks it until the
	// transaction ends. Only meaningful inside InTx.
	GetChallengeForUpdate(ctx context.Context, tenantID, id string) (*Challenge, error)
	// GetChallengeByHandle finds a challenge by its dialect handle.
	GetChallengeByHandle(ctx context.Context, tenantID, handle string) (*Challenge, error)
	// UpdateChallenge writes c if the stored version is still c.Version (else ErrConflict) and
	// sets c.Version to the new version.
	UpdateChallenge(ctx context.Context, c *Challenge) error
	// SetChallengeOutcome writes only Status, Attempts and FinishedAt (the result of a check,
	// an expiry or a cancel) if the stored version is still c.Version, else ErrConflict; it sets
	// c.Version to the new version. It is UpdateChallenge for the hot path: fewer columns to
	// bind and rewrite.
	SetChallengeOutcome(ctx context.Context, c *Challenge) error
	// ExpireChallenges marks the tenant's pending challenges with expires_at <= now as expired
	// (finished_at = expires_at) and returns how many changed.
	ExpireChallenges(ctx context.Context, tenantID string, now time.Time) (int64, error)
	ListChallenges(ctx context.Context, tenantID string, f ChallengeFilter) ([]Challenge, error)

	// Rate limits. TakeRate counts the key's events after now-window (those stamped after now
	// too: another instance's clock may read a moment ahead); if fewer than limit, records one
	// event at now and returns ok. Otherwise returns false and how long until the oldest
	// counted event leaves the window. Call inside InTx so the event commits with the action it
	// allowed.
	TakeRate(ctx context.Context, tenantID string, l RateLimit, now time.Time) (ok bool, retryAfter time.Duration, err error)

	// Idempotency
	// PutIdempotency stores the record; ErrAlreadyExists if the key is taken (then the stored
	// record is returned).
	PutIdempotency(ctx context.Context, r *Idempotency) (*Idempotency, error)

	// Outbox
	CreateMessage(ctx context.Context, m *Message) error
	GetMessage(ctx context.Context, tenantID, id string) (*Message, error)
	ListMessagesByChallenge(ctx context.Context, tenantID, challengeID string) ([]Message, error)

	// Dev inbox
	CreateDevMessage(ctx context.Context, m *DevMessage) error
	// ListDevMessages returns the newest first; recipient "" lists all.
	ListDevMessages(ctx context.Context, tenantID, recipient string, limit int) ([]DevMessage, error)

	// Deployment facts (not a tenant's): a small key/value table.
	// PutMetaIfAbsent stores value under key unless the key exists, and returns the stored value
	// either way, so instances starting together agree on the first writer's value.
	PutMetaIfAbsent(ctx context.Context, key, value string) (string, error)
	// SetMeta stores value under key, replacing any earlier value.
	SetMeta(ctx context.Context, key, value string) error

	// Audit
	CreateAuditEvent(ctx context.Context, e *AuditEvent) error
	ListAuditEvents(ctx context.Context, tenantID string, limit int) ([]AuditEvent, error)
	// PageAuditEvents returns a tenant's events newest first (at, then id, descending), those
	// of one action only when f.Action is set, continuing after (f.BeforeAt, f.BeforeID).
	PageAuditEvents(ctx context.Context, tenantID string, f AuditFilter) ([]AuditEvent, error)

	SigningQueries // signing.go: JWT signing keys

	// Each surface's own entities live in their own file of this package.
	MessagingQueries // messaging.go: templates, prices, tenant messaging policy (BSG)
	ProviderQueries  // providers.go: configured delivery providers (SMS, Viber, voice, email)
	DeviceQueries    // devices.go: OTP devices (TOTP, HOTP, SMS, EMAIL, PIN)
	TokenQueries     // tokens.go: one-time login tokens, OAuth state, user OTPs
}

// Outbox is the worker side of the messages table. Each method is its own transaction.
type Outbox interface {
	// ClaimMessages leases up to limit messages that are queued with next_attempt_at <= now, or
	// sending with an expired lease, to owner until now+lease. It increments attempts, records a
	// "started" attempt row, and returns the claimed messages (with Attempts already counted).
	// Two workers never receive the same message while its lease holds.
	ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Message, error)
	// FinishAttempt records the outcome of the current attempt of a message leased by owner and
	// moves the message to status (a final state, or queued with next_attempt_at for a retry).
	// A final state wipes the sealed body. It also sets the challenge's delivery summary when
	// challengeDelivery is not empty. ErrConflict if the lease was lost.
	FinishAttempt(ctx context.Context, owner string, res AttemptResult) error
	// ListAttempts returns a message's attempts, oldest first.
	ListAttempts(ctx context.Context, messageID string) ([]MessageAttempt, error)
}

// AttemptResult is what a worker reports about one attempt.
type AttemptResult struct {
	MessageID         string
	Attempt           int
	Now               time.Time
	Status            string    // next message status
	NextAttemptAt     time.Time // for a retry
	ProviderMessageID string
	Error             string // short, never a secret, never the provider's raw body
	ChallengeDelivery string // new challenge delivery summary, or "" to leave it
	// Provider names the provider this attempt used (messages.provider and the attempt row);
	// "" leaves what is recorded.
	Provider string
}

// Store is a backend.
type Store interface {
	Queries
	Outbox
	// InTx runs fn in one transaction; fn's error rolls back. fn must not retain q.
	InTx(ctx context.Context, fn func(q Queries) error) error
	// Purge deletes old rows per the policy.
	Purge(ctx context.Context, p PurgePolicy) (PurgeResult, error)
	// Ping checks the database is reachable.
	Ping(ctx context.Context) error
	// Dialect is "sqlite" or "postgres".
	Dialect() string
	Close() error
}
