package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/otpd/otpd/internal/store"
)

// Messaging: the rules of the BSG verification surface and the SMS-pumping defences that guard
// every SMS, Viber and voice send (SPEC.md §1 rule 5, §2.1; SECURITY.md 26–27).
//
// The deployment's MessagingPolicy (YAML policy.messaging) gives every tenant its defaults; a
// tenant overrides them with its MessagingSettings (native API /v1/settings/messaging).

// MessagingPolicy is the deployment's messaging policy: the defaults of every tenant's
// MessagingSettings, and deployment-only knobs. Zero values take the defaults of withDefaults.
type MessagingPolicy struct {
	// AllowedCountries is the default destination allow-list for SMS, Viber and voice (ISO 3166
	// alpha-2 codes, or "*" for every country). Empty by default: nothing may be sent through
	// the BSG surface until the operator or the tenant names countries (SECURITY.md 27).
	AllowedCountries []string `yaml:"allowed_countries"`
	// Moderation makes new templates wait for an operator's approval.
	Moderation bool `yaml:"moderation"`
	// PendingLimit is how many pending BSG sessions one application may hold for one recipient
	// (default 1; -1 switches the limit off).
	PendingLimit int `yaml:"pending_limit"`
	// DuplicateWindow refuses the same BSG send body again within this window (default 10s;
	// -1s switches it off).
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// MinCodeLength is the shortest code a BSG send may ask for (default 6, SECURITY.md 6).
	// BSG allows 3–9; lowering this below 6 for compatibility weakens the codes.
	MinCodeLength int `yaml:"min_code_length"`
	// PrefixLimit bounds sends to one number block (the number without its last
	// PrefixBlockDigits digits) in a sliding window (default 20 per hour; count -1 switches it
	// off).
	PrefixLimit Limit `yaml:"prefix_limit"`
	// PrefixBlockDigits is how many trailing digits a number block spans (default 3: blocks of
	// 1000 numbers).
	PrefixBlockDigits int `yaml:"prefix_block_digits"`
	// DialCodeDailyCap bounds a tenant's sends to one country calling code per UTC day
	// (default 1000; -1 switches it off).
	DialCodeDailyCap int `yaml:"dial_code_daily_cap"`
	// DailySpendCap bounds a tenant's message spend per UTC day, in its currency, as a decimal
	// (default "100"; "0" switches it off).
	DailySpendCap string `yaml:"daily_spend_cap"`
	// Currency of the price table and the spend cap (default EUR).
	Currency string `yaml:"currency"`
	// TokenTTL is the lifetime of the bearer tokens of POST /api/auth/login (default 1h, at most
	// 7 days).
	TokenTTL time.Duration `yaml:"token_ttl"`
}

// Bounds of the messaging policy.
const (
	// MinAllowedCodeLength is the shortest code any policy may allow (BSG's lower bound).
	MinAllowedCodeLength = 3
	maxTokenTTL          = 7 * 24 * time.Hour
	maxTemplateText      = 1000
	requestedTemplateMax = 10 // BSG: at most 10 templates awaiting approval
)

// withDefaults fills zero fields.
func (p MessagingPolicy) withDefaults() MessagingPolicy {
	if p.PendingLimit == 0 {
		p.PendingLimit = 1
	}
	if p.DuplicateWindow == 0 {
		p.DuplicateWindow = 10 * time.Second
	}
	if p.MinCodeLength == 0 {
		p.MinCodeLength = MinCodeLength
	}
	if p.PrefixLimit == (Limit{}) {
		p.PrefixLimit = Limit{Count: 20, Window: time.Hour}
	}
	if p.PrefixBlockDigits == 0 {
		p.PrefixBlockDigits = 3
	}
	if p.DialCodeDailyCap == 0 {
		p.DialCodeDailyCap = 1000
	}
	if p.DailySpendCap == "" {
		p.DailySpendCap = "100"
	}
	if p.Currency == "" {
		p.Currency = "EUR"
	}
	if p.TokenTTL == 0 {
		p.TokenTTL = time.Hour
	}
	return p
}

// validate reports values outside what otpd allows.
func (p MessagingPolicy) validate() []error {
	var errs []error
	s := p.defaults()
	for _, v := range s.check() {
		errs = append(errs, fmt.Errorf("messaging.%s: %s", v.Field, v.Message))
	}
	if p.PrefixBlockDigits < 0 || p.PrefixBlockDigits > 8 {
		errs = append(errs, errors.New("messaging.prefix_block_digits must be 0–8"))
	}
	if p.TokenTTL < time.Minute || p.TokenTTL > maxTokenTTL {
		errs = append(errs, fmt.Errorf("messaging.token_ttl must be between 1m and %s", maxTokenTTL))
	}
	return errs
}

