package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	var c bsgClaims
	if err := e.ParseJWT(ctx, token, &c); err != nil {
		if strings.Contains(err.Error(), jwt.ErrTokenExpired.Error()) {
			return Principal{}, ErrTokenExpired
		}
		return Principal{}, ErrInvalidToken
	}
	if !slices.Contains(c.Audience, bsgAudience) || c.Subject == "" {
		return Principal{}, ErrInvalidToken
	}
	k, err := e.store.GetAPIKey(ctx, c.Subject)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrInvalidToken
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate token: %w", err)
	}
	if k.RevokedAt != nil || k.TenantID != c.Tenant {
		return Principal{}, ErrInvalidToken
	}
	return Principal{TenantID: k.TenantID, ApplicationID: k.ApplicationID, KeyID: k.ID, Role: k.Role}, nil
}
