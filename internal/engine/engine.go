// Package engine holds every rule of otpd (SPEC.md §1) once: verification sessions with their
// lifetime, try budget, resend rules and single success; send limits; credentials and tenancy;
// the purge of old rows. Surfaces (the native API, the vendor dialects, the CLI) only translate
// their wire formats into calls of this package and map its errors to their own.
//
// Time comes from an injected clock.Clock and randomness from crypto/rand, so every rule can be
// tested without sleeping.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
)

// Limit is a sliding-window send limit: at most Count sends per Window. Count 0 disables it.
type Limit struct {
	Count  int           `yaml:"count" json:"count"`
	Window time.Duration `yaml:"window" json:"window"`
}

// Limits are the send limits that protect recipients and budgets (SECURITY.md 26).
type Limits struct {
	Recipient   Limit `yaml:"recipient"`
	IP          Limit `yaml:"ip"`
	Application Limit `yaml:"application"`
	Tenant      Limit `yaml:"tenant"`
}

// Config is the engine's policy. Zero values take the defaults of DefaultConfig.
type Config struct {
	CodeLength     int           `yaml:"code_length"`     // default digits of a code (6)
	TTL            time.Duration `yaml:"ttl"`             // default session lifetime (5m)
	MaxTTL         time.Duration `yaml:"max_ttl"`         // cap on a requested lifetime (10m)
	MaxAttempts    int           `yaml:"max_attempts"`    // default try budget (5)
	MaxSends       int           `yaml:"max_sends"`       // sends per session incl. the first (5)
	ResendCooldown time.Duration `yaml:"resend_cooldown"` // between two sends of one session (30s)
	Limits         Limits        `yaml:"limits"`
	// Retention is how long finished sessions, final messages and the dev inbox are kept.
	Retention time.Duration `yaml:"retention"`
	// MessageAttempts bounds delivery attempts per message (used when enqueueing).
	MessageAttempts int `yaml:"message_attempts"`

	// Each surface family's policy lives in its own file.
	Messaging MessagingPolicy `yaml:"messaging"` // messaging.go
	Devices   DevicePolicy    `yaml:"devices"`   // devices.go
	Tokens    TokenPolicy     `yaml:"tokens"`    // tokens.go
}

// Bounds on what a caller may ask for. Codes shorter than 6 digits are refused (SECURITY.md 6).
const (
	MinCodeLength  = 6
	MaxCodeLength  = 10
	MinTTL         = 30 * time.Second
	HardMaxTTL     = 10 * time.Minute
	MaxMaxAttempts = 10
)

