// Package deliver hands outgoing messages to providers. The engine writes messages into the
// outbox (the messages table) in the same transaction as the challenge they belong to; the Worker
// in this package claims them, opens the sealed body, sends through the provider its Router picks
// (the route's primary, or the secondary after a failed attempt), and records every attempt with
// its provider, retrying with backoff up to a bound.
//
// Provider types (smshttp, twilio, smpp) register themselves with RegisterProviderType; a
// CachedRouter builds their Senders from configurations and keeps them. Providers that report
// deliveries implement ReceiptParser (HTTP callbacks) or hand Receipts to their configuration's
// OnReceipt (SMPP); the engine records them.
package deliver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Content is the plaintext of a message. It is sealed (keys.Keyring, associated data = the
// message id) before it is stored in the outbox, because it contains a code.
type Content struct {
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text"`
	HTML    string `json:"html,omitempty"`
}

// Message is what a Sender sends.
type Message struct {
	ID       string // outbox message id; providers get it as an idempotency key / Message-ID
	TenantID string
	Channel  string // email, sms, …
	To       string
	// Sender is the sender id shown to the recipient (SMS, Viber); empty: the provider's default.
	Sender string
	Content
}

// Sender delivers messages on one channel through one provider.
type Sender interface {
	// Name identifies the provider in attempts, metrics and logs.
	Name() string
	// Send delivers m. It returns the provider's message id when there is one. An error wrapped
	// with Permanent is not retried.
	Send(ctx context.Context, m Message) (providerID string, err error)
}

// permanentError marks errors that retrying cannot fix (bad address, rejected by policy).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err so the worker does not retry it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err (or an error it wraps) was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// ErrNoSender is returned when no Sender is configured for a channel.
var ErrNoSender = errors.New("deliver: no provider configured for channel")

// Registry maps channels to Senders: one provider per channel, for every tenant. It is the
// simplest Router.
type Registry map[string]Sender

// For returns the Sender of a channel.
func (r Registry) For(channel string) (Sender, error) {
	s, ok := r[channel]
	if !ok || s == nil {
		return nil, fmt.Errorf("%w %q", ErrNoSender, channel)
	}
	return s, nil
}

// Route returns the channel's one Sender.
func (r Registry) Route(_ context.Context, _, channel string) ([]Sender, error) {
	s, err := r.For(channel)
	if err != nil {
		return nil, err
	}
	return []Sender{s}, nil
}

// Router picks the providers of a tenant's messages on a channel: the primary first, then the
// secondary when there is one. Names of the Senders of one route differ.
type Router interface {
	Route(ctx context.Context, tenantID, channel string) ([]Sender, error)
}

// Receipt is what a provider reports about a message it accepted.
type Receipt struct {
	// ProviderMessageID is the provider's id of the message (what Send returned).
	ProviderMessageID string
	// Status is one of store.MsgAccepted, MsgDelivered, MsgUndelivered, MsgFailed (or MsgSent).
	Status string
	// Error is the provider's short error code, if it gave one (never a message text).
	Error string
}

// ReceiptParser is implemented by Senders whose provider reports deliveries by calling back
// otpd over HTTP (POST /v1/receipts/{provider}). It reads one callback request; statuses it does
// not know are left out.
type ReceiptParser interface {
	ParseReceipts(contentType string, query url.Values, body []byte) ([]Receipt, error)
}

// ReceiptReporter is implemented by Senders that can learn of deliveries, by callback or on
// their own connection (SMPP deliver_sm). The worker asks for receipts that arrived before it
// recorded the send only for these.
type ReceiptReporter interface {
	ReportsReceipts() bool
}

// ProviderConfig is a configured provider as its type's Factory sees it.
type ProviderConfig struct {
	// ID names the provider in messages, attempts, metrics and receipt callbacks: the id from the
	// configuration file, or the API provider's UUID. The Sender's Name returns it.
	ID       string
	Type     string
	Channels []string
	// Settings is the type's JSON object of non-secret settings; types decode it strictly.
	Settings json.RawMessage
	// Secrets are the provider's secrets in plaintext (held only in memory).
	Secrets map[string]string
	// ReceiptURL is the absolute URL of the provider's receipt callback, token included, when
	// the deployment knows its public address; empty otherwise.
	ReceiptURL string
	// OnReceipt receives the receipts a Sender learns on its own connection (SMPP).
	OnReceipt func(ctx context.Context, r Receipt)
	// Logger gets the provider's connection events; never a message text.
	Logger *slog.Logger
	// RestrictDestinations makes the provider refuse to connect to addresses that are not
	// public (loopback, private, link-local, CGNAT, …; see CheckDestination), checked on the
	// resolved address of every connection. Set for tenants' providers unless the operator
	// allows private destinations; never for the configuration file's.
	RestrictDestinations bool
}

// Factory builds a Sender from its configuration. It validates the settings and secrets (errors
// name the offending setting, never a secret's value) and must not contact the provider: a
// connection is made on the first Send.
type Factory func(cfg ProviderConfig) (Sender, error)

// ProviderType is a kind of provider (generic HTTP, Twilio, SMPP).
type ProviderType struct {
	Name string
	// Channels are the channels the type can deliver.
	Channels []string
	New      Factory
}

var (
	typesMu sync.RWMutex
	types   = map[string]ProviderType{}
)

// RegisterProviderType makes a provider type known; provider packages call it from init, so a
// binary supports the types whose packages it imports. Registering a name twice panics.
func RegisterProviderType(t ProviderType) {
	typesMu.Lock()
	defer typesMu.Unlock()
	if _, dup := types[t.Name]; dup || t.Name == "" || t.New == nil {
		panic("deliver: provider type " + strconv.Quote(t.Name) + " registered twice or incomplete")
	}
	types[t.Name] = t
}

// LookupProviderType returns a registered provider type.
func LookupProviderType(name string) (ProviderType, bool) {
	typesMu.RLock()
	defer typesMu.RUnlock()
	t, ok := types[name]
	return t, ok
}

// ProviderTypeNames lists the registered provider types, sorted.
func ProviderTypeNames() []string {
	typesMu.RLock()
	defer typesMu.RUnlock()
	out := make([]string, 0, len(types))
	for n := range types {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// NewSender builds a Sender of a registered type, after checking that the type serves every
// channel of cfg.
func NewSender(cfg ProviderConfig) (Sender, error) {
	t, ok := LookupProviderType(cfg.Type)
	if !ok {
		return nil, fmt.Errorf("unknown provider type %q (known: %s)", cfg.Type, strings.Join(ProviderTypeNames(), ", "))
	}
	for _, c := range cfg.Channels {
		if !slices.Contains(t.Channels, c) {
			return nil, fmt.Errorf("provider type %s cannot deliver channel %q (it serves %s)", t.Name, c, strings.Join(t.Channels, ", "))
		}
	}
	return t.New(cfg)
}

// DecodeSettings decodes a provider's JSON settings into dst strictly: unknown settings, wrong
// types and trailing data are errors that name the setting. Empty settings decode as {}.
func DecodeSettings(raw json.RawMessage, dst any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typ):
			return fmt.Errorf("setting %q has the wrong type (want %s)", typ.Field, typ.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("unknown setting %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return fmt.Errorf("settings are not a valid JSON object: %w", err)
	}
	if dec.More() {
		return errors.New("settings: trailing data after the JSON object")
	}
	return nil
}

// Duration is a time.Duration written as a Go duration string ("10s", "1m30s") in settings.
type Duration time.Duration

// UnmarshalJSON reads "10s" (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err := json.Unmarshal(b, &secs); err != nil {
			return errors.New(`a duration is a string like "10s"`)
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// RouteSource lists a tenant's configured routes: for each channel, its providers in order
// (primary first).
type RouteSource func(ctx context.Context, tenantID string) (map[string][]ProviderConfig, error)

// CachedRouter is the Router of configured providers. It asks Source for a tenant's routes at
// most once per TTL, builds each provider's Sender once and keeps it while its configuration
// stays the same (an SMPP bind is reused), and routes channels without a configured provider to
// Builtin (SMTP, the log provider).
type CachedRouter struct {
	Source  RouteSource
	Builtin Registry
	// TTL is how long a tenant's routes are reused before Source is asked again; a change made
	// on another instance takes effect within it. Default 5s.
	TTL time.Duration

	mu      sync.Mutex
	tenants map[string]cachedRoutes
	senders map[string]builtSender // by provider id
}

type cachedRoutes struct {
	at     time.Time
	routes map[string][]Sender
}

type builtSender struct {
	fingerprint [32]byte
	sender      Sender
}

// Route returns the tenant's providers for channel.
func (r *CachedRouter) Route(ctx context.Context, tenantID, channel string) ([]Sender, error) {
	ttl := r.TTL
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	r.mu.Lock()
	c, ok := r.tenants[tenantID]
	r.mu.Unlock()
	if !ok || time.Since(c.at) > ttl {
		routes, err := r.load(ctx, tenantID)
		if err != nil {
			return nil, err
		}
		c = cachedRoutes{at: time.Now(), routes: routes}
		r.mu.Lock()
		if r.tenants == nil {
			r.tenants = map[string]cachedRoutes{}
		}
		r.tenants[tenantID] = c
		r.mu.Unlock()
	}
	if s := c.routes[channel]; len(s) > 0 {
		return s, nil
	}
	return r.Builtin.Route(ctx, tenantID, channel)
}

func (r *CachedRouter) load(ctx context.Context, tenantID string) (map[string][]Sender, error) {
	if r.Source == nil {
		return nil, nil
	}
	cfgs, err := r.Source(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]Sender, len(cfgs))
	for channel, list := range cfgs {
		for _, cfg := range list {
			s, err := r.sender(cfg)
			if err != nil {
				return nil, fmt.Errorf("provider %s: %w", cfg.ID, err)
			}
			out[channel] = append(out[channel], s)
		}
	}
	return out, nil
}

// sender returns the built Sender of cfg, building it when new or changed.
func (r *CachedRouter) sender(cfg ProviderConfig) (Sender, error) {
	fp := fingerprint(cfg)
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.senders[cfg.ID]; ok && b.fingerprint == fp {
		return b.sender, nil
	}
	s, err := NewSender(cfg)
	if err != nil {
		return nil, err
	}
	if r.senders == nil {
		r.senders = map[string]builtSender{}
	}
	if old, ok := r.senders[cfg.ID]; ok {
		closeQuietly(old.sender) // its configuration changed
	}
	r.senders[cfg.ID] = builtSender{fingerprint: fp, sender: s}
	return s, nil
}

// Invalidate forgets a tenant's routes; the next message asks Source again.
func (r *CachedRouter) Invalidate(tenantID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.tenants, tenantID)
}

// Close closes the Senders it built (SMPP binds).
func (r *CachedRouter) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, b := range r.senders {
		closeQuietly(b.sender)
		delete(r.senders, id)
	}
	r.tenants = nil
	return nil
}

func closeQuietly(s Sender) {
	if c, ok := s.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// fingerprint identifies a provider configuration (not its receipt handler).
func fingerprint(cfg ProviderConfig) [32]byte {
	b, _ := json.Marshal(struct {
		Type       string
		Channels   []string
		Settings   json.RawMessage
		Secrets    map[string]string
		ReceiptURL string
		Restrict   bool
	}{cfg.Type, cfg.Channels, cfg.Settings, cfg.Secrets, cfg.ReceiptURL, cfg.RestrictDestinations})
	return sha256.Sum256(b)
}
