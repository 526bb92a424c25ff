package engine

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
)

// Delivery providers: the deployment's, from the configuration file, and each tenant's own,
// managed through the API. The rules:
//
//   - A channel is offered when the deployment serves it (a configured provider, SMTP, the log
//     provider, or an operator listing it); a tenant may bring its own provider only for an
//     offered channel.
//   - For a tenant's message on a channel, the tenant's enabled providers for that channel are
//     the route when it has any; otherwise the deployment's. A route is the primary, then the
//     secondary (failover is the outbox worker's).
//   - Per tenant (or in the configuration file) a channel has at most one primary and one
//     secondary provider; the database's unique key keeps it so under races.
//   - Secrets are sealed at rest (associated data "providers:"+id) and never shown again: reads
//     mask them. Each provider has a receipt token, generated unless given, that authenticates
//     its delivery-receipt callbacks (compared in constant time).

// Provider sources.
const (
	SourceConfig = "config" // the deployment's configuration file
	SourceAPI    = "api"    // a tenant's, through /v1/providers
)

// SecretMask replaces every secret value that is read back.
const SecretMask = "********"

// ReceiptTokenSecret is the secret holding a provider's receipt token.
const ReceiptTokenSecret = "receipt_token"

// Names a configured provider may not take: the built-in providers' names.
var reservedProviderIDs = []string{"log", "smtp", "none"}

