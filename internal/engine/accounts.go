package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
)

// Principal is an authenticated caller.
type Principal struct {
	TenantID      string
	ApplicationID string // empty for tenant admin keys and the local operator
	KeyID         string // empty for the local operator
	Role          string // store.RoleAdmin | store.RoleApp
}

func (p Principal) actor() string {
	switch {
	case p.KeyID != "":
		return "key:" + p.KeyID
	case p.ApplicationID != "":
		return "app:" + p.ApplicationID
	default:
		return "operator"
	}
}

// IsAdmin reports whether p may manage its tenant.
func (p Principal) IsAdmin() bool { return p.Role == store.RoleAdmin }

func requireAdmin(p Principal) error {
	if !p.IsAdmin() {
		return fmt.Errorf("%w: this needs an admin API key", ErrForbidden)
	}
	return nil
}

// DefaultTenantName is the tenant created on first start.
const DefaultTenantName = "default"

// minBootstrapKeyLen keeps an operator-chosen admin key from being guessable.
const minBootstrapKeyLen = 32

// apiKeyID returns the lookup id and secret of a presented key. otpd's own keys carry their id;
// any other string (an operator-chosen bootstrap key) is looked up by a digest of itself.
func apiKeyID(presented string) (id, secret string) {
	if id, secret, ok := keys.ParseAPIKey(presented); ok {
		return id, secret
	}
	sum := sha256.Sum256([]byte("otpd-external-key\x00" + presented))
	return "x" + hex.EncodeToString(sum[:8]), presented
}

// Authenticate resolves a presented API key to its principal. Every failure is the same
// ErrUnauthenticated, so a caller cannot tell an unknown key from a revoked one.
func (e *Engine) Authenticate(ctx context.Context, presented string) (Principal, error) {
	if presented == "" || len(presented) > 512 {
		return Principal{}, ErrUnauthenticated
	}
	id, secret := apiKeyID(presented)
	k, err := e.store.GetAPIKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		keys.CheckSecret(secret, make([]byte, sha256.Size)) // same work as a known key
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	if !keys.CheckSecret(secret, k.SecretHash) || k.RevokedAt != nil {
		return Principal{}, ErrUnauthenticated
	}
	return Principal{TenantID: k.TenantID, ApplicationID: k.ApplicationID, KeyID: k.ID, Role: k.Role}, nil
}

// AuthenticateClient resolves OAuth client credentials (an application's client id and secret)
// to the application's principal. Like Authenticate, every failure is the same
// ErrUnauthenticated and an unknown client costs the same work as a wrong secret.
func (e *Engine) AuthenticateClient(ctx context.Context, clientID, secret string) (Principal, error) {
	if !keys.ValidClientID(clientID) || secret == "" || len(secret) > 512 {
		keys.CheckSecret(secret, make([]byte, sha256.Size))
		return Principal{}, ErrUnauthenticated
	}
	a, err := e.store.GetApplicationByClientID(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) {
		keys.CheckSecret(secret, make([]byte, sha256.Size))
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate client: %w", err)
	}
	if !keys.CheckSecret(secret, a.ClientSecretHash) {
		return Principal{}, ErrUnauthenticated
	}
	return Principal{TenantID: a.TenantID, ApplicationID: a.ID, Role: store.RoleApp}, nil
}