// MessagingSettings are the messaging rules in force for one tenant: the deployment's policy
// overlaid with the tenant's own choices. A limit or cap of 0 is off.
type MessagingSettings struct {
	// AllowedCountries: destinations of SMS, Viber and voice (ISO 3166 alpha-2, or "*"). Empty:
	// the BSG surface sends nowhere; other surfaces keep sending everywhere until a list is set.
	AllowedCountries []string `json:"allowed_countries"`
	Moderation       bool     `json:"moderation"`
	PendingLimit     int      `json:"pending_limit"`
	// DuplicateWindowSeconds: the same BSG send body within this many seconds is refused.
	DuplicateWindowSeconds int            `json:"duplicate_window_seconds"`
	MinCodeLength          int            `json:"min_code_length"`
	PrefixLimit            LimitSetting   `json:"prefix_limit"`
	DialCodeDailyCap       int            `json:"dial_code_daily_cap"`
	DialCodeDailyCaps      map[string]int `json:"dial_code_daily_caps"` // per calling code, e.g. "44"
	DailySpendCap          string         `json:"daily_spend_cap"`
	Currency               string         `json:"currency"`
}

// MaxTenantLimitWindow bounds the window of a limit a tenant sets for itself; the janitor keeps
// rate events at least this long, so no tenant window is ever cut short.
const MaxTenantLimitWindow = 24 * time.Hour

// LimitSetting is a sliding-window limit in JSON: at most Count per WindowSeconds (0 = off).
type LimitSetting struct {
	Count         int `json:"count"`
	WindowSeconds int `json:"window_seconds"`
}

func (l LimitSetting) limit() Limit {
	return Limit{Count: l.Count, Window: time.Duration(l.WindowSeconds) * time.Second}
}

// defaults turns the deployment policy into the settings of a tenant without overrides.
func (p MessagingPolicy) defaults() MessagingSettings {
	p = p.withDefaults()
	s := MessagingSettings{
		AllowedCountries:       normCountries(p.AllowedCountries),
		Moderation:             p.Moderation,
		PendingLimit:           max(p.PendingLimit, 0),
		DuplicateWindowSeconds: max(int(p.DuplicateWindow/time.Second), 0),
		MinCodeLength:          p.MinCodeLength,
		PrefixLimit:            LimitSetting{Count: max(p.PrefixLimit.Count, 0), WindowSeconds: int(p.PrefixLimit.Window / time.Second)},
		DialCodeDailyCap:       max(p.DialCodeDailyCap, 0),
		DialCodeDailyCaps:      map[string]int{},
		DailySpendCap:          p.DailySpendCap,
		Currency:               p.Currency,
	}
	if s.PrefixLimit.Count == 0 {
		s.PrefixLimit.WindowSeconds = 0
	}
	return s
}

// check validates settings; field names are those of the JSON form.
func (s MessagingSettings) check() ValidationErrors {
	var errs ValidationErrors
	for _, c := range s.AllowedCountries {
		if c != "*" && !knownCountry(c) {
			errs = append(errs, fieldErr("allowed_countries", "%q is not an ISO 3166 alpha-2 country code with a calling code (or \"*\")", c))
			break
		}
	}
	if s.PendingLimit < 0 || s.PendingLimit > 100 {
		errs = append(errs, fieldErr("pending_limit", "must be 0 (off) to 100"))
	}
	if s.DuplicateWindowSeconds < 0 || s.DuplicateWindowSeconds > 3600 {
		errs = append(errs, fieldErr("duplicate_window_seconds", "must be 0 (off) to 3600"))
	}
	if s.MinCodeLength < MinAllowedCodeLength || s.MinCodeLength > MaxCodeLength {
		errs = append(errs, fieldErr("min_code_length", "must be %d–%d", MinAllowedCodeLength, MaxCodeLength))
	}
	if l := s.PrefixLimit; l.Count < 0 || (l.Count > 0 && (l.WindowSeconds < 1 || l.WindowSeconds > int(MaxTenantLimitWindow/time.Second))) {
		errs = append(errs, fieldErr("prefix_limit", "count must be ≥ 0 (0 = off) and window_seconds 1–86400"))
	}
	if s.DialCodeDailyCap < 0 {
		errs = append(errs, fieldErr("dial_code_daily_cap", "must be ≥ 0 (0 = off)"))
	}
	for code, n := range s.DialCodeDailyCaps {
		if !knownCallingCode(code) || n < 0 {
			errs = append(errs, fieldErr("dial_code_daily_caps", "keys must be country calling codes (e.g. \"44\") and values ≥ 0"))
			break
		}
	}
	if _, err := parseAmount(s.DailySpendCap); err != nil {
		errs = append(errs, fieldErr("daily_spend_cap", "must be a decimal amount, e.g. \"100\" or \"25.50\" (\"0\" = off)"))
	}
	if len(s.Currency) != 3 || strings.ToUpper(s.Currency) != s.Currency || strings.ContainsFunc(s.Currency, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		errs = append(errs, fieldErr("currency", "must be an ISO 4217 code, e.g. EUR"))
	}
	return errs
}

