package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/otpd/otpd/internal/store"
)

// TokenPolicy is the engine policy for one-time login tokens, OAuth tokens, user OTPs for a purpose.
// Zero values take the defaults of withDefaults.
type TokenPolicy struct {
	// OTTTTL is the lifetime of a one-time login token (30s; 5s–30s: the Acronis contract
	// promises 30 seconds at most).
	OTTTTL time.Duration `yaml:"ott_ttl"`
	// SessionTTL is the lifetime of the IdP session a one-time token opens (8h; 5m–7d).
	SessionTTL time.Duration `yaml:"session_ttl"`
	// AccessTokenTTL is the lifetime of OAuth access tokens from the token endpoint (2h; 5m–24h).
	AccessTokenTTL time.Duration `yaml:"access_token_ttl"`
	// Issuer is the "iss" of the JWTs otpd signs for the token endpoint ("otpd").
	Issuer string `yaml:"issuer"`
	// UserOTPTTL is the lifetime of a user OTP (Haventec) when the request names none (5m; it
	// must lie within the session lifetime bounds, 30s–max_ttl).
	UserOTPTTL time.Duration `yaml:"user_otp_ttl"`
	// IntrospectionTimeout bounds one call to a customer's IAM introspection endpoint (5s; 1s–30s).
	IntrospectionTimeout time.Duration `yaml:"introspection_timeout"`
	// SelfServiceChecks limits self-service code checks (OpenIAM, often public) per client IP
	// and tenant, every check counted, unknown moving factors too (30 per 5m; count 0 turns it
	// off; window 1s–24h).
	SelfServiceChecks Limit `yaml:"self_service_checks"`
}

// Bounds of TokenPolicy.
const (
	MaxOTTTTL       = 30 * time.Second
	minOTTTTL       = 5 * time.Second
	maxSessionTTL   = 7 * 24 * time.Hour
	maxAccessTTL    = 24 * time.Hour
	minTokenTTL     = 5 * time.Minute
	maxIntrospectTO = 30 * time.Second
)

// withDefaults fills zero fields.
func (p TokenPolicy) withDefaults() TokenPolicy {
	if p.OTTTTL == 0 {
		p.OTTTTL = MaxOTTTTL
	}
	if p.SessionTTL == 0 {
		p.SessionTTL = 8 * time.Hour
	}
	if p.AccessTokenTTL == 0 {
		p.AccessTokenTTL = 2 * time.Hour
	}
	if p.Issuer == "" {
		p.Issuer = "otpd"
	}
	if p.UserOTPTTL == 0 {
		p.UserOTPTTL = 5 * time.Minute
	}
	if p.IntrospectionTimeout == 0 {
		p.IntrospectionTimeout = 5 * time.Second
	}
	if p.SelfServiceChecks == (Limit{}) {
		p.SelfServiceChecks = Limit{Count: 30, Window: 5 * time.Minute}
	}
	return p
}

// validate reports values outside what otpd allows.
func (p TokenPolicy) validate() []error {
	var errs []error
	if p.OTTTTL < minOTTTTL || p.OTTTTL > MaxOTTTTL {
		errs = append(errs, fmt.Errorf("tokens.ott_ttl must be between %s and %s", minOTTTTL, MaxOTTTTL))
	}
	if p.SessionTTL < minTokenTTL || p.SessionTTL > maxSessionTTL {
		errs = append(errs, fmt.Errorf("tokens.session_ttl must be between %s and %s", minTokenTTL, maxSessionTTL))
	}
	if p.AccessTokenTTL < minTokenTTL || p.AccessTokenTTL > maxAccessTTL {
		errs = append(errs, fmt.Errorf("tokens.access_token_ttl must be between %s and %s", minTokenTTL, maxAccessTTL))
	}
	if len(p.Issuer) > 256 || !utf8.ValidString(p.Issuer) || strings.ContainsFunc(p.Issuer, isControl) {
		errs = append(errs, errors.New("tokens.issuer must be at most 256 printable characters"))
	}
	if p.UserOTPTTL < MinTTL || p.UserOTPTTL > HardMaxTTL {
		errs = append(errs, fmt.Errorf("tokens.user_otp_ttl must be between %s and %s", MinTTL, HardMaxTTL))
	}
	if p.IntrospectionTimeout < time.Second || p.IntrospectionTimeout > maxIntrospectTO {
		errs = append(errs, fmt.Errorf("tokens.introspection_timeout must be between 1s and %s", maxIntrospectTO))
	}
	if l := p.SelfServiceChecks; l.Count < 0 || (l.Count > 0 && (l.Window < time.Second || l.Window > 24*time.Hour)) {
		errs = append(errs, errors.New("tokens.self_service_checks: count must be ≥ 0 and window 1s–24h"))
	}
	return errs
}

