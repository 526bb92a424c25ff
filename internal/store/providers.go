package store

import (
	"context"
	"time"
)

// Provider roles: per tenant and channel there is at most one primary and one secondary.
const (
	RolePrimary   = "primary"
	RoleSecondary = "secondary"
)

// AttemptInterrupted is the LastError ClaimMessages gives a message whose previous attempt was
// claimed but never recorded (its worker died or lost its lease mid-send). Whether the provider
// got that attempt is unknown, so the next attempt goes to the same provider with the same
// message id, which the provider can recognise as a repeat.
const AttemptInterrupted = "interrupted: the previous attempt did not finish (lease expired); its outcome is unknown"

// Provider is a delivery provider a tenant configured through the API (deployment-wide providers
// come from the configuration file and are not stored).
type Provider struct {
	ID       string
	TenantID string
	Name     string // unique per tenant
	Type     string // http | twilio | smpp
	Channels []string
	Role     string // RolePrimary | RoleSecondary, for every channel of the provider
	Settings string // JSON object; nothing secret
	// Secrets is a JSON object of the provider's secrets, sealed by keys.Keyring with associated
	// data "providers:"+ID. nil when there are none.
	Secrets   []byte
	Enabled   bool
	CreatedAt time.Time
	UpdatedAt time.Time
	Version   int64
}

// ParkedReceipt is a delivery receipt that arrived before its message was known by its provider
// message id (the provider answered the callback faster than the worker recorded the send).
type ParkedReceipt struct {
	Provider          string
	ProviderMessageID string
	TenantID          string // "" for a deployment-wide provider
	Status            string
	Error             string
	At                time.Time
}

// AttemptStart names the provider an attempt is about to use, recorded before the send so that
// an interrupted attempt is known to have gone to that provider.
type AttemptStart struct {
	MessageID string
	Attempt   int
	Provider  string
}

// ProviderQueries is the part of Queries for configured delivery providers (generic HTTP,
// Twilio-compatible, SMPP) and their delivery receipts.
type ProviderQueries interface {
	// CreateProvider stores p and claims its (channel, role) slots. ErrAlreadyExists when the
	// name is taken in the tenant or a channel already has a provider in that role.
	CreateProvider(ctx context.Context, p *Provider) error
	GetProvider(ctx context.Context, tenantID, id string) (*Provider, error)
	// LookupProvider finds a provider by id across tenants: a receipt callback carries only the
	// provider id (and a token the caller checks).
	LookupProvider(ctx context.Context, id string) (*Provider, error)
	// ListProviders returns the tenant's providers by name.
	ListProviders(ctx context.Context, tenantID string) ([]Provider, error)
	// UpdateProvider writes p if its stored version is still p.Version (else ErrConflict), moves
	// its (channel, role) slots along, and bumps p.Version. ErrAlreadyExists as for create.
	UpdateProvider(ctx context.Context, p *Provider) error
	// DeleteProvider deletes the provider and frees its slots.
	DeleteProvider(ctx context.Context, tenantID, id string) error
	// ProviderChannels lists every channel some tenant's provider serves.
	ProviderChannels(ctx context.Context) ([]string, error)

	// FindMessageByProviderID finds the message a provider knows as providerMessageID. tenantID
	// "" searches every tenant (a deployment-wide provider's receipts).
	FindMessageByProviderID(ctx context.Context, tenantID, provider, providerMessageID string) (*Message, error)
	// SetMessageStatus moves a message from status from to status to (a receipt), if it is still
	// in from (else ErrConflict); wipe drops its sealed body.
	SetMessageStatus(ctx context.Context, tenantID, id, from, to string, now time.Time, wipe bool) error
	// SetChallengeDelivery sets a challenge's delivery summary (and bumps its version).
	SetChallengeDelivery(ctx context.Context, tenantID, challengeID, delivery string) error
	// ParkReceipt keeps a receipt whose message is not known yet, and forgets parked receipts
	// older than an hour.
	ParkReceipt(ctx context.Context, r *ParkedReceipt) error
	// TakeParkedReceipts removes and returns the receipts parked for one provider message id.
	TakeParkedReceipts(ctx context.Context, provider, providerMessageID string) ([]ParkedReceipt, error)
	// FinishAttemptTx is Outbox.FinishAttempt inside the caller's transaction, for outcomes
	// recorded together with other writes (a fallback message enqueued as the original fails).
	FinishAttemptTx(ctx context.Context, owner string, res AttemptResult) error
}

// AttemptRecorder is implemented by outboxes that can record an attempt's provider before the
// send (the worker uses it when present).
type AttemptRecorder interface {
	// StartAttempts records, for messages leased by owner, which provider their current attempt
	// uses, and returns the ids of the messages it recorded; entries whose lease or attempt no
	// longer match are skipped (and must not be sent).
	StartAttempts(ctx context.Context, owner string, starts []AttemptStart) ([]string, error)
}
