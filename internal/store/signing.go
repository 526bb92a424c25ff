package store

import (
	"context"
	"time"
)

// SigningKey is a key otpd signs its JWTs with. The private key is sealed (keys.Keyring, with
// associated data "signing_keys:"+ID); the public half is derived from it when loaded.
type SigningKey struct {
	ID         string // the JWT "kid"
	Algorithm  string // "ES256"
	PrivateKey []byte // sealed PKCS #8 DER
	CreatedAt  time.Time
}

// SigningQueries stores signing keys. Keys are deployment-wide, not per tenant: the tenant is a
// claim inside the token.
type SigningQueries interface {
	CreateSigningKey(ctx context.Context, k *SigningKey) error
	// ListSigningKeys returns every key created at or after since, newest first.
	ListSigningKeys(ctx context.Context, since time.Time) ([]SigningKey, error)
	// DeleteSigningKeys deletes keys created before cutoff and returns how many.
	DeleteSigningKeys(ctx context.Context, before time.Time) (int64, error)
}
