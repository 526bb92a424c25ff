package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
)

// Bearer tokens of the BSG surface: POST /api/auth/login exchanges an otpd API key for a JWT that
// otpd signs (signing.go); every /api/2fa/ call presents it. The token names the API key it was
// issued for, and every use looks the key up again, so revoking the key (or deleting its
// application) stops its tokens at once, on every instance.

const bsgAudience = "otpd:bsg"

// ErrTokenExpired: a bearer token that was valid but whose lifetime has passed. It wraps
// ErrInvalidToken.
var ErrTokenExpired = fmt.Errorf("%w: expired", ErrInvalidToken)

type bsgClaims struct {
	jwt.RegisteredClaims
	Tenant string `json:"tid"`
}

// verifiedTokens remembers tokens whose signature and claims were checked, by the SHA-256 of
// the whole token, until they expire: an ECDSA verification costs more than the rest of a
// verify_otp call. Only the same token string hits; its API key is still looked up on every
// use. Bounded: when full, it starts over.
type verifiedTokens struct {
	mu sync.Mutex
	m  map[[32]byte]verifiedToken
}

type verifiedToken struct {
	subject, tenant string
	exp             time.Time
}

const maxVerifiedTokens = 10000

// parseBSGToken checks a token (or finds it checked) and returns its subject and tenant.
func (e *Engine) parseBSGToken(ctx context.Context, token string) (verifiedToken, error) {
	if len(token) > 8192 {
		return verifiedToken{}, ErrInvalidToken
	}
	sum := sha256.Sum256([]byte(token))
	now := e.clock.Now()
	vt := &e.bsgTokens
	vt.mu.Lock()
	v, ok := vt.m[sum]
	vt.mu.Unlock()
	if ok {
		if now.Before(v.exp) {
			return v, nil
		}
		return verifiedToken{}, ErrTokenExpired
	}
	var c bsgClaims
	if err := e.ParseJWT(ctx, token, &c); err != nil {
		if strings.Contains(err.Error(), jwt.ErrTokenExpired.Error()) {
			return verifiedToken{}, ErrTokenExpired
		}
		return verifiedToken{}, ErrInvalidToken
	}
	if !slices.Contains(c.Audience, bsgAudience) || c.Subject == "" || c.ExpiresAt == nil {
		return verifiedToken{}, ErrInvalidToken
	}
	v = verifiedToken{subject: c.Subject, tenant: c.Tenant, exp: c.ExpiresAt.Time}
	vt.mu.Lock()
	if vt.m == nil || len(vt.m) >= maxVerifiedTokens {
		vt.m = make(map[[32]byte]verifiedToken)
	}
	vt.m[sum] = v
	vt.mu.Unlock()
	return v, nil
}

// LoginBSG exchanges an API key for a bearer token and says when it expires. Every failure is
// ErrUnauthenticated.
func (e *Engine) LoginBSG(ctx context.Context, apiKey string) (string, time.Time, error) {
	p, err := e.Authenticate(ctx, apiKey)
	if err != nil {
		return "", time.Time{}, err
	}
	return e.bsgToken(ctx, p)
}

// RefreshBSG issues a fresh token for an authenticated principal.
func (e *Engine) RefreshBSG(ctx context.Context, p Principal) (string, time.Time, error) {
	if p.KeyID == "" {
		return "", time.Time{}, ErrUnauthenticated
	}
	return e.bsgToken(ctx, p)
}

func (e *Engine) bsgToken(ctx context.Context, p Principal) (string, time.Time, error) {
	now := e.clock.Now()
	exp := now.Add(e.cfg.Messaging.withDefaults().TokenTTL)
	jti, err := keys.RandomToken(12)
	if err != nil {
		return "", time.Time{}, err
	}
	tok, err := e.SignJWT(ctx, bsgClaims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: "otpd", Subject: p.KeyID, Audience: jwt.ClaimStrings{bsgAudience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp), ID: jti},
		Tenant: p.TenantID,
	})
	return tok, exp, err
}

// AuthenticateBSG resolves a bearer token of the BSG surface to the principal of its API key.
// A malformed, foreign, forged or expired token, or one whose key is revoked or gone, is
// ErrInvalidToken (ErrTokenExpired for an expired one).
func (e *Engine) AuthenticateBSG(ctx context.Context, token string) (Principal, error) {
	c, err := e.parseBSGToken(ctx, token)
	if err != nil {
		return Principal{}, err
	}
	k, err := e.store.GetAPIKey(ctx, c.subject)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrInvalidToken
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate token: %w", err)
	}
	if k.RevokedAt != nil || k.TenantID != c.tenant {
		return Principal{}, ErrInvalidToken
	}
	return Principal{TenantID: k.TenantID, ApplicationID: k.ApplicationID, KeyID: k.ID, Role: k.Role}, nil
}