// tokenDigest is what is stored for a bearer secret otpd hands out (one-time tokens, session
// ids): SHA-256 over a kind label and the token. The tokens are 256-bit random values, so an
// unkeyed digest cannot be inverted, and it survives a master-key rotation.
func tokenDigest(kind, token string) []byte {
	h := sha256.New()
	h.Write([]byte("otpd:" + kind + "\x00"))
	h.Write([]byte(token))
	return h.Sum(nil)
}

// TokenSettings are a tenant's settings for the token surfaces.
type TokenSettings struct {
	// RedirectTargets are the URL prefixes the external-login page may redirect to: scheme,
	// host and port must match exactly, the path must equal the prefix's or lie below it.
	RedirectTargets []string
	// SelfServiceRequireKey makes the OpenIAM self-service endpoints refuse requests without an
	// API key of the tenant.
	SelfServiceRequireKey bool
	// SelfServiceHosts route key-less self-service requests to this tenant by their Host
	// header. Requests whose host no tenant claims go to the default tenant.
	SelfServiceHosts []string
	UpdatedAt        time.Time
}

// Limits on token settings.
const (
	maxSettingsEntries = 50
	maxTargetLen       = 2048
)

// GetTokenSettings returns the tenant's token settings (empty ones when never set).
func (e *Engine) GetTokenSettings(ctx context.Context, p Principal) (*TokenSettings, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	return e.tokenSettings(ctx, e.store, p.TenantID)
}

func (e *Engine) tokenSettings(ctx context.Context, q store.Queries, tenantID string) (*TokenSettings, error) {
	s, err := q.GetTokenSettings(ctx, tenantID)
	if errors.Is(err, store.ErrNotFound) {
		return &TokenSettings{RedirectTargets: []string{}, SelfServiceHosts: []string{}}, nil
	}
	if err != nil {
		return nil, err
	}
	out := &TokenSettings{RedirectTargets: s.RedirectTargets, SelfServiceRequireKey: s.SelfServiceRequireKey,
		SelfServiceHosts: s.SelfServiceHosts, UpdatedAt: s.UpdatedAt}
	if out.RedirectTargets == nil {
		out.RedirectTargets = []string{}
	}
	if out.SelfServiceHosts == nil {
		out.SelfServiceHosts = []string{}
	}
	return out, nil
}

// SetTokenSettings replaces the tenant's token settings. Targets and hosts are validated and
// normalised; a host another tenant claims is a conflict.
func (e *Engine) SetTokenSettings(ctx context.Context, p Principal, in TokenSettings) (*TokenSettings, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	var errs ValidationErrors
	if len(in.RedirectTargets) > maxSettingsEntries {
		errs = append(errs, &ValidationError{"redirect_targets", fmt.Sprintf("at most %d entries", maxSettingsEntries)})
	}
	targets := []string{}
	for i, t := range in.RedirectTargets {
		n, err := normalizeTargetPrefix(t)
		if err != nil {
			errs = append(errs, &ValidationError{fmt.Sprintf("redirect_targets[%d]", i), err.Error()})
			continue
		}
		if !slices.Contains(targets, n) {
			targets = append(targets, n)
		}
	}
	if len(in.SelfServiceHosts) > maxSettingsEntries {
		errs = append(errs, &ValidationError{"self_service.hosts", fmt.Sprintf("at most %d entries", maxSettingsEntries)})
	}
	hosts := []string{}
	for i, h := range in.SelfServiceHosts {
		n, ok := NormalizeHost(h)
		if !ok {
			errs = append(errs, &ValidationError{fmt.Sprintf("self_service.hosts[%d]", i), "must be a host name, optionally with :port"})
			continue
		}
		if !slices.Contains(hosts, n) {
			hosts = append(hosts, n)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	slices.Sort(hosts)
	now := e.clock.Now()
	s := &store.TokenSettings{TenantID: p.TenantID, RedirectTargets: targets,
		SelfServiceRequireKey: in.SelfServiceRequireKey, SelfServiceHosts: hosts, UpdatedAt: now}
	err := e.inTx(ctx, func(q store.Queries) error {
		if err := q.PutTokenSettings(ctx, s); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "token_settings.update", p.TenantID, "ok", "")
	})
	if errors.Is(err, store.ErrAlreadyExists) {
		return nil, fmt.Errorf("%w: a self-service host is already claimed by another tenant", ErrConflict)
	}
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return &TokenSettings{RedirectTargets: targets, SelfServiceRequireKey: s.SelfServiceRequireKey,
		SelfServiceHosts: hosts, UpdatedAt: s.UpdatedAt}, nil
}

// NormalizeHost lower-cases a Host value ("Login.Example.com:443") and drops nothing else; it
// refuses anything that is not a DNS name or IP literal with an optional port.
func NormalizeHost(h string) (string, bool) {
	h = strings.ToLower(strings.TrimSpace(h))
	if h == "" || len(h) > 260 {
		return "", false
	}
	name, port := h, ""
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		if strings.Count(h, ":") > 1 { // a bare IPv6 literal without brackets
			return "", false
		}
		name, port = h[:i], h[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "", false
		}
	}
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		if ip := net.ParseIP(name[1 : len(name)-1]); ip == nil || ip.To4() != nil {
			return "", false
		}
		return h, true
	}
	if !validHostname(name) {
		return "", false
	}
	return h, true
}

