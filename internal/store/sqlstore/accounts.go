package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/otpd/otpd/internal/store"
)

// Tenants, applications, API keys and users.

const tenantCols = `id, name, settings, created_at`

var (
	sqlInsertTenant    = def(`INSERT INTO tenants (` + tenantCols + `) VALUES ($1, $2, $3, $4)`)
	sqlGetTenant       = def(`SELECT ` + tenantCols + ` FROM tenants WHERE id = $1`)
	sqlGetTenantByName = def(`SELECT ` + tenantCols + ` FROM tenants WHERE name = $1`)
	sqlListTenants     = def(`SELECT ` + tenantCols + ` FROM tenants ORDER BY id`)
	sqlCountTenants    = def(`SELECT count(*) FROM tenants`)
)

func scanTenant(sc scanner) (*store.Tenant, error) {
	var t store.Tenant
	var created int64
	if err := sc.Scan(&t.ID, &t.Name, &t.Settings, &created); err != nil {
		return nil, err
	}
	t.CreatedAt = fromMs(created)
	return &t, nil
}

// CreateTenant inserts t; ErrAlreadyExists if the id or the name is taken.
func (q *queries) CreateTenant(ctx context.Context, t *store.Tenant) error {
	if t.ID == "" {
		t.ID = newID()
	}
	jsonOrEmpty(&t.Settings)
	t.CreatedAt = truncMs(t.CreatedAt)
	_, err := q.exec(ctx, sqlInsertTenant, t.ID, t.Name, t.Settings, ms(t.CreatedAt))
	return wrap(err, "create tenant")
}

func (q *queries) GetTenant(ctx context.Context, id string) (*store.Tenant, error) {
	t, err := scanTenant(q.queryRow(ctx, false, sqlGetTenant, id))
	return t, wrap(err, "get tenant")
}

func (q *queries) GetTenantByName(ctx context.Context, name string) (*store.Tenant, error) {
	t, err := scanTenant(q.queryRow(ctx, false, sqlGetTenantByName, name))
	return t, wrap(err, "get tenant by name")
}

// ListTenants returns every tenant, oldest first.
func (q *queries) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	rows, err := q.query(ctx, false, sqlListTenants)
	ts, err := scanAll(rows, err, scanTenant)
	return ts, wrap(err, "list tenants")
}

func (q *queries) CountTenants(ctx context.Context) (int, error) {
	var n int
	err := q.queryRow(ctx, false, sqlCountTenants).Scan(&n)
	return n, wrap(err, "count tenants")
}

const applicationCols = `id, tenant_id, name, client_id, client_secret_hash, settings, created_at`