// ProviderSpec is a provider's whole configuration. Secrets are plaintext: it lives in memory
// only, and leaves the engine masked (see ProviderView).
type ProviderSpec struct {
	ID        string
	TenantID  string // "" for the deployment's
	Name      string
	Type      string
	Channels  []string
	Role      string
	Settings  json.RawMessage
	Secrets   map[string]string
	Enabled   bool
	Source    string
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ProviderView is a provider as callers see it: secret values masked. ReceiptToken is set only
// by the call that created or rotated it.
type ProviderView struct {
	ProviderSpec
	ReceiptToken string
}

// DeliveryOptions describe the deployment's delivery setup to the engine.
type DeliveryOptions struct {
	// Providers are the deployment-wide providers (the configuration file's), checked with
	// CheckDeploymentProviders.
	Providers []ProviderSpec
	// PublicURL is otpd's public base URL (https://otpd.example.com). With it, providers learn
	// their receipt callback URL (Twilio's StatusCallback, the {receipt_url} placeholder).
	PublicURL string
	// Changed is called after a tenant's providers changed, so routers can drop their cache.
	Changed func(tenantID string)
	// AllowPrivateDestinations lets tenants' providers connect to loopback, private, link-local
	// and other non-public addresses. Off by default: a tenant admin must not be able to reach
	// the deployment's own network (cloud metadata, internal services) through a provider. The
	// configuration file's providers are never restricted.
	AllowPrivateDestinations bool
}

type deliveryState struct {
	opts DeliveryOptions
	byID map[string]ProviderSpec
}

func newDelivery(o DeliveryOptions) deliveryState {
	d := deliveryState{opts: o, byID: map[string]ProviderSpec{}}
	for _, p := range o.Providers {
		p.Source, p.TenantID = SourceConfig, ""
		d.byID[p.ID] = p
	}
	return d
}

// ProviderInput creates a provider.
type ProviderInput struct {
	Name     string
	Type     string
	Channels []string
	Role     string // default primary
	Enabled  *bool  // default true
	Settings json.RawMessage
	Secrets  map[string]string
}

// ProviderPatch changes a provider. Nil fields stay. Settings is a JSON merge patch (RFC 7396).
// In Secrets a nil value deletes the secret and the value SecretMask keeps it, so a caller may
// send back what it read.
type ProviderPatch struct {
	Name               *string
	Channels           *[]string
	Role               *string
	Enabled            *bool
	Settings           json.RawMessage
	Secrets            map[string]*string
	RotateReceiptToken bool
}

var (
	providerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$`)
	providerIDRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	secretNameRE   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

const (
	maxSettings    = 16 << 10
	maxSecrets     = 16
	maxSecretValue = 4096
)

// checkSpec validates a provider's configuration; offered says which channels may be chosen.
// Errors are ValidationErrors and never quote a secret.
func checkSpec(s *ProviderSpec, offered func(string) bool) error {
	var errs ValidationErrors
	add := func(field, format string, args ...any) {
		errs = append(errs, &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if !providerNameRE.MatchString(s.Name) {
		add("name", "must be 1–64 letters, digits, spaces, dots, dashes or underscores")
	}
	if _, ok := deliver.LookupProviderType(s.Type); !ok {
		add("type", "must be one of %s", strings.Join(deliver.ProviderTypeNames(), ", "))
	}
	if s.Role == "" {
		s.Role = store.RolePrimary
	}
	if s.Role != store.RolePrimary && s.Role != store.RoleSecondary {
		add("role", "must be primary or secondary")
	}
	if len(s.Channels) == 0 {
		add("channels", "at least one channel is required")
	}
	seen := map[string]bool{}
	for _, c := range s.Channels {
		switch {
		case seen[c]:
			add("channels", "%q is listed twice", c)
		case c == ChannelNone || c == ChannelEmail || !knownChannel(c):
			add("channels", "%q is not a channel a provider delivers (sms, viber, voice, whatsapp)", c)
		case offered != nil && !offered(c):
			add("channels", "channel %s is not offered by this deployment", c)
		}
		seen[c] = true
	}
	if len(bytes.TrimSpace(s.Settings)) == 0 {
		s.Settings = json.RawMessage("{}")
	}
	var obj map[string]json.RawMessage
	if len(s.Settings) > maxSettings || json.Unmarshal(s.Settings, &obj) != nil || obj == nil {
		add("settings", "must be a JSON object of at most %d bytes", maxSettings)
	}
	if len(s.Secrets) > maxSecrets {
		add("secrets", "at most %d secrets", maxSecrets)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Secrets)) {
		v := s.Secrets[k]
		switch {
		case !secretNameRE.MatchString(k):
			add("secrets", "%q: names are lower-case letters, digits and underscores", k)
		case v == "" || len(v) > maxSecretValue:
			add("secrets."+k, "must be 1–%d bytes", maxSecretValue)
		case v == SecretMask:
			add("secrets."+k, "is the mask, not a value")
		case k == ReceiptTokenSecret && len(v) < 32:
			add("secrets."+k, "must be at least 32 characters")
		}
	}
	if len(errs) > 0 {
		return errs
	}
	// The type checks its own settings (strictly) and secrets, without contacting the provider.
	snd, err := deliver.NewSender(deliver.ProviderConfig{ID: cmp.Or(s.ID, "check"), Type: s.Type, Channels: s.Channels,
		Settings: s.Settings, Secrets: s.Secrets, ReceiptURL: "https://otpd.invalid/v1/receipts/x"})
	if err != nil {
		return ValidationErrors{{Field: "settings", Message: oneLine(err.Error())}}
	}
	closeSender(snd)
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func closeSender(s deliver.Sender) {
	if c, ok := s.(io.Closer); ok {
		_ = c.Close()
	}
}

// CheckDeploymentProviders validates the configuration file's providers: each one as the API
// would, ids unique and not a built-in name, at most one primary and one secondary per channel.
func CheckDeploymentProviders(specs []ProviderSpec) error {
	var errs []error
	ids := map[string]bool{}
	slots := map[string]string{}
	for i := range specs {
		s := specs[i] // a copy: checking fills defaults
		label := fmt.Sprintf("providers[%d] (%s)", i, s.ID)
		if !providerIDRE.MatchString(s.ID) || slices.Contains(reservedProviderIDs, s.ID) {
			errs = append(errs, fmt.Errorf("%s: id must be 1–64 letters, digits, dots, dashes or underscores, and not log, smtp or none", label))
		}
		if ids[s.ID] {
			errs = append(errs, fmt.Errorf("%s: id used twice", label))
		}
		ids[s.ID] = true
		if s.Name == "" {
			s.Name = s.ID
		}
		if err := checkSpec(&s, nil); err != nil {
			var ve ValidationErrors
			if errors.As(err, &ve) {
				for _, v := range ve {
					errs = append(errs, fmt.Errorf("%s: %s: %s", label, v.Field, v.Message))
				}
			} else {
				errs = append(errs, fmt.Errorf("%s: %w", label, err))
			}
			continue
		}
		if !s.Enabled {
			continue
		}
		for _, c := range s.Channels {
			slot := c + "/" + s.Role
			if other, dup := slots[slot]; dup {
				errs = append(errs, fmt.Errorf("%s: channel %s already has a %s provider (%s)", label, c, s.Role, other))
			}
			slots[slot] = s.ID
		}
	}
	return errors.Join(errs...)
}

// mask returns the view of s with its secrets masked.
func mask(s ProviderSpec) *ProviderView {
	v := &ProviderView{ProviderSpec: s}
	v.Secrets = make(map[string]string, len(s.Secrets))
	for k := range s.Secrets {
		v.Secrets[k] = SecretMask
	}
	v.Channels = slices.Clone(s.Channels)
	return v
}

// deploymentView shows a deployment provider to a tenant: what it is, not how it is set up.
func deploymentView(s ProviderSpec) *ProviderView {
	return &ProviderView{ProviderSpec: ProviderSpec{ID: s.ID, Name: cmp.Or(s.Name, s.ID), Type: s.Type,
		Channels: slices.Clone(s.Channels), Role: cmp.Or(s.Role, store.RolePrimary), Enabled: s.Enabled,
		Source: SourceConfig, Settings: json.RawMessage("{}")}}
}

func aadProvider(id string) []byte { return []byte("providers:" + id) }

// toRow seals s into a store row.
func (e *Engine) toRow(s *ProviderSpec) (*store.Provider, error) {
	row := &store.Provider{ID: s.ID, TenantID: s.TenantID, Name: s.Name, Type: s.Type,
		Channels: slices.Clone(s.Channels), Role: s.Role, Settings: string(s.Settings), Enabled: s.Enabled,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, Version: s.Version}
	if len(s.Secrets) > 0 {
		plain, err := json.Marshal(s.Secrets)
		if err != nil {
			return nil, err
		}
		if row.Secrets, err = e.keys.Seal(plain, aadProvider(s.ID)); err != nil {
			return nil, err
		}
	}
	return row, nil
}

// fromRow opens a store row.
func (e *Engine) fromRow(p *store.Provider) (ProviderSpec, error) {
	s := ProviderSpec{ID: p.ID, TenantID: p.TenantID, Name: p.Name, Type: p.Type, Channels: p.Channels,
		Role: p.Role, Settings: json.RawMessage(p.Settings), Enabled: p.Enabled, Source: SourceAPI,
		Version: p.Version, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, Secrets: map[string]string{}}
	if len(p.Secrets) > 0 {
		plain, err := e.keys.Open(p.Secrets, aadProvider(p.ID))
		if err != nil {
			return s, fmt.Errorf("provider %s: secrets do not open: %w", p.ID, err)
		}
		if err := json.Unmarshal(plain, &s.Secrets); err != nil {
			return s, fmt.Errorf("provider %s: secrets are not a JSON object", p.ID)
		}
	}
	return s, nil
}

// slotConflict explains a refused (channel, role) slot, read after the unique key refused it.
func (e *Engine) slotConflict(ctx context.Context, s *ProviderSpec) error {
	others, err := e.store.ListProviders(ctx, s.TenantID)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.ID == s.ID {
			continue
		}
		if o.Name == s.Name {
			return fmt.Errorf("%w: a provider named %q exists", ErrConflict, s.Name)
		}
		if o.Role == s.Role {
			for _, c := range s.Channels {
				if slices.Contains(o.Channels, c) {
					return fmt.Errorf("%w: channel %s already has a %s provider (%s)", ErrConflict, c, s.Role, o.ID)
				}
			}
		}
	}
	return fmt.Errorf("%w: already exists", ErrConflict)
}

func (e *Engine) offered(c string) bool { return e.channels[c] }

func (e *Engine) providersChanged(tenantID string) {
	if e.delivery.opts.Changed != nil {
		e.delivery.opts.Changed(tenantID)
	}
}

// CreateProvider adds a provider to the caller's tenant (admin only). The view it returns
// carries the receipt token, once.
func (e *Engine) CreateProvider(ctx context.Context, p Principal, in ProviderInput) (*ProviderView, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	now := e.clock.Now()
	s := ProviderSpec{ID: newID(), TenantID: p.TenantID, Name: in.Name, Type: in.Type,
		Channels: slices.Clone(in.Channels), Role: in.Role, Settings: in.Settings,
		Secrets: maps.Clone(in.Secrets), Enabled: in.Enabled == nil || *in.Enabled, Source: SourceAPI,
		CreatedAt: now, UpdatedAt: now}
	if s.Secrets == nil {
		s.Secrets = map[string]string{}
	}
	if s.Secrets[ReceiptTokenSecret] == "" {
		tok, err := keys.RandomToken(32)
		if err != nil {
			return nil, err
		}
		s.Secrets[ReceiptTokenSecret] = tok
	}
	if err := checkSpec(&s, e.offered); err != nil {
		return nil, err
	}
	row, err := e.toRow(&s)
	if err != nil {
		return nil, err
	}
	err = e.inTx(ctx, func(q store.Queries) error {
		if err := q.CreateProvider(ctx, row); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "provider.create", s.ID, "ok", "")
	})
	if errors.Is(err, store.ErrAlreadyExists) {
		return nil, e.slotConflict(ctx, &s)
	}
	if err != nil {
		return nil, mapStoreErr(err)
	}
	s.Version = row.Version
	e.providersChanged(p.TenantID)
	v := mask(s)
	v.ReceiptToken = s.Secrets[ReceiptTokenSecret]
	return v, nil
}

// ListProviders lists the tenant's providers, then the deployment's (read-only, without their
// settings), admin only.
func (e *Engine) ListProviders(ctx context.Context, p Principal) ([]ProviderView, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	rows, err := e.store.ListProviders(ctx, p.TenantID)
	if err != nil {
		return nil, err
	}
	out := make([]ProviderView, 0, len(rows)+len(e.delivery.opts.Providers))
	for i := range rows {
		s, err := e.fromRow(&rows[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *mask(s))
	}
	for _, s := range e.delivery.opts.Providers {
		out = append(out, *deploymentView(s))
	}
	return out, nil
}

// GetProvider returns one of the tenant's providers, or a deployment provider (read-only).
func (e *Engine) GetProvider(ctx context.Context, p Principal, id string) (*ProviderView, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	if s, ok := e.delivery.byID[id]; ok {
		return deploymentView(s), nil
	}
	row, err := e.store.GetProvider(ctx, p.TenantID, id)
	if err != nil {
		return nil, mapStoreErr(err)
	}
	s, err := e.fromRow(row)
	if err != nil {
		return nil, err
	}
	return mask(s), nil
}

func (e *Engine) readOnly(id string) error {
	if _, ok := e.delivery.byID[id]; ok {
		return fmt.Errorf("%w: provider %s comes from the configuration file; change it there", ErrConflict, id)
	}
	return nil
}

// UpdateProvider changes one of the tenant's providers.
func (e *Engine) UpdateProvider(ctx context.Context, p Principal, id string, in ProviderPatch) (*ProviderView, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	if err := e.readOnly(id); err != nil {
		return nil, err
	}
	var (
		s        ProviderSpec
		rotated  string
		checkErr error
	)
	err := e.inTx(ctx, func(q store.Queries) error {
		checkErr, rotated = nil, ""
		row, err := q.GetProvider(ctx, p.TenantID, id)
		if err != nil {
			return err
		}
		if s, err = e.fromRow(row); err != nil {
			return err
		}
		if err := applyPatch(&s, in); err != nil {
			checkErr = err
			return err
		}
		if in.RotateReceiptToken {
			if rotated, err = keys.RandomToken(32); err != nil {
				return err
			}
			s.Secrets[ReceiptTokenSecret] = rotated
		}
		if err := checkSpec(&s, e.offered); err != nil {
			checkErr = err
			return err
		}
		s.UpdatedAt = e.clock.Now()
		nrow, err := e.toRow(&s)
		if err != nil {
			return err
		}
		if err := q.UpdateProvider(ctx, nrow); err != nil {
			return err
		}
		s.Version = nrow.Version
		return e.audit(ctx, q, p, "provider.update", id, "ok", "")
	})
	switch {
	case checkErr != nil:
		return nil, checkErr
	case errors.Is(err, store.ErrAlreadyExists):
		return nil, e.slotConflict(ctx, &s)
	case err != nil:
		return nil, mapStoreErr(err)
	}
	e.providersChanged(p.TenantID)
	v := mask(s)
	v.ReceiptToken = rotated
	return v, nil
}

// applyPatch merges in into s.
func applyPatch(s *ProviderSpec, in ProviderPatch) error {
	if in.Name != nil {
		s.Name = *in.Name
	}
	if in.Channels != nil {
		s.Channels = slices.Clone(*in.Channels)
	}
	if in.Role != nil {
		s.Role = *in.Role
	}
	if in.Enabled != nil {
		s.Enabled = *in.Enabled
	}
	if len(in.Settings) > 0 {
		var patch any
		if err := json.Unmarshal(in.Settings, &patch); err != nil {
			return invalid("settings", "must be a JSON object (a merge patch)")
		}
		var cur any
		_ = json.Unmarshal(s.Settings, &cur)
		merged, err := json.Marshal(mergePatch(cur, patch))
		if err != nil {
			return err
		}
		s.Settings = merged
	}
	for k, v := range in.Secrets {
		switch {
		case v == nil:
			if k == ReceiptTokenSecret {
				return invalid("secrets."+k, "the receipt token can be rotated, not removed")
			}
			delete(s.Secrets, k)
		case *v == SecretMask:
			if _, ok := s.Secrets[k]; !ok {
				return invalid("secrets."+k, "is the mask, but the provider has no such secret")
			}
		default:
			s.Secrets[k] = *v
		}
	}
	return nil
}

// mergePatch applies an RFC 7396 JSON merge patch.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

// DeleteProvider removes one of the tenant's providers.
func (e *Engine) DeleteProvider(ctx context.Context, p Principal, id string) error {
	if err := requireAdmin(p); err != nil {
		return err
	}
	if err := e.readOnly(id); err != nil {
		return err
	}
	err := e.inTx(ctx, func(q store.Queries) error {
		if err := q.DeleteProvider(ctx, p.TenantID, id); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "provider.delete", id, "ok", "")
	})
	if err != nil {
		return mapStoreErr(err)
	}
	e.providersChanged(p.TenantID)
	return nil
}

// ProviderTest asks for one test message through a provider.
type ProviderTest struct {
	To      string
	Channel string // default: the provider's first channel
}

// ProviderTestResult says how the provider answered: whether it took the message and, when
// not, why. Nothing of the provider's answer is passed on — not even its message id, which a
// provider's settings can lift from any part of the answer.
type ProviderTestResult struct {
	Sent  bool
	Error string // the provider's failure, short and without its answer
}

// testSendTimeout bounds a test send.
const testSendTimeout = 30 * time.Second

// TestProvider sends one fixed test message (no code, no caller-chosen text) through a provider
// of the tenant or the deployment, directly rather than through the outbox, and reports how the
// provider answered. It counts against the recipient's and the tenant's send limits.
func (e *Engine) TestProvider(ctx context.Context, p Principal, id string, t ProviderTest) (*ProviderTestResult, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	s, ok := e.delivery.byID[id]
	if !ok {
		row, err := e.store.GetProvider(ctx, p.TenantID, id)
		if err != nil {
			return nil, mapStoreErr(err)
		}
		if s, err = e.fromRow(row); err != nil {
			return nil, err
		}
	}
	channel := t.Channel
	if channel == "" && len(s.Channels) > 0 {
		channel = s.Channels[0]
	}
	if !slices.Contains(s.Channels, channel) {
		return nil, invalid("channel", "must be one of the provider's channels (%s)", strings.Join(s.Channels, ", "))
	}
	to, err := normalizeRecipient(channel, t.To)
	if err != nil {
		return nil, err
	}
	now := e.clock.Now()
	var limitErr error
	err = e.inTx(ctx, func(q store.Queries) error {
		if err := e.takeLimits(ctx, q, p, to, "", now); err != nil {
			limitErr = err
			return err
		}
		return nil
	})
	if limitErr != nil {
		return nil, e.refused(ctx, p, "provider.test", id, limitErr, "")
	}
	if err != nil {
		return nil, err
	}
	snd, err := deliver.NewSender(e.senderConfig(s))
	if err != nil {
		return nil, fmt.Errorf("provider %s does not build: %w", id, err)
	}
	defer closeSender(snd)
	sctx, cancel := context.WithTimeout(ctx, testSendTimeout)
	defer cancel()
	_, sendErr := snd.Send(sctx, deliver.Message{ID: newID(), TenantID: p.TenantID, Channel: channel, To: to,
		Content: deliver.Content{Text: "This is a test message from otpd (provider " + cmp.Or(s.Name, s.ID) + ")."}})
	res := &ProviderTestResult{Sent: sendErr == nil}
	result := "ok"
	if sendErr != nil {
		res.Error = shortText(sendErr.Error(), 200)
		result = "failed"
	}
	if err := e.audit(ctx, e.store, p, "provider.test", id, result, ""); err != nil {
		e.log.Warn("audit write failed", "action", "provider.test", "err", err)
	}
	return res, nil
}

func shortText(s string, n int) string {
	s = oneLine(s)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// senderConfig is how a provider's type sees it: with its receipt URL when the deployment knows
// its public address, and receipts from its own connection (SMPP) recorded for its tenant.
func (e *Engine) senderConfig(s ProviderSpec) deliver.ProviderConfig {
	secrets := maps.Clone(s.Secrets)
	token := secrets[ReceiptTokenSecret]
	delete(secrets, ReceiptTokenSecret)
	cfg := deliver.ProviderConfig{ID: s.ID, Type: s.Type, Channels: slices.Clone(s.Channels),
		Settings: s.Settings, Secrets: secrets, Logger: e.log,
		RestrictDestinations: isTenantProvider(s) && !e.delivery.opts.AllowPrivateDestinations}
	if base := strings.TrimRight(e.delivery.opts.PublicURL, "/"); base != "" && token != "" {
		cfg.ReceiptURL = base + "/v1/receipts/" + url.PathEscape(s.ID) + "?token=" + url.QueryEscape(token)
	}
	tenant, provider := s.TenantID, s.ID
	cfg.OnReceipt = func(ctx context.Context, r deliver.Receipt) {
		if err := e.ApplyReceipt(ctx, tenant, provider, r); err != nil {
			e.log.Warn("receipt not recorded", "provider", provider, "err", err)
		}
	}
	return cfg
}

// isTenantProvider reports whether s is a tenant's own provider (created through the API), whose
// connections are restricted to public addresses.
func isTenantProvider(s ProviderSpec) bool { return s.Source == SourceAPI || s.TenantID != "" }

// SenderConfig is the deliver.ProviderConfig a router builds the provider's Sender from.
func (e *Engine) SenderConfig(s ProviderSpec) deliver.ProviderConfig { return e.senderConfig(s) }

// Routes returns a tenant's routes: for each channel some provider serves, its providers in
// order (primary, then secondary). A channel with a provider of the tenant's is routed to the
// tenant's providers only; the others to the deployment's. Channels missing here have no
// configured provider (the built-in ones — SMTP, the log provider — are the app's).
func (e *Engine) Routes(ctx context.Context, tenantID string) (map[string][]ProviderSpec, error) {
	rows, err := e.store.ListProviders(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	routes := map[string][]ProviderSpec{}
	for i := range rows {
		if !rows[i].Enabled {
			continue
		}
		s, err := e.fromRow(&rows[i])
		if err != nil {
			return nil, err
		}
		for _, c := range s.Channels {
			routes[c] = append(routes[c], s)
		}
	}
	deployment := map[string][]ProviderSpec{}
	for _, s := range e.delivery.opts.Providers {
		if !s.Enabled {
			continue
		}
		for _, c := range s.Channels {
			if _, own := routes[c]; !own {
				deployment[c] = append(deployment[c], s)
			}
		}
	}
	maps.Copy(routes, deployment)
	for c := range routes {
		slices.SortStableFunc(routes[c], func(a, b ProviderSpec) int {
			return cmp.Compare(roleRank(a.Role), roleRank(b.Role))
		})
	}
	return routes, nil
}

func roleRank(r string) int {
	if r == store.RoleSecondary {
		return 1
	}
	return 0
}

// receiptProvider finds the provider a receipt callback names and checks its token in constant
// time. Unknown providers, providers without a token and wrong tokens are all ErrNotFound.
func (e *Engine) receiptProvider(ctx context.Context, id, token string) (ProviderSpec, error) {
	s, ok := e.delivery.byID[id]
	if !ok {
		row, err := e.store.LookupProvider(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return s, ErrNotFound
		}
		if err != nil {
			return s, err
		}
		if s, err = e.fromRow(row); err != nil {
			return s, err
		}
	}
	want := s.Secrets[ReceiptTokenSecret]
	a, b := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(want))
	if want == "" || token == "" || subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return ProviderSpec{}, ErrNotFound
	}
	return s, nil
}

// ReceiptCallback authenticates and reads a provider's receipt callback and records each
// receipt in it; it returns how many receipts the callback held. ErrNotFound for an unknown
// provider or a wrong token; ErrInvalid when the body does not read.
func (e *Engine) ReceiptCallback(ctx context.Context, providerID, token, contentType string, query url.Values, body []byte) (int, error) {
	s, err := e.receiptProvider(ctx, providerID, token)
	if err != nil {
		return 0, err
	}
	snd, err := deliver.NewSender(e.senderConfig(s))
	if err != nil {
		return 0, fmt.Errorf("provider %s does not build: %w", providerID, err)
	}
	defer closeSender(snd)
	parser, ok := snd.(deliver.ReceiptParser)
	if !ok {
		return 0, fmt.Errorf("%w: provider %s takes no receipt callbacks", ErrNotFound, providerID)
	}
	rs, err := parser.ParseReceipts(contentType, query, body)
	if err != nil {
		return 0, invalid("(body)", "%s", oneLine(err.Error()))
	}
	for _, r := range rs {
		if err := e.ApplyReceipt(ctx, s.TenantID, s.ID, r); err != nil {
			return 0, err
		}
	}
	return len(rs), nil
}

// RouteSource serves Routes as a deliver.RouteSource, for a deliver.CachedRouter.
func (e *Engine) RouteSource() deliver.RouteSource {
	return func(ctx context.Context, tenantID string) (map[string][]deliver.ProviderConfig, error) {
		routes, err := e.Routes(ctx, tenantID)
		if err != nil {
			return nil, err
		}
		out := make(map[string][]deliver.ProviderConfig, len(routes))
		for c, specs := range routes {
			for _, s := range specs {
				out[c] = append(out[c], e.senderConfig(s))
			}
		}
		return out, nil
	}
}