func validHostname(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// target is a parsed, normalised absolute http(s) URL: the parts a redirect target is matched on.
type target struct {
	scheme, host, port, path string
	u                        *url.URL
}

// parseTarget reads an absolute http or https URL strictly: no userinfo, no control characters,
// spaces or backslashes anywhere (browsers read "\" as "/"), no encoded slashes or dots in the
// path, no "." or ".." segments (a browser would resolve them after the check).
func parseTarget(raw string) (*target, error) {
	if raw == "" || len(raw) > maxTargetLen {
		return nil, fmt.Errorf("must be 1–%d characters", maxTargetLen)
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c == 0x7f || c == '\\' || c >= 0x80 {
			return nil, errors.New("must not contain spaces, control characters, backslashes or non-ASCII characters")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("is not a URL")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return nil, errors.New("must be an absolute http:// or https:// URL")
	}
	if u.Opaque != "" || u.Host == "" || !strings.HasPrefix(raw[len(u.Scheme):], "://") {
		return nil, errors.New("must be an absolute http:// or https:// URL")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return nil, errors.New("must not contain user information")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return nil, errors.New("must name a host")
	}
	if ip := net.ParseIP(host); ip == nil && !validHostname(host) {
		return nil, errors.New("must name a valid host")
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, errors.New("has an invalid port")
	} else {
		port = strconv.Itoa(n)
	}
	esc := strings.ToLower(u.EscapedPath())
	if strings.Contains(esc, "%2f") || strings.Contains(esc, "%5c") || strings.Contains(esc, "%2e") || strings.Contains(esc, "%00") {
		return nil, errors.New("must not contain encoded slashes, backslashes or dots in its path")
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return nil, errors.New("must not contain . or .. path segments")
		}
	}
	if strings.HasPrefix(path, "//") {
		return nil, errors.New("must not start its path with //")
	}
	return &target{scheme: scheme, host: host, port: port, path: path, u: u}, nil
}

// normalizeTargetPrefix validates an allow-list entry and returns its canonical form: scheme,
// host and a path, without query or fragment; the default port is dropped.
func normalizeTargetPrefix(raw string) (string, error) {
	t, err := parseTarget(strings.TrimSpace(raw))
	if err != nil {
		return "", err
	}
	if t.u.RawQuery != "" || t.u.ForceQuery || t.u.Fragment != "" || strings.Contains(raw, "#") {
		return "", errors.New("must not have a query or fragment")
	}
	return t.prefixString(), nil
}

func (t *target) prefixString() string {
	host := t.host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if d := map[string]string{"http": "80", "https": "443"}[t.scheme]; t.port != d {
		host += ":" + t.port
	}
	return t.scheme + "://" + host + t.path
}

// matches reports whether t lies under the allow-list prefix p (already normalised).
func (t *target) matches(p *target) bool {
	if t.scheme != p.scheme || t.host != p.host || t.port != p.port {
		return false
	}
	if p.path == "/" || t.path == p.path {
		return true
	}
	prefix := p.path
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return strings.HasPrefix(t.path, prefix)
}

// ErrRedirectNotAllowed: the external-login target is not on the tenant's allow-list.
var ErrRedirectNotAllowed = errors.New("redirect target not allowed")

// CheckRedirectTarget returns the URL to redirect to when raw is allowed by the tenant's
// allow-list, re-serialised from what was checked; otherwise ErrRedirectNotAllowed.
func (e *Engine) CheckRedirectTarget(ctx context.Context, tenantID, raw string) (string, error) {
	t, err := parseTarget(raw)
	if err != nil {
		return "", fmt.Errorf("%w: targetURI %v", ErrRedirectNotAllowed, err)
	}
	s, err := e.tokenSettings(ctx, e.store, tenantID)
	if err != nil {
		return "", err
	}
	for _, entry := range s.RedirectTargets {
		p, err := parseTarget(entry)
		if err == nil && t.matches(p) {
			return t.u.String(), nil
		}
	}
	return "", fmt.Errorf("%w: targetURI is not on the tenant's allow-list", ErrRedirectNotAllowed)
}

// PurgeTokens deletes one-time tokens, login sessions and revocation records that expired more
// than a minute ago. A deleted token or session is as dead as an expired one, so a purge can
// never make one valid again.
func (e *Engine) PurgeTokens(ctx context.Context) (int64, error) {
	n, err := e.store.PurgeTokens(ctx, store.TokenPurge{Before: e.clock.Now().Add(-time.Minute), Batch: 1000})
	e.metrics.purgedAdd("tokens", n)
	return n, err
}