// Bootstrap makes sure a default tenant exists. On an empty database it creates the tenant and
// an admin API key — the given one if not empty, else a random one — and returns the key, which
// is shown once and never stored. On later starts it returns "".
func (e *Engine) Bootstrap(ctx context.Context, adminKey string) (tenantID, createdKey string, err error) {
	if adminKey != "" && len(adminKey) < minBootstrapKeyLen {
		return "", "", fmt.Errorf("bootstrap API key must be at least %d characters", minBootstrapKeyLen)
	}
	err = e.inTx(ctx, func(q store.Queries) error {
		t, err := q.GetTenantByName(ctx, DefaultTenantName)
		if err == nil {
			tenantID = t.ID
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		n, err := q.CountTenants(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			// Either another instance created the default tenant between the two reads (on
			// PostgreSQL each statement sees what has committed by then), or the operator
			// renamed or removed it: then leave things alone.
			if t, err := q.GetTenantByName(ctx, DefaultTenantName); err == nil {
				tenantID = t.ID
			}
			return nil
		}
		tenantID, createdKey, err = e.createTenant(ctx, q, DefaultTenantName, adminKey)
		return err
	})
	if errors.Is(err, store.ErrAlreadyExists) {
		// Another instance starting at the same moment created the default tenant first (its
		// transaction rolled this one back entirely): use the winner's.
		t, gerr := e.store.GetTenantByName(ctx, DefaultTenantName)
		if gerr != nil {
			return "", "", fmt.Errorf("bootstrap: %w", gerr)
		}
		return t.ID, "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("bootstrap: %w", err)
	}
	return tenantID, createdKey, nil
}

// CreateTenant creates a tenant with an admin key, shown once (operator action).
func (e *Engine) CreateTenant(ctx context.Context, name string) (tenantID, adminKey string, err error) {
	if err := validName("name", name); err != nil {
		return "", "", err
	}
	err = e.inTx(ctx, func(q store.Queries) error {
		tenantID, adminKey, err = e.createTenant(ctx, q, name, "")
		return err
	})
	return tenantID, adminKey, mapStoreErr(err)
}

func (e *Engine) createTenant(ctx context.Context, q store.Queries, name, adminKey string) (string, string, error) {
	now := e.clock.Now()
	t := &store.Tenant{ID: newID(), Name: name, Settings: "{}", CreatedAt: now}
	if err := q.CreateTenant(ctx, t); err != nil {
		return "", "", err
	}
	key, err := e.issueKey(ctx, q, t.ID, "", store.RoleAdmin, adminKey)
	if err != nil {
		return "", "", err
	}
	// The default template is born with its tenant, so its id is fixed before any send: created
	// on first use instead, two instances racing for it on PostgreSQL could leave it with the
	// id the loser drew from the sequence (ensureDefaultTemplate stays for older tenants).
	if err := q.CreateTemplate(ctx, defaultTemplate(t.ID, defaultTemplateName, now)); err != nil {
		return "", "", err
	}
	p := Principal{TenantID: t.ID, Role: store.RoleAdmin}
	if err := e.audit(ctx, q, p, "tenant.create", t.ID, "ok", ""); err != nil {
		return "", "", err
	}
	return t.ID, key, nil
}

// TenantByName resolves a tenant name (operator tooling).
func (e *Engine) TenantByName(ctx context.Context, name string) (*store.Tenant, error) {
	t, err := e.store.GetTenantByName(ctx, name)
	return t, mapStoreErr(err)
}

// ListTenants lists all tenants (operator tooling).
func (e *Engine) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	return e.store.ListTenants(ctx)
}

// issueKey stores a new API key (or the given one) and returns it in full.
func (e *Engine) issueKey(ctx context.Context, q store.Queries, tenantID, appID, role, given string) (string, error) {
	var id, full, secret string
	if given != "" {
		full = given
		id, secret = apiKeyID(given)
	} else {
		var err error
		if id, full, err = keys.NewAPIKey(); err != nil {
			return "", err
		}
		_, secret, _ = keys.ParseAPIKey(full)
	}
	k := &store.APIKey{ID: id, TenantID: tenantID, ApplicationID: appID, Role: role,
		SecretHash: keys.HashSecret(secret), CreatedAt: e.clock.Now()}
	if err := q.CreateAPIKey(ctx, k); err != nil {
		return "", err
	}
	return full, nil
}

// NewApplication is a created application with its secrets, shown once.
type NewApplication struct {
	store.Application
	ClientSecret string
	APIKey       string
}

// CreateApplication registers an API client with OAuth client credentials and an API key.
func (e *Engine) CreateApplication(ctx context.Context, p Principal, name string) (*NewApplication, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	if err := validName("name", name); err != nil {
		return nil, err
	}
	clientID, secret, err := keys.NewClientCredentials()
	if err != nil {
		return nil, err
	}
	a := &NewApplication{Application: store.Application{ID: newID(), TenantID: p.TenantID, Name: name,
		ClientID: clientID, ClientSecretHash: keys.HashSecret(secret), Settings: "{}", CreatedAt: e.clock.Now()},
		ClientSecret: secret}
	err = e.inTx(ctx, func(q store.Queries) error {
		if err := q.CreateApplication(ctx, &a.Application); err != nil {
			return err
		}
		if a.APIKey, err = e.issueKey(ctx, q, p.TenantID, a.ID, store.RoleApp, ""); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "application.create", a.ID, "ok", "")
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return a, nil
}

// ListApplications lists the tenant's applications.
func (e *Engine) ListApplications(ctx context.Context, p Principal) ([]store.Application, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	return e.store.ListApplications(ctx, p.TenantID)
}

// DeleteApplication deletes an application and revokes its keys at once.
func (e *Engine) DeleteApplication(ctx context.Context, p Principal, id string) error {
	if err := requireAdmin(p); err != nil {
		return err
	}
	return mapStoreErr(e.inTx(ctx, func(q store.Queries) error {
		if err := q.DeleteApplication(ctx, p.TenantID, id); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "application.delete", id, "ok", "")
	}))
}

// UserInput carries user fields; nil pointers are "not given" (for PATCH).
type UserInput struct {
	Login, Email, Phone, ExternalID, FirstName, LastName, Language, Role *string
	Enabled                                                              *bool
}

