package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/otpd/otpd/internal/store"
)

// IAM introspection settings of an application (the Haventec surface): where and how otpd asks
// the customer's IAM whether a requestor token is active (RFC 7662), and which role the token
// must carry. The client secret is sealed at rest and never shown again.

// Misconfigurations of an application's IAM settings, in the order they are checked. Each maps
// to its own Haventec error code (AN-OIAM-1001…1007).
var (
	ErrIAMNotEnabled          = errors.New("the application does not have IAM properties enabled")
	ErrIAMClientIDMissing     = errors.New("IAM client_id not configured")
	ErrIAMClientSecretMissing = errors.New("IAM client_secret not configured")
	ErrIAMURLMissing          = errors.New("IAM introspect url not configured")
	ErrIAMRolePathMissing     = errors.New("IAM role path not configured")
	ErrIAMRoleMissing         = errors.New("IAM role not configured")
	ErrIAMRolePathFormat      = errors.New("IAM role path format")
)

// IAMSettings are an application's IAM introspection settings as the API shows them: the
// secret only as whether it is set.
type IAMSettings struct {
	ApplicationID    string
	Enabled          bool
	IntrospectionURL string
	ClientID         string
	ClientSecretSet  bool
	RolePath         string
	AllowedRole      string
	UpdatedAt        time.Time
	// Problems lists what keeps the settings from working, in the order a request meets them
	// (empty when they are complete). Settings may be saved incomplete, to be finished later.
	Problems []error
}

// IAMInput replaces an application's IAM settings. A nil ClientSecret keeps the stored secret;
// an empty one clears it.
type IAMInput struct {
	Enabled          bool
	IntrospectionURL string
	ClientID         string
	ClientSecret     *string
	RolePath         string
	AllowedRole      string
}

func iamAAD(appID string) []byte { return []byte("application_iam:" + appID) }

// GetIAMSettings returns an application's IAM settings (disabled and empty when never set).
func (e *Engine) GetIAMSettings(ctx context.Context, p Principal, appID string) (*IAMSettings, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	if _, err := e.store.GetApplication(ctx, p.TenantID, appID); err != nil {
		return nil, mapStoreErr(err)
	}
	s, err := e.store.GetIAMSettings(ctx, p.TenantID, appID)
	if errors.Is(err, store.ErrNotFound) {
		s = &store.IAMSettings{TenantID: p.TenantID, ApplicationID: appID}
	} else if err != nil {
		return nil, err
	}
	return iamView(s), nil
}

func iamView(s *store.IAMSettings) *IAMSettings {
	return &IAMSettings{ApplicationID: s.ApplicationID, Enabled: s.Enabled, IntrospectionURL: s.IntrospectionURL,
		ClientID: s.ClientID, ClientSecretSet: len(s.ClientSecret) > 0, RolePath: s.RolePath,
		AllowedRole: s.AllowedRole, UpdatedAt: s.UpdatedAt, Problems: iamProblems(s)}
}