// allowsCountry reports whether the allow-list lets a message go to country; bsg says whether
// the session came through the BSG surface, which denies when no list is set.
func (s MessagingSettings) allowsCountry(country string, bsg bool) bool {
	if len(s.AllowedCountries) == 0 {
		return !bsg
	}
	return slices.Contains(s.AllowedCountries, "*") || slices.Contains(s.AllowedCountries, country)
}

// dialCodeCap is the daily cap for one calling code (0 = none).
func (s MessagingSettings) dialCodeCap(code string) int {
	if n, ok := s.DialCodeDailyCaps[code]; ok {
		return n
	}
	return s.DialCodeDailyCap
}

// messagingSettings returns the tenant's settings in force, read through q.
func (e *Engine) messagingSettings(ctx context.Context, q store.Queries, tenantID string) (MessagingSettings, int64, error) {
	s := e.cfg.Messaging.defaults()
	row, err := q.GetMessagingSettings(ctx, tenantID)
	if errors.Is(err, store.ErrNotFound) {
		return s, 0, nil
	}
	if err != nil {
		return s, 0, err
	}
	if err := overlaySettings(&s, []byte(row.Settings)); err != nil {
		return s, 0, fmt.Errorf("tenant %s messaging settings: %w", tenantID, err)
	}
	return s, row.Version, nil
}

// overlaySettings applies the members present in raw (a JSON object) over s; a member set to
// null is skipped (it means "the deployment's default").
func overlaySettings(s *MessagingSettings, raw []byte) error {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return err
	}
	for k, v := range members {
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			delete(members, k)
		}
	}
	clean, _ := json.Marshal(members)
	dec := json.NewDecoder(bytes.NewReader(clean))
	dec.DisallowUnknownFields()
	return dec.Decode(s)
}

// MessagingSettingsView is a tenant's settings in force and which of them the tenant set itself.
type MessagingSettingsView struct {
	MessagingSettings
	Overrides []string // JSON member names the tenant set; the rest are the deployment's
}

