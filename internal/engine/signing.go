package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
)

// Signing keys: otpd signs the bearer JWTs of its vendor surfaces (BSG's /api/auth/login, the
// OAuth token endpoint) with ES256 keys it generates itself, keeps sealed in the database, and
// publishes as a JWKS. A key signs for SigningKeyLifetime, then a new one takes over; an old key
// still verifies until SigningKeyRetention after its creation, then the purge deletes it. Every
// instance reads the keys from the database, so a token signed by one instance verifies on all.
const (
	SigningKeyLifetime  = 30 * 24 * time.Hour
	SigningKeyRetention = SigningKeyLifetime + 7*24*time.Hour // outlives any token otpd issues
	signingReloadEvery  = time.Minute
)

// ErrInvalidToken: a JWT that is malformed, signed by an unknown key, expired or not yet valid.
var ErrInvalidToken = errors.New("invalid token")

type signingKey struct {
	id      string
	priv    *ecdsa.PrivateKey
	created time.Time
}

// signer caches the deployment's signing keys, newest first.
type signer struct {
	mu       sync.Mutex
	keys     []signingKey
	loadedAt time.Time
}

// signingKeys returns the keys, reloading them from the database when the cache is older than a
// minute or when force is set (an unknown kid), and creating a key when none is current.
func (e *Engine) signingKeys(ctx context.Context, force bool) ([]signingKey, error) {
	s := &e.signer
	s.mu.Lock()
	defer s.mu.Unlock()
	now := e.clock.Now()
	age := now.Sub(s.loadedAt)
	loaded := !s.loadedAt.IsZero() && age >= 0 // a clock that went back forces a reload
	fresh := loaded && age < signingReloadEvery
	if force {
		fresh = loaded && age < time.Second // at most once a second, however many unknown kids arrive
	}
	if fresh && len(s.keys) > 0 && now.Sub(s.keys[0].created) < SigningKeyLifetime {
		return s.keys, nil
	}
	rows, err := e.store.ListSigningKeys(ctx, now.Add(-SigningKeyRetention))
	if err != nil {
		return nil, err
	}
	ks := make([]signingKey, 0, len(rows)+1)
	for _, r := range rows {
		k, err := e.openSigningKey(r)
		if err != nil {
			return nil, err
		}
		ks = append(ks, k)
	}
	if len(ks) == 0 || now.Sub(ks[0].created) >= SigningKeyLifetime {
		k, err := e.newSigningKey(ctx, now)
		if err != nil {
			return nil, err
		}
		ks = append([]signingKey{k}, ks...)
	}
	s.keys, s.loadedAt = ks, now
	return ks, nil
}

func (e *Engine) openSigningKey(r store.SigningKey) (signingKey, error) {
	der, err := e.keys.Open(r.PrivateKey, []byte("signing_keys:"+r.ID))
	if err != nil {
		return signingKey{}, fmt.Errorf("signing key %s: %w", r.ID, err)
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return signingKey{}, fmt.Errorf("signing key %s: %w", r.ID, err)
	}
	priv, ok := pk.(*ecdsa.PrivateKey)
	if !ok || r.Algorithm != "ES256" {
		return signingKey{}, fmt.Errorf("signing key %s: unsupported algorithm %s", r.ID, r.Algorithm)
	}
	return signingKey{id: r.ID, priv: priv, created: r.CreatedAt}, nil
}

func (e *Engine) newSigningKey(ctx context.Context, now time.Time) (signingKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return signingKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return signingKey{}, err
	}
	id, err := keys.RandomToken(12)
	if err != nil {
		return signingKey{}, err
	}
	sealed, err := e.keys.Seal(der, []byte("signing_keys:"+id))
	if err != nil {
		return signingKey{}, err
	}
	if err := e.store.CreateSigningKey(ctx, &store.SigningKey{ID: id, Algorithm: "ES256", PrivateKey: sealed, CreatedAt: now}); err != nil {
		return signingKey{}, err
	}
	return signingKey{id: id, priv: priv, created: now.Truncate(time.Millisecond)}, nil
}

// SignJWT signs claims with the current key (ES256, "kid" header set).
func (e *Engine) SignJWT(ctx context.Context, claims jwt.Claims) (string, error) {
	ks, err := e.signingKeys(ctx, false)
	if err != nil {
		return "", err
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = ks[0].id
	return t.SignedString(ks[0].priv)
}

// ParseJWT verifies token's signature (ES256 only, by its kid) and its exp (required) and nbf
// against the engine's clock, and decodes it into claims. Every failure is ErrInvalidToken.
func (e *Engine) ParseJWT(ctx context.Context, token string, claims jwt.Claims) error {
	if len(token) > 8192 {
		return ErrInvalidToken
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"}), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(e.clock.Now))
	_, err := p.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		for _, force := range []bool{false, true} {
			ks, err := e.signingKeys(ctx, force)
			if err != nil {
				return nil, err
			}
			for _, k := range ks {
				if k.id == kid {
					return &k.priv.PublicKey, nil
				}
			}
		}
		return nil, errors.New("unknown key id")
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return nil
}

// JWKS returns the public signing keys as a JSON Web Key Set.
func (e *Engine) JWKS(ctx context.Context) ([]byte, error) {
	ks, err := e.signingKeys(ctx, false)
	if err != nil {
		return nil, err
	}
	set := jose.JSONWebKeySet{}
	for _, k := range ks {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.id, Algorithm: "ES256", Use: "sig"})
	}
	return json.Marshal(set)
}