// DefaultConfig returns the defaults documented in docs/configuration.md.
func DefaultConfig() Config {
	return Config{
		CodeLength:     6,
		TTL:            5 * time.Minute,
		MaxTTL:         10 * time.Minute,
		MaxAttempts:    5,
		MaxSends:       5,
		ResendCooldown: 30 * time.Second,
		Limits: Limits{
			Recipient:   Limit{Count: 5, Window: 10 * time.Minute},
			IP:          Limit{Count: 25, Window: 5 * time.Minute},
			Application: Limit{Count: 0, Window: time.Minute},
			Tenant:      Limit{Count: 0, Window: time.Hour},
		},
		Retention:       7 * 24 * time.Hour,
		MessageAttempts: 5,
		Messaging:       MessagingPolicy{}.withDefaults(),
		Devices:         DevicePolicy{}.withDefaults(),
		Tokens:          TokenPolicy{}.withDefaults(),
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.CodeLength == 0 {
		c.CodeLength = d.CodeLength
	}
	if c.TTL == 0 {
		c.TTL = d.TTL
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = d.MaxTTL
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.MaxSends == 0 {
		c.MaxSends = d.MaxSends
	}
	if c.ResendCooldown == 0 {
		c.ResendCooldown = d.ResendCooldown
	}
	if c.Limits == (Limits{}) {
		c.Limits = d.Limits
	}
	if c.Retention == 0 {
		c.Retention = d.Retention
	}
	if c.MessageAttempts == 0 {
		c.MessageAttempts = d.MessageAttempts
	}
	c.Messaging = c.Messaging.withDefaults()
	c.Devices = c.Devices.withDefaults()
	c.Tokens = c.Tokens.withDefaults()
	return c
}

// Validate reports policy values outside what otpd allows.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.CodeLength < MinCodeLength || c.CodeLength > MaxCodeLength {
		errs = append(errs, fmt.Errorf("code_length must be %d–%d", MinCodeLength, MaxCodeLength))
	}
	if c.MaxTTL < MinTTL || c.MaxTTL > HardMaxTTL {
		errs = append(errs, fmt.Errorf("max_ttl must be between %s and %s", MinTTL, HardMaxTTL))
	}
	if c.TTL < MinTTL || c.TTL > c.MaxTTL {
		errs = append(errs, fmt.Errorf("ttl must be between %s and max_ttl (%s)", MinTTL, c.MaxTTL))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > MaxMaxAttempts {
		errs = append(errs, fmt.Errorf("max_attempts must be 1–%d", MaxMaxAttempts))
	}
	if c.MaxSends < 1 || c.MaxSends > 10 {
		errs = append(errs, errors.New("max_sends must be 1–10"))
	}
	if c.ResendCooldown < 0 {
		errs = append(errs, errors.New("resend_cooldown must not be negative"))
	}
	for name, l := range map[string]Limit{"recipient": c.Limits.Recipient, "ip": c.Limits.IP,
		"application": c.Limits.Application, "tenant": c.Limits.Tenant} {
		if l.Count < 0 || (l.Count > 0 && l.Window <= 0) {
			errs = append(errs, fmt.Errorf("limits.%s: count must be ≥ 0 and window > 0", name))
		}
	}
	if c.Retention < time.Hour {
		errs = append(errs, errors.New("retention must be at least 1h"))
	}
	if c.MessageAttempts < 1 || c.MessageAttempts > 20 {
		errs = append(errs, errors.New("message_attempts must be 1–20"))
	}
	errs = append(errs, c.Messaging.validate()...)
	errs = append(errs, c.Devices.validate()...)
	errs = append(errs, c.Tokens.validate()...)
	return errors.Join(errs...)
}

// Engine applies otpd's rules over a store.
type Engine struct {
	store    store.Store
	keys     *keys.Keyring
	clock    clock.Clock
	cfg      Config
	log      *slog.Logger
	channels map[string]bool // channels with a delivery provider
	notify   func()          // wakes the outbox worker after a commit that enqueued mail
	metrics  *Metrics
	signer   signer // JWT signing keys (signing.go)
	// access tokens whose signature was checked (oauth.go)
	accessTokens accessTokenCache
	// configured delivery providers (providers.go)
	delivery deliveryState
	// checked BSG bearer tokens (bsg_auth.go)
	bsgTokens verifiedTokens
}

// Options wires an Engine.
type Options struct {
	Store  store.Store
	Keys   *keys.Keyring
	Clock  clock.Clock // default clock.Real
	Config Config
	Logger *slog.Logger
	// Channels lists the channels that have a delivery provider (e.g. "email"). Channel "none"
	// is always available.
	Channels []string
	// Notify is called after a transaction that enqueued a message commits.
	Notify  func()
	Metrics *Metrics
	// Delivery describes the deployment's delivery providers (providers.go).
	Delivery DeliveryOptions
}

// New returns an Engine.
func New(o Options) (*Engine, error) {
	if o.Store == nil || o.Keys == nil {
		return nil, errors.New("engine: store and keys are required")
	}
	cfg := o.Config.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("engine config: %w", err)
	}
	e := &Engine{store: o.Store, keys: o.Keys, clock: o.Clock, cfg: cfg, log: o.Logger,
		channels: map[string]bool{ChannelNone: true}, notify: o.Notify, metrics: o.Metrics}
	e.delivery = newDelivery(o.Delivery)
	if e.clock == nil {
		e.clock = clock.Real{}
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.notify == nil {
		e.notify = func() {}
	}
	for _, c := range o.Channels {
		e.channels[c] = true
	}
	return e, nil
}

// Config returns the effective policy.
func (e *Engine) Config() Config { return e.cfg }

// Store returns the engine's store (for the app's wiring of workers, not for surfaces).
func (e *Engine) Store() store.Store { return e.store }

// Now returns the engine's current time.
func (e *Engine) Now() time.Time { return e.clock.Now() }

// newID returns a time-ordered UUIDv7.
func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// uuid.NewV7 only fails when crypto/rand fails; nothing sensible can continue.
		panic(fmt.Sprintf("engine: uuid: %v", err))
	}
	return id.String()
}

// inTx runs fn in a transaction and retries a few times when a conditional update lost a race.
func (e *Engine) inTx(ctx context.Context, fn func(q store.Queries) error) error {
	var err error
	for range 3 {
		err = e.store.InTx(ctx, fn)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return err
}

// audit records an event in q. Details must never contain a secret. Routine outcomes that the
// session row itself records (a send, a success) are not audited; refusals by a limit, spent try
// budgets, cancellations and every change to tenants, applications and users are.
func (e *Engine) audit(ctx context.Context, q store.Queries, p Principal, action, target, result, ip string) error {
	return q.CreateAuditEvent(ctx, &store.AuditEvent{
		ID: newID(), TenantID: p.TenantID, At: e.clock.Now(), Actor: p.actor(),
		Action: action, Target: target, Result: result, IP: ip, Details: "{}",
	})
}
