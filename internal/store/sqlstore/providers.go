package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// Delivery providers of tenants, their (channel, role) slots, and delivery receipts.
//
// A provider's channels are stored comma-separated on its row; the provider_routes table holds
// one row per (tenant, channel, role) so that "one primary and one secondary per channel" is a
// unique key the database enforces, also when two requests race.

const providerCols = `id, tenant_id, name, type, channels, role, settings, secrets, enabled,
	created_at, updated_at, version`

var (
	sqlInsertProvider = def(`INSERT INTO providers (` + providerCols + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`)
	sqlGetProvider    = def(`SELECT ` + providerCols + ` FROM providers WHERE tenant_id = $1 AND id = $2`)
	sqlLookupProvider = def(`SELECT ` + providerCols + ` FROM providers WHERE id = $1`)
	sqlListProviders  = def(`SELECT ` + providerCols + ` FROM providers WHERE tenant_id = $1 ORDER BY name, id`)
	sqlUpdateProvider = def(`UPDATE providers SET name = $1, type = $2, channels = $3, role = $4,
		settings = $5, secrets = $6, enabled = $7, updated_at = $8, version = version + 1
		WHERE tenant_id = $9 AND id = $10 AND version = $11`)
	sqlDeleteProvider   = def(`DELETE FROM providers WHERE tenant_id = $1 AND id = $2`)
	sqlInsertRoute      = def(`INSERT INTO provider_routes (tenant_id, channel, role, provider_id) VALUES ($1, $2, $3, $4)`)
	sqlDeleteRoutes     = def(`DELETE FROM provider_routes WHERE tenant_id = $1 AND provider_id = $2`)
	sqlProviderChannels = def(`SELECT DISTINCT channel FROM provider_routes ORDER BY channel`)
	sqlProviderExists   = def(`SELECT 1 FROM providers WHERE tenant_id = $1 AND id = $2`)
	sqlFindByProviderID = def(`SELECT ` + messageCols + ` FROM messages
		WHERE provider = $1 AND provider_message_id = $2 AND provider_message_id <> ''
			AND ($3 = '' OR tenant_id = $3)
		ORDER BY created_at DESC, id DESC LIMIT 1`)
	sqlSetMessageStatus = def(`UPDATE messages SET status = $1, updated_at = $2,
		body = CASE WHEN $3 = 1 THEN NULL ELSE body END
		WHERE tenant_id = $4 AND id = $5 AND status = $6`)
	sqlMessageInTenant = def(`SELECT 1 FROM messages WHERE tenant_id = $1 AND id = $2`)
	sqlForgetParked    = def(`DELETE FROM parked_receipts WHERE at < $1`)
	sqlParkReceipt     = def(`INSERT INTO parked_receipts (provider, provider_message_id, tenant_id, status, error, at)
		VALUES ($1, $2, $3, $4, $5, $6)`)
	sqlTakeParked = def(`DELETE FROM parked_receipts WHERE provider = $1 AND provider_message_id = $2
		RETURNING provider, provider_message_id, tenant_id, status, error, at`)
)

// parkedFor is how long a receipt waits for its message before it is forgotten.
const parkedFor = time.Hour

func scanProvider(sc scanner) (*store.Provider, error) {
	var p store.Provider
	var channels string
	var created, updated int64
	err := sc.Scan(&p.ID, &p.TenantID, &p.Name, &p.Type, &channels, &p.Role, &p.Settings, &p.Secrets,
		&p.Enabled, &created, &updated, &p.Version)
	if err != nil {
		return nil, err
	}
	if channels != "" {
		p.Channels = strings.Split(channels, ",")
	}
	p.CreatedAt = fromMs(created)
	p.UpdatedAt = fromMs(updated)
	return &p, nil
}

func checkProvider(p *store.Provider) error {
	if p.TenantID == "" || p.Name == "" || p.Type == "" {
		return errors.New("provider needs a tenant, a name and a type")
	}
	if p.Role != store.RolePrimary && p.Role != store.RoleSecondary {
		return fmt.Errorf("provider role %q is neither primary nor secondary", p.Role)
	}
	for _, c := range p.Channels {
		if c == "" || strings.Contains(c, ",") {
			return fmt.Errorf("provider channel %q is empty or holds a comma", c)
		}
	}
	return nil
}

// claimRoutes takes the provider's (channel, role) slots.
func (q *queries) claimRoutes(ctx context.Context, p *store.Provider) error {
	for _, c := range p.Channels {
		if _, err := q.exec(ctx, sqlInsertRoute, p.TenantID, c, p.Role, p.ID); err != nil {
			return err
		}
	}
	return nil
}

// atomically runs fn in a transaction of its own when q is not in one, so the provider row and
// its slots are written together.
func (q *queries) atomically(ctx context.Context, fn func(q *queries) error) error {
	if q.tx != nil {
		return fn(q)
	}
	return q.s.inTx(ctx, fn)
}

// CreateProvider stores p (an empty ID gets a UUIDv7, Version becomes 1) and takes its slots.
func (q *queries) CreateProvider(ctx context.Context, p *store.Provider) error {
	if err := checkProvider(p); err != nil {
		return fmt.Errorf("sqlstore: create provider: %w", err)
	}
	if p.ID == "" {
		p.ID = newID()
	}
	jsonOrEmpty(&p.Settings)
	p.CreatedAt = truncMs(p.CreatedAt)
	p.UpdatedAt = truncMs(p.UpdatedAt)
	p.Version = 1
	err := q.atomically(ctx, func(q *queries) error {
		if _, err := q.exec(ctx, sqlInsertProvider, p.ID, p.TenantID, p.Name, p.Type,
			strings.Join(p.Channels, ","), p.Role, p.Settings, nullBytes(p.Secrets), p.Enabled,
			ms(p.CreatedAt), ms(p.UpdatedAt), p.Version); err != nil {
			return err
		}
		return q.claimRoutes(ctx, p)
	})
	return wrap(err, "create provider")
}

func (q *queries) GetProvider(ctx context.Context, tenantID, id string) (*store.Provider, error) {
	p, err := scanProvider(q.queryRow(ctx, false, sqlGetProvider, tenantID, id))
	return p, wrap(err, "get provider")
}

// LookupProvider finds a provider by id in any tenant.
func (q *queries) LookupProvider(ctx context.Context, id string) (*store.Provider, error) {
	p, err := scanProvider(q.queryRow(ctx, false, sqlLookupProvider, id))
	return p, wrap(err, "lookup provider")
}

// ListProviders returns the tenant's providers ordered by name.
func (q *queries) ListProviders(ctx context.Context, tenantID string) ([]store.Provider, error) {
	rows, err := q.query(ctx, false, sqlListProviders, tenantID)
	ps, err := scanAll(rows, err, scanProvider)
	return ps, wrap(err, "list providers")
}

// UpdateProvider writes p if the stored version is still p.Version and moves its slots.
func (q *queries) UpdateProvider(ctx context.Context, p *store.Provider) error {
	if err := checkProvider(p); err != nil {
		return fmt.Errorf("sqlstore: update provider: %w", err)
	}
	jsonOrEmpty(&p.Settings)
	p.UpdatedAt = truncMs(p.UpdatedAt)
	err := q.atomically(ctx, func(q *queries) error {
		n, err := affected(q.exec(ctx, sqlUpdateProvider, p.Name, p.Type, strings.Join(p.Channels, ","),
			p.Role, p.Settings, nullBytes(p.Secrets), p.Enabled, ms(p.UpdatedAt), p.TenantID, p.ID, p.Version))
		if err != nil {
			return err
		}
		if n == 0 {
			var one int
			if err := q.queryRow(ctx, true, sqlProviderExists, p.TenantID, p.ID).Scan(&one); err != nil {
				return err
			}
			return store.ErrConflict
		}
		if _, err := q.exec(ctx, sqlDeleteRoutes, p.TenantID, p.ID); err != nil {
			return err
		}
		return q.claimRoutes(ctx, p)
	})
	if err != nil {
		return wrap(err, "update provider")
	}
	p.Version++
	return nil
}

// DeleteProvider deletes the provider and its slots.
func (q *queries) DeleteProvider(ctx context.Context, tenantID, id string) error {
	err := q.atomically(ctx, func(q *queries) error {
		if _, err := q.exec(ctx, sqlDeleteRoutes, tenantID, id); err != nil {
			return err
		}
		n, err := affected(q.exec(ctx, sqlDeleteProvider, tenantID, id))
		if err == nil && n == 0 {
			err = sql.ErrNoRows
		}
		return err
	})
	return wrap(err, "delete provider")
}

// ProviderChannels lists the channels some tenant's provider serves.
func (q *queries) ProviderChannels(ctx context.Context) ([]string, error) {
	rows, err := q.query(ctx, false, sqlProviderChannels)
	cs, err := scanAll(rows, err, func(sc scanner) (*string, error) {
		var c string
		return &c, sc.Scan(&c)
	})
	return cs, wrap(err, "provider channels")
}

// FindMessageByProviderID finds the newest message provider knows as providerMessageID.
func (q *queries) FindMessageByProviderID(ctx context.Context, tenantID, provider, providerMessageID string) (*store.Message, error) {
	if providerMessageID == "" {
		return nil, fmt.Errorf("sqlstore: find message: empty provider message id: %w", store.ErrNotFound)
	}
	m, err := scanMessage(q.queryRow(ctx, false, sqlFindByProviderID, provider, providerMessageID, tenantID))
	return m, wrap(err, "find message by provider id")
}

// SetMessageStatus moves a message from one status to another, if it is still in the first.
func (q *queries) SetMessageStatus(ctx context.Context, tenantID, id, from, to string, now time.Time, wipe bool) error {
	w := 0
	if wipe {
		w = 1
	}
	n, err := affected(q.exec(ctx, sqlSetMessageStatus, to, ms(now), w, tenantID, id, from))
	if err == nil && n == 0 {
		var one int
		if err = q.queryRow(ctx, true, sqlMessageInTenant, tenantID, id).Scan(&one); err == nil {
			err = store.ErrConflict
		}
	}
	return wrap(err, "set message status")
}

// SetChallengeDelivery sets a challenge's delivery summary and bumps its version.
func (q *queries) SetChallengeDelivery(ctx context.Context, tenantID, challengeID, delivery string) error {
	n, err := affected(q.exec(ctx, sqlSetDelivery, delivery, tenantID, challengeID))
	if err == nil && n == 0 {
		err = sql.ErrNoRows
	}
	return wrap(err, "set challenge delivery")
}

// ParkReceipt keeps r and forgets receipts parked for more than an hour.
func (q *queries) ParkReceipt(ctx context.Context, r *store.ParkedReceipt) error {
	r.At = truncMs(r.At)
	err := q.atomically(ctx, func(q *queries) error {
		if _, err := q.exec(ctx, sqlForgetParked, ms(r.At.Add(-parkedFor))); err != nil {
			return err
		}
		_, err := q.exec(ctx, sqlParkReceipt, r.Provider, r.ProviderMessageID, r.TenantID, r.Status, r.Error, ms(r.At))
		return err
	})
	return wrap(err, "park receipt")
}

// TakeParkedReceipts removes and returns the receipts parked for one provider message id, oldest
// first.
func (q *queries) TakeParkedReceipts(ctx context.Context, provider, providerMessageID string) ([]store.ParkedReceipt, error) {
	var out []store.ParkedReceipt
	err := q.atomically(ctx, func(q *queries) error {
		rows, err := q.query(ctx, true, sqlTakeParked, provider, providerMessageID)
		out, err = scanAll(rows, err, func(sc scanner) (*store.ParkedReceipt, error) {
			var r store.ParkedReceipt
			var at int64
			if err := sc.Scan(&r.Provider, &r.ProviderMessageID, &r.TenantID, &r.Status, &r.Error, &at); err != nil {
				return nil, err
			}
			r.At = fromMs(at)
			return &r, nil
		})
		return err
	})
	if err != nil {
		return nil, wrap(err, "take parked receipts")
	}
	for i := 1; i < len(out); i++ { // RETURNING has no order
		for j := i; j > 0 && out[j].At.Before(out[j-1].At); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}