var (
	sqlInsertApplication        = def(`INSERT INTO applications (` + applicationCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7)`)
	sqlGetApplication           = def(`SELECT ` + applicationCols + ` FROM applications WHERE tenant_id = $1 AND id = $2`)
	sqlGetApplicationByClientID = def(`SELECT ` + applicationCols + ` FROM applications WHERE client_id = $1 AND client_id <> ''`)
	sqlListApplications         = def(`SELECT ` + applicationCols + ` FROM applications WHERE tenant_id = $1 ORDER BY id`)
	// The application's API keys go with it: ON DELETE CASCADE, in the same statement.
	sqlDeleteApplication = def(`DELETE FROM applications WHERE tenant_id = $1 AND id = $2`)
)

func scanApplication(sc scanner) (*store.Application, error) {
	var a store.Application
	var created int64
	if err := sc.Scan(&a.ID, &a.TenantID, &a.Name, &a.ClientID, &a.ClientSecretHash, &a.Settings, &created); err != nil {
		return nil, err
	}
	a.CreatedAt = fromMs(created)
	return &a, nil
}

// CreateApplication inserts a; ErrAlreadyExists if the id or a non-empty client id is taken,
// ErrNotFound if the tenant does not exist.
func (q *queries) CreateApplication(ctx context.Context, a *store.Application) error {
	if a.ID == "" {
		a.ID = newID()
	}
	jsonOrEmpty(&a.Settings)
	a.CreatedAt = truncMs(a.CreatedAt)
	_, err := q.exec(ctx, sqlInsertApplication, a.ID, a.TenantID, a.Name, a.ClientID,
		nullBytes(a.ClientSecretHash), a.Settings, ms(a.CreatedAt))
	return wrap(err, "create application")
}

func (q *queries) GetApplication(ctx context.Context, tenantID, id string) (*store.Application, error) {
	a, err := scanApplication(q.queryRow(ctx, false, sqlGetApplication, tenantID, id))
	return a, wrap(err, "get application")
}

// GetApplicationByClientID looks an application up by its client id, across tenants.
func (q *queries) GetApplicationByClientID(ctx context.Context, clientID string) (*store.Application, error) {
	a, err := scanApplication(q.queryRow(ctx, false, sqlGetApplicationByClientID, clientID))
	return a, wrap(err, "get application by client id")
}

// ListApplications returns the tenant's applications, oldest first.
func (q *queries) ListApplications(ctx context.Context, tenantID string) ([]store.Application, error) {
	rows, err := q.query(ctx, false, sqlListApplications, tenantID)
	as, err := scanAll(rows, err, scanApplication)
	return as, wrap(err, "list applications")
}

// DeleteApplication deletes the application and, in the same statement, its API keys.
func (q *queries) DeleteApplication(ctx context.Context, tenantID, id string) error {
	n, err := affected(q.exec(ctx, sqlDeleteApplication, tenantID, id))
	if err == nil && n == 0 {
		err = sql.ErrNoRows
	}
	return wrap(err, "delete application")
}

const apiKeyCols = `id, tenant_id, application_id, role, secret_hash, created_at, revoked_at`

var (
	sqlInsertAPIKey = def(`INSERT INTO api_keys (` + apiKeyCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7)`)
	sqlGetAPIKey    = def(`SELECT ` + apiKeyCols + ` FROM api_keys WHERE id = $1`)
)

// CreateAPIKey inserts k; ErrNotFound if its application is not one of its tenant's.
func (q *queries) CreateAPIKey(ctx context.Context, k *store.APIKey) error {
	if k.ID == "" {
		k.ID = newID()
	}
	k.CreatedAt = truncMs(k.CreatedAt)
	k.RevokedAt = truncMsPtr(k.RevokedAt)
	_, err := q.exec(ctx, sqlInsertAPIKey, k.ID, k.TenantID, nullStr(k.ApplicationID), k.Role,
		k.SecretHash, ms(k.CreatedAt), nullMs(k.RevokedAt))
	return wrap(err, "create api key")
}

// GetAPIKey returns the key with that public id, whatever its tenant, revoked or not.
func (q *queries) GetAPIKey(ctx context.Context, id string) (*store.APIKey, error) {
	var k store.APIKey
	var app sql.NullString
	var created int64
	var revoked sql.NullInt64
	err := q.queryRow(ctx, false, sqlGetAPIKey, id).Scan(&k.ID, &k.TenantID, &app, &k.Role, &k.SecretHash, &created, &revoked)
	if err != nil {
		return nil, wrap(err, "get api key")
	}
	k.ApplicationID = app.String
	k.CreatedAt = fromMs(created)
	k.RevokedAt = fromNullMs(revoked)
	return &k, nil
}

const userCols = `id, tenant_id, login, email, phone, external_id, first_name, last_name, language,
	enabled, role, created_at, updated_at, version`

