package store

import (
	"context"
	"time"
)

// Template statuses (BSG's otp_template_status).
const (
	TemplateRequested = "requested"
	TemplateApproved  = "approved"
	TemplateRejected  = "rejected"
	TemplateDeleted   = "deleted"
)

// Template is a tenant's message template for verification codes. Text holds the {code2fa}
// placeholder exactly once. ID is a small integer (BSG's template_id), assigned by the store from
// a deployment-wide sequence and never reused.
type Template struct {
	ID        int64
	TenantID  string
	Name      string
	Text      string
	Countries []string // ISO 3166 alpha-2; empty = every country
	Status    string
	Default   bool // the tenant's default template: always approved, never deleted
	CreatedAt time.Time
	UpdatedAt time.Time
	Version   int64
}

// TemplateFilter selects templates of one tenant. Sort is one of template_id (default), status,
// name, updated_at; ties are broken by id.
type TemplateFilter struct {
	IDs    []int64
	Status string
	Sort   string
	Desc   bool
	Offset int
	Limit  int // default 10, at most 500
}

// Price is one entry of a tenant's price table: what one message on Channel to Country costs, as
// a decimal string in the tenant's currency.
type Price struct {
	TenantID  string
	Channel   string
	Country   string // ISO 3166 alpha-2
	Price     string
	UpdatedAt time.Time
}

// MessagingSettings is a tenant's messaging policy overrides as a JSON object (the engine owns the
// format). Version 0 means "not stored yet".
type MessagingSettings struct {
	TenantID  string
	Settings  string
	UpdatedAt time.Time
	Version   int64
}

// MessagingSession marks a challenge as a BSG session and holds what otp_list filters and sorts
// on besides the challenge's own columns.
type MessagingSession struct {
	TenantID    string
	ChallengeID string
	CountryCode string
	CreatedAt   time.Time // the challenge's creation time
}

// MessagingSessionFilter selects BSG sessions of one tenant created in [From, To). Sort is one
// of id (default), status, channel, recipient, created_at, finished_at, country_code; ties are
// broken by id in the same direction. Unfinished sessions sort after finished ones by
// finished_at (they finish later).
type MessagingSessionFilter struct {
	From, To    time.Time
	IDs         []string
	Status      string
	Channel     string
	Recipient   string
	CountryCode string
	Sort        string
	Desc        bool
	Offset      int
	Limit       int // default 10, at most 500
}

// SessionRow is a challenge with its BSG session data.
type SessionRow struct {
	Challenge
	CountryCode string
}

// NumberedMessage is an outbox message with its deployment-wide numeric id (BSG's
// messages[].id), assigned by the database when the message is inserted.
type NumberedMessage struct {
	Num int64
	Message
}

// DailyCount asks to add Count events and Amount (billionths of a currency unit) to a per-day
// counter, unless that would take the day's totals over CapCount or CapAmount (a cap of 0 means
// no cap on that total).
type DailyCount struct {
	Scope     string // e.g. "dial_code", "spend"
	Key       string
	Day       int64 // days since 1970-01-01 UTC
	Count     int64
	Amount    int64
	CapCount  int64
	CapAmount int64
}

// MessagingQueries is the part of Queries for the BSG surface and its defences: templates, the
// price table, tenant messaging settings, the BSG session index, numbered messages, and daily
// counters.
type MessagingQueries interface {
	// CreateTemplate inserts t and sets t.ID and t.Version (1). ErrAlreadyExists when the tenant
	// has a live (not deleted) template of that name, or already has a default template.
	CreateTemplate(ctx context.Context, t *Template) error
	GetTemplate(ctx context.Context, tenantID string, id int64) (*Template, error)
	// GetDefaultTemplate returns the tenant's default template, ErrNotFound if it has none yet.
	GetDefaultTemplate(ctx context.Context, tenantID string) (*Template, error)
	// UpdateTemplate writes Name, Text, Countries, Status and UpdatedAt if the stored version is
	// still t.Version (else ErrConflict), and bumps t.Version. ErrAlreadyExists on a name clash.
	UpdateTemplate(ctx context.Context, t *Template) error
	// ListTemplates returns one page of the tenant's templates and how many match in all.
	ListTemplates(ctx context.Context, tenantID string, f TemplateFilter) ([]Template, int, error)
	// CountTemplates counts the tenant's templates in a status.
	CountTemplates(ctx context.Context, tenantID, status string) (int, error)

	// PutPrice inserts or replaces a price entry.
	PutPrice(ctx context.Context, p *Price) error
	// DeletePrice removes an entry; ErrNotFound if there was none.
	DeletePrice(ctx context.Context, tenantID, channel, country string) error
	// GetPrice returns an entry; ErrNotFound if there is none.
	GetPrice(ctx context.Context, tenantID, channel, country string) (*Price, error)
	// ListPrices returns the tenant's entries ordered by channel, then country.
	ListPrices(ctx context.Context, tenantID string) ([]Price, error)

	// GetMessagingSettings returns the tenant's stored settings; ErrNotFound if none are stored.
	GetMessagingSettings(ctx context.Context, tenantID string) (*MessagingSettings, error)
	// PutMessagingSettings inserts s when s.Version is 0 (ErrConflict if a row appeared
	// meanwhile), otherwise writes it if the stored version is still s.Version (else
	// ErrConflict); it bumps s.Version.
	PutMessagingSettings(ctx context.Context, s *MessagingSettings) error

	// CreateMessagingSession marks a challenge of the tenant as a BSG session.
	CreateMessagingSession(ctx context.Context, s *MessagingSession) error
	// GetMessagingSession returns the BSG data of a challenge; ErrNotFound if it is not a BSG
	// session of the tenant.
	GetMessagingSession(ctx context.Context, tenantID, challengeID string) (*MessagingSession, error)
	// ListMessagingSessions returns one page of the tenant's BSG sessions and how many match.
	ListMessagingSessions(ctx context.Context, tenantID string, f MessagingSessionFilter) ([]SessionRow, int, error)
	// CountPendingChallenges counts the tenant's challenges of the application for the recipient
	// that are pending and not past their lifetime at now. Inside InTx it also serialises callers
	// asking about the same (tenant, application, recipient) until the transaction ends (an
	// advisory lock on PostgreSQL; SQLite's single writer already does), so "count, then create"
	// cannot be raced.
	CountPendingChallenges(ctx context.Context, tenantID, applicationID, recipient string, now time.Time) (int, error)
	// ListNumberedMessages returns the messages of the given challenges of the tenant, oldest
	// first, with their numeric ids.
	ListNumberedMessages(ctx context.Context, tenantID string, challengeIDs []string) ([]NumberedMessage, error)

	// AddDailyCount adds c to its day's counter unless a cap would be exceeded, and reports
	// whether it did; the check and the addition are one conditional statement, so concurrent
	// callers (also on several instances) never overshoot a cap. Counters of earlier days of the
	// same tenant, scope and key are deleted when a new day's counter starts.
	AddDailyCount(ctx context.Context, tenantID string, c DailyCount) (bool, error)
}