// GetMessagingSettings returns the caller's tenant settings in force (admin only).
func (e *Engine) GetMessagingSettings(ctx context.Context, p Principal) (*MessagingSettingsView, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	s, _, err := e.messagingSettings(ctx, e.store, p.TenantID)
	if err != nil {
		return nil, err
	}
	row, err := e.store.GetMessagingSettings(ctx, p.TenantID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return &MessagingSettingsView{MessagingSettings: s, Overrides: overrideNames(row)}, nil
}

func overrideNames(row *store.MessagingSettings) []string {
	if row == nil {
		return []string{}
	}
	var members map[string]json.RawMessage
	_ = json.Unmarshal([]byte(row.Settings), &members)
	out := []string{}
	for k := range members {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// settingsMembers are the JSON members a tenant may set.
var settingsMembers = map[string]bool{
	"allowed_countries": true, "moderation": true, "pending_limit": true,
	"duplicate_window_seconds": true, "min_code_length": true, "prefix_limit": true,
	"dial_code_daily_cap": true, "dial_code_daily_caps": true, "daily_spend_cap": true, "currency": true,
}

// UpdateMessagingSettings merges patch (a JSON object, RFC 7386 style: a member replaces the
// tenant's value, null restores the deployment's default) into the tenant's settings, validates
// the result and stores it (admin only). Country codes are upper-cased.
func (e *Engine) UpdateMessagingSettings(ctx context.Context, p Principal, patch []byte) (*MessagingSettingsView, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	var changes map[string]json.RawMessage
	if err := json.Unmarshal(patch, &changes); err != nil || changes == nil {
		return nil, invalid("(body)", "must be a JSON object")
	}
	var errs ValidationErrors
	for k := range changes {
		if !settingsMembers[k] {
			errs = append(errs, fieldErr(k, "unknown setting"))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	var out *MessagingSettingsView
	err := e.inTx(ctx, func(q store.Queries) error {
		row, err := q.GetMessagingSettings(ctx, p.TenantID)
		if errors.Is(err, store.ErrNotFound) {
			row, err = &store.MessagingSettings{TenantID: p.TenantID, Settings: "{}"}, nil
		}
		if err != nil {
			return err
		}
		stored := map[string]json.RawMessage{}
		if err := json.Unmarshal([]byte(row.Settings), &stored); err != nil {
			return err
		}
		for k, v := range changes {
			if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
				delete(stored, k)
				continue
			}
			if k == "allowed_countries" {
				var cs []string
				if err := json.Unmarshal(v, &cs); err != nil {
					return invalid(k, "must be an array of country codes")
				}
				v, _ = json.Marshal(normCountries(cs))
			}
			stored[k] = v
		}
		raw, _ := json.Marshal(stored)
		s := e.cfg.Messaging.defaults()
		if err := overlaySettings(&s, raw); err != nil {
			return invalid("(body)", "a setting has the wrong type: %v", jsonTypeHint(err))
		}
		if errs := s.check(); len(errs) > 0 {
			return errs
		}
		row.Settings, row.UpdatedAt = string(raw), e.clock.Now()
		if err := q.PutMessagingSettings(ctx, row); err != nil {
			return err
		}
		out = &MessagingSettingsView{MessagingSettings: s, Overrides: overrideNames(row)}
		return e.audit(ctx, q, p, "messaging.settings", p.TenantID, "ok", "")
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return out, nil
}

// jsonTypeHint names the member of a type error without echoing values.
func jsonTypeHint(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field + " must be " + te.Type.String()
	}
	return "invalid value"
}

// normCountries upper-cases, trims and de-duplicates country codes, keeping their order.
func normCountries(cs []string) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		c = strings.ToUpper(strings.TrimSpace(c))
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// knownCountry reports whether c is an ISO 3166 alpha-2 region with a calling code.
func knownCountry(c string) bool {
	return len(c) == 2 && c == strings.ToUpper(c) && phonenumbers.GetCountryCodeForRegion(c) != 0
}

// knownCallingCode reports whether code is a country calling code ("1", "44", "61").
func knownCallingCode(code string) bool {
	if code == "" || len(code) > 3 || strings.ContainsFunc(code, func(r rune) bool { return r < '0' || r > '9' }) {
		return false
	}
	var n int
	fmt.Sscan(code, &n)
	return phonenumbers.GetRegionCodeForCountryCode(n) != "ZZ"
}

// Messaging outcomes. Each is reported as an error that matches its sentinel with errors.Is
// and, for surfaces that do not know the sentinel, a generic outcome (a field error, a conflict
// or a rate limit) with errors.As / errors.Is.
var (
	// ErrTemplateNotFound: a send names a template that does not exist or was deleted.
	ErrTemplateNotFound = errors.New("template not found")
	// ErrTemplateNotApproved: a send names a template that is awaiting approval or rejected.
	ErrTemplateNotApproved = errors.New("template not approved")
	// ErrTemplateCountry: the recipient's country is not among the template's countries.
	ErrTemplateCountry = errors.New("recipient country not allowed by the template")
	// ErrTemplateNameTaken: another live template of the tenant has that name.
	ErrTemplateNameTaken = errors.New("template name taken")
	// ErrTemplateQuota: the tenant already has the maximum of templates awaiting approval.
	ErrTemplateQuota = errors.New("too many templates awaiting approval")
	// ErrDefaultTemplate: the default template cannot be deleted or changed.
	ErrDefaultTemplate = errors.New("the default template cannot be deleted or changed")
	// ErrCountryNotAllowed: the destination country is not on the tenant's allow-list.
	ErrCountryNotAllowed = errors.New("destination country not allowed")
	// ErrPendingLimit: the application already has the allowed number of pending sessions for
	// the recipient.
	ErrPendingLimit = errors.New("pending session limit reached")
	// ErrDuplicateRequest: the same send was made moments ago.
	ErrDuplicateRequest = errors.New("duplicate request")
	// ErrDailyCap: the tenant's daily cap of sends to the number's calling code is reached.
	ErrDailyCap = errors.New("daily cap reached")
	// ErrSpendCap: the tenant's daily spend cap would be exceeded.
	ErrSpendCap = errors.New("daily spend cap reached")
)

// fieldErr is invalid with its concrete type, for ValidationErrors.
func fieldErr(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// outcomeError is a messaging outcome: its message, its sentinel and a generic equivalent.
type outcomeError struct {
	msg  string
	errs []error
}

func (e *outcomeError) Error() string   { return e.msg }
func (e *outcomeError) Unwrap() []error { return e.errs }

func outcome(sentinel error, generic error, format string, args ...any) error {
	return &outcomeError{msg: fmt.Sprintf(format, args...), errs: []error{sentinel, generic}}
}

// refusalScope names a messaging refusal for the audit log ("" for other errors).
func refusalScope(err error) string {
	for _, s := range []struct {
		err   error
		scope string
	}{
		{ErrCountryNotAllowed, "country"}, {ErrPendingLimit, "pending"}, {ErrDuplicateRequest, "duplicate"},
		{ErrDailyCap, "dial_code"}, {ErrSpendCap, "spend"},
	} {
		if errors.Is(err, s.err) {
			return s.scope
		}
	}
	return ""
}