var (
	sqlInsertUser = def(`INSERT INTO users (` + userCols + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`)
	sqlGetUser             = def(`SELECT ` + userCols + ` FROM users WHERE tenant_id = $1 AND id = $2`)
	sqlGetUserByLogin      = def(`SELECT ` + userCols + ` FROM users WHERE tenant_id = $1 AND login = $2 AND login <> ''`)
	sqlGetUserByExternalID = def(`SELECT ` + userCols + ` FROM users WHERE tenant_id = $1 AND external_id = $2 AND external_id <> ''`)
	sqlListUsers           = def(`SELECT ` + userCols + ` FROM users WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`)
	sqlUpdateUser          = def(`UPDATE users SET login = $3, email = $4, phone = $5, external_id = $6,
		first_name = $7, last_name = $8, language = $9, enabled = $10, role = $11, updated_at = $12,
		version = version + 1
		WHERE tenant_id = $1 AND id = $2 AND version = $13`)
	sqlUserExists = def(`SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2`)
	sqlDeleteUser = def(`DELETE FROM users WHERE tenant_id = $1 AND id = $2`)
)

func scanUser(sc scanner) (*store.User, error) {
	var u store.User
	var created, updated int64
	err := sc.Scan(&u.ID, &u.TenantID, &u.Login, &u.Email, &u.Phone, &u.ExternalID, &u.FirstName,
		&u.LastName, &u.Language, &u.Enabled, &u.Role, &created, &updated, &u.Version)
	if err != nil {
		return nil, err
	}
	u.CreatedAt = fromMs(created)
	u.UpdatedAt = fromMs(updated)
	return &u, nil
}

// CreateUser inserts u with version 1; ErrAlreadyExists if the id, or a non-empty login or
// external id, is taken in the tenant.
func (q *queries) CreateUser(ctx context.Context, u *store.User) error {
	if u.ID == "" {
		u.ID = newID()
	}
	u.CreatedAt = truncMs(u.CreatedAt)
	u.UpdatedAt = truncMs(u.UpdatedAt)
	u.Version = 1
	_, err := q.exec(ctx, sqlInsertUser, u.ID, u.TenantID, u.Login, u.Email, u.Phone, u.ExternalID,
		u.FirstName, u.LastName, u.Language, u.Enabled, u.Role, ms(u.CreatedAt), ms(u.UpdatedAt), u.Version)
	return wrap(err, "create user")
}

func (q *queries) GetUser(ctx context.Context, tenantID, id string) (*store.User, error) {
	u, err := scanUser(q.queryRow(ctx, false, sqlGetUser, tenantID, id))
	return u, wrap(err, "get user")
}

// GetUserByLogin finds a user by login (unique per tenant).
func (q *queries) GetUserByLogin(ctx context.Context, tenantID, login string) (*store.User, error) {
	u, err := scanUser(q.queryRow(ctx, false, sqlGetUserByLogin, tenantID, login))
	return u, wrap(err, "get user by login")
}

// GetUserByExternalID finds a user by external id (unique per tenant).
func (q *queries) GetUserByExternalID(ctx context.Context, tenantID, externalID string) (*store.User, error) {
	u, err := scanUser(q.queryRow(ctx, false, sqlGetUserByExternalID, tenantID, externalID))
	return u, wrap(err, "get user by external id")
}

// ListUsers returns up to limit (default 50, at most 500) users with id > afterID, by id.
func (q *queries) ListUsers(ctx context.Context, tenantID string, afterID string, n int) ([]store.User, error) {
	rows, err := q.query(ctx, false, sqlListUsers, tenantID, afterID, limit(n, 50, 500))
	us, err := scanAll(rows, err, scanUser)
	return us, wrap(err, "list users")
}

// UpdateUser writes every field but the id, tenant and creation time if the stored version is
// still u.Version, and sets u.Version to the new one. ErrConflict if the version moved,
// ErrNotFound if the user is gone, ErrAlreadyExists if the new login or external id is taken.
func (q *queries) UpdateUser(ctx context.Context, u *store.User) error {
	u.UpdatedAt = truncMs(u.UpdatedAt)
	n, err := affected(q.exec(ctx, sqlUpdateUser, u.TenantID, u.ID, u.Login, u.Email, u.Phone,
		u.ExternalID, u.FirstName, u.LastName, u.Language, u.Enabled, u.Role, ms(u.UpdatedAt), u.Version))
	if err != nil {
		return wrap(err, "update user")
	}
	if n == 0 {
		return q.whyNotUpdated(ctx, sqlUserExists, "update user", u.TenantID, u.ID)
	}
	u.Version++
	return nil
}

// whyNotUpdated tells a lost compare-and-swap (ErrConflict) from a missing row (ErrNotFound).
func (q *queries) whyNotUpdated(ctx context.Context, existsSQL, op string, args ...any) error {
	var one int
	err := q.queryRow(ctx, true, existsSQL, args...).Scan(&one)
	if err == nil {
		return fmt.Errorf("sqlstore: %s: version changed: %w", op, store.ErrConflict)
	}
	return wrap(err, op)
}

func (q *queries) DeleteUser(ctx context.Context, tenantID, id string) error {
	n, err := affected(q.exec(ctx, sqlDeleteUser, tenantID, id))
	if err == nil && n == 0 {
		err = sql.ErrNoRows
	}
	return wrap(err, "delete user")
}