// CreateUser creates a user. Login is required and unique in the tenant; email and phone are
// normalised.
func (e *Engine) CreateUser(ctx context.Context, p Principal, in UserInput) (*store.User, error) {
	now := e.clock.Now()
	u := &store.User{ID: newID(), TenantID: p.TenantID, Enabled: true, Language: "en", Role: "user",
		CreatedAt: now, UpdatedAt: now}
	if in.Login == nil || strings.TrimSpace(*in.Login) == "" {
		return nil, invalid("login", "is required")
	}
	if err := applyUser(u, in); err != nil {
		return nil, err
	}
	err := e.inTx(ctx, func(q store.Queries) error {
		if err := q.CreateUser(ctx, u); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "user.create", u.ID, "ok", "")
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return u, nil
}

// GetUser returns a user of the caller's tenant.
func (e *Engine) GetUser(ctx context.Context, p Principal, id string) (*store.User, error) {
	u, err := e.store.GetUser(ctx, p.TenantID, id)
	return u, mapStoreErr(err)
}

// ListUsers pages through users by id.
func (e *Engine) ListUsers(ctx context.Context, p Principal, afterID string, limit int) ([]store.User, error) {
	if limit <= 0 || limit > 500 {
		limit = 50
	}
	return e.store.ListUsers(ctx, p.TenantID, afterID, limit)
}

// UpdateUser applies the given fields.
func (e *Engine) UpdateUser(ctx context.Context, p Principal, id string, in UserInput) (*store.User, error) {
	var u *store.User
	err := e.inTx(ctx, func(q store.Queries) error {
		var err error
		if u, err = q.GetUser(ctx, p.TenantID, id); err != nil {
			return err
		}
		if err := applyUser(u, in); err != nil {
			return err
		}
		u.UpdatedAt = e.clock.Now()
		if err := q.UpdateUser(ctx, u); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "user.update", u.ID, "ok", "")
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return u, nil
}

// DeleteUser deletes a user.
func (e *Engine) DeleteUser(ctx context.Context, p Principal, id string) error {
	return mapStoreErr(e.inTx(ctx, func(q store.Queries) error {
		if err := q.DeleteUser(ctx, p.TenantID, id); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "user.delete", id, "ok", "")
	}))
}

func applyUser(u *store.User, in UserInput) error {
	var errs ValidationErrors
	add := func(err error) {
		var v *ValidationError
		if errors.As(err, &v) {
			errs = append(errs, v)
		}
	}
	if in.Login != nil {
		l := strings.TrimSpace(*in.Login)
		if l == "" || len(l) > 256 || !utf8.ValidString(l) || strings.ContainsFunc(l, isControl) {
			add(invalid("login", "must be 1–256 printable characters"))
		}
		u.Login = l
	}
	if in.Email != nil {
		u.Email = ""
		if *in.Email != "" {
			if n, ok := NormalizeEmail(*in.Email); ok {
				u.Email = n
			} else {
				add(invalid("email", "must be an email address"))
			}
		}
	}
	if in.Phone != nil {
		u.Phone = ""
		if *in.Phone != "" {
			if n, _, ok := NormalizePhone(*in.Phone); ok {
				u.Phone = n
			} else {
				add(invalid("phone", "must be a phone number in international format"))
			}
		}
	}
	text := func(field string, dst *string, src *string, max int) {
		if src == nil {
			return
		}
		if len(*src) > max || !utf8.ValidString(*src) || strings.ContainsFunc(*src, isControl) {
			add(invalid(field, "must be at most %d printable characters", max))
		}
		*dst = strings.TrimSpace(*src)
	}
	text("external_id", &u.ExternalID, in.ExternalID, 256)
	text("first_name", &u.FirstName, in.FirstName, 256)
	text("last_name", &u.LastName, in.LastName, 256)
	text("language", &u.Language, in.Language, 16)
	text("role", &u.Role, in.Role, 64)
	if in.Enabled != nil {
		u.Enabled = *in.Enabled
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func validName(field, s string) error {
	if strings.TrimSpace(s) == "" || len(s) > 128 || !utf8.ValidString(s) || strings.ContainsFunc(s, isControl) {
		return invalid(field, "must be 1–128 printable characters")
	}
	return nil
}

// mapStoreErr turns store sentinels into engine outcomes; other errors pass through.
func mapStoreErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w", ErrNotFound)
	case errors.Is(err, store.ErrAlreadyExists):
		return fmt.Errorf("%w: already exists", ErrConflict)
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%w: changed concurrently, retry", ErrConflict)
	case errors.Is(err, store.ErrInvalidText):
		return invalid("(input)", "contains bytes that are not valid UTF-8 text, or a NUL byte")
	}
	return err
}