// SetIAMSettings replaces an application's IAM settings (admin). Fields may be left empty and
// the role path may be malformed — the settings are then reported with their problems and
// refused at use with the matching error — but every value must be printable and bounded.
func (e *Engine) SetIAMSettings(ctx context.Context, p Principal, appID string, in IAMInput) (*IAMSettings, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	var errs ValidationErrors
	field := func(name, v string, max int) string {
		v = strings.TrimSpace(v)
		if len(v) > max || !utf8.ValidString(v) || strings.ContainsFunc(v, isControl) {
			errs = append(errs, &ValidationError{name, fmt.Sprintf("must be at most %d printable characters", max)})
		}
		return v
	}
	s := &store.IAMSettings{TenantID: p.TenantID, ApplicationID: appID, Enabled: in.Enabled,
		IntrospectionURL: field("introspection_url", in.IntrospectionURL, 2048),
		ClientID:         field("client_id", in.ClientID, 256),
		RolePath:         field("role_path", in.RolePath, 256),
		AllowedRole:      field("allowed_role", in.AllowedRole, 256),
		UpdatedAt:        e.clock.Now()}
	if s.IntrospectionURL != "" {
		if err := checkIntrospectionURL(s.IntrospectionURL); err != nil {
			errs = append(errs, &ValidationError{"introspection_url", err.Error()})
		}
	}
	var secret []byte
	if in.ClientSecret != nil {
		if len(*in.ClientSecret) > 1024 || !utf8.ValidString(*in.ClientSecret) || strings.ContainsFunc(*in.ClientSecret, isControl) {
			errs = append(errs, &ValidationError{"client_secret", "must be at most 1024 printable characters"})
		} else if *in.ClientSecret != "" {
			var err error
			if secret, err = e.keys.Seal([]byte(*in.ClientSecret), iamAAD(appID)); err != nil {
				return nil, err
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	err := e.inTx(ctx, func(q store.Queries) error {
		if _, err := q.GetApplication(ctx, p.TenantID, appID); err != nil {
			return err
		}
		s.ClientSecret = secret
		if in.ClientSecret == nil {
			old, err := q.GetIAMSettings(ctx, p.TenantID, appID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if err == nil {
				s.ClientSecret = old.ClientSecret
			}
		}
		if err := q.PutIAMSettings(ctx, s); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "application.iam.update", appID, "ok", "")
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return iamView(s), nil
}

// DeleteIAMSettings removes an application's IAM settings (admin).
func (e *Engine) DeleteIAMSettings(ctx context.Context, p Principal, appID string) error {
	if err := requireAdmin(p); err != nil {
		return err
	}
	return mapStoreErr(e.inTx(ctx, func(q store.Queries) error {
		if err := q.DeleteIAMSettings(ctx, p.TenantID, appID); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "application.iam.delete", appID, "ok", "")
	}))
}

// iamProblems lists what is missing or malformed, in the order IssueUserOTP checks it.
func iamProblems(s *store.IAMSettings) []error {
	var out []error
	if !s.Enabled {
		out = append(out, ErrIAMNotEnabled)
	}
	if s.ClientID == "" {
		out = append(out, ErrIAMClientIDMissing)
	}
	if len(s.ClientSecret) == 0 {
		out = append(out, ErrIAMClientSecretMissing)
	}
	if s.IntrospectionURL == "" || checkIntrospectionURL(s.IntrospectionURL) != nil {
		out = append(out, ErrIAMURLMissing)
	}
	if s.RolePath == "" {
		out = append(out, ErrIAMRolePathMissing)
	}
	if s.AllowedRole == "" {
		out = append(out, ErrIAMRoleMissing)
	}
	if s.RolePath != "" {
		if _, err := parseRolePath(s.RolePath); err != nil {
			out = append(out, ErrIAMRolePathFormat)
		}
	}
	return out
}

// checkIntrospectionURL accepts https URLs, and http only to a loopback address: the client
// secret travels with every request, so it must not cross a network in clear text.
func checkIntrospectionURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return errors.New("must be an absolute https:// URL")
	}
	if u.User != nil {
		return errors.New("must not contain user information (use client_id and client_secret)")
	}
	if u.Fragment != "" {
		return errors.New("must not have a fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if h == "localhost" {
			return nil
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("must use https:// (plain http:// only to a loopback address)")
	}
	return errors.New("must be an absolute https:// URL")
}

// rolePath is a parsed role path: a sequence of object keys and array indexes.
type rolePath []pathStep

type pathStep struct {
	key   string
	index int // used when key == "" (an array index)
}

// parseRolePath reads a small JSONPath subset: an optional "$" root, then ".name", "[n]" and
// "['name']" / ["name"] steps; without "$" the path starts with a bare name
// ("realm_access.roles").
func parseRolePath(s string) (rolePath, error) {
	bad := fmt.Errorf("role path %q: use a.b.c, a[0] or a['b.c'] (optionally starting with $)", s)
	in := s
	var out rolePath
	if strings.HasPrefix(in, "$") {
		in = in[1:]
	} else {
		j := strings.IndexAny(in, ".[")
		if j < 0 {
			j = len(in)
		}
		if !validPathName(in[:j]) {
			return nil, bad
		}
		out = append(out, pathStep{key: in[:j]})
		in = in[j:]
	}
	for in != "" {
		switch in[0] {
		case '.':
			j := strings.IndexAny(in[1:], ".[")
			if j < 0 {
				j = len(in) - 1
			}
			name := in[1 : 1+j]
			if !validPathName(name) {
				return nil, bad
			}
			out = append(out, pathStep{key: name})
			in = in[1+j:]
		case '[':
			end := strings.IndexByte(in, ']')
			if end < 0 {
				return nil, bad
			}
			inner := in[1:end]
			if len(inner) >= 2 && (inner[0] == '\'' || inner[0] == '"') && inner[len(inner)-1] == inner[0] {
				name := inner[1 : len(inner)-1]
				if name == "" || len(name) > 128 || strings.ContainsAny(name, "'\"") {
					return nil, bad
				}
				out = append(out, pathStep{key: name})
			} else {
				n, err := strconv.Atoi(inner)
				if err != nil || n < 0 || n > 1000 || strconv.Itoa(n) != inner {
					return nil, bad
				}
				out = append(out, pathStep{index: n})
			}
			in = in[end+1:]
		default:
			return nil, bad
		}
	}
	if len(out) == 0 || len(out) > 16 {
		return nil, bad
	}
	return out, nil
}

func validPathName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}

// lookup follows the path through a decoded JSON value.
func (p rolePath) lookup(v any) (any, bool) {
	for _, st := range p {
		if st.key != "" {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[st.key]; !ok {
				return nil, false
			}
			continue
		}
		a, ok := v.([]any)
		if !ok || st.index >= len(a) {
			return nil, false
		}
		v = a[st.index]
	}
	return v, true
}

// hasRole reports whether the value at the path grants role: a string equal to it (or a
// space-separated list containing it, like OAuth's "scope"), or an array with such a string.
func hasRole(v any, role string) bool {
	switch t := v.(type) {
	case string:
		for _, f := range strings.Fields(t) {
			if f == role {
				return true
			}
		}
	case []any:
		for _, e := range t {
			if s, ok := e.(string); ok && s == role {
				return true
			}
		}
	}
	return false
}
