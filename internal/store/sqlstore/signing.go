package sqlstore

import (
	"context"
	"time"

	"github.com/otpd/otpd/internal/store"
)

var (
	sqlInsertSigningKey  = def(`INSERT INTO signing_keys (id, algorithm, private_key, created_at) VALUES ($1, $2, $3, $4)`)
	sqlListSigningKeys   = def(`SELECT id, algorithm, private_key, created_at FROM signing_keys WHERE created_at >= $1 ORDER BY created_at DESC, id DESC`)
	sqlDeleteSigningKeys = def(`DELETE FROM signing_keys WHERE created_at < $1`)
)

// CreateSigningKey stores a new signing key.
func (q *queries) CreateSigningKey(ctx context.Context, k *store.SigningKey) error {
	k.CreatedAt = truncMs(k.CreatedAt)
	_, err := q.exec(ctx, sqlInsertSigningKey, k.ID, k.Algorithm, k.PrivateKey, ms(k.CreatedAt))
	return wrap(err, "create signing key")
}

// ListSigningKeys returns the keys created at or after since, newest first.
func (q *queries) ListSigningKeys(ctx context.Context, since time.Time) ([]store.SigningKey, error) {
	rows, err := q.query(ctx, false, sqlListSigningKeys, ms(since))
	ks, err := scanAll(rows, err, func(sc scanner) (*store.SigningKey, error) {
		var k store.SigningKey
		var created int64
		if err := sc.Scan(&k.ID, &k.Algorithm, &k.PrivateKey, &created); err != nil {
			return nil, err
		}
		k.CreatedAt = fromMs(created)
		return &k, nil
	})
	return ks, wrap(err, "list signing keys")
}

// DeleteSigningKeys deletes the keys created before cutoff.
func (q *queries) DeleteSigningKeys(ctx context.Context, before time.Time) (int64, error) {
	n, err := affected(q.exec(ctx, sqlDeleteSigningKeys, ms(before)))
	return n, wrap(err, "delete signing keys")
}
