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

// The OAuth2 core of the token surfaces: client-credentials access tokens (ES256 JWTs signed
// with the deployment's rotating keys), RFC 7662 introspection and RFC 7009 revocation.
//
// Revocation is a row in the database keyed by the token's "jti", read on every verification;
// there is no in-process cache, so a token revoked through one instance is refused by every
// instance from the next request on. Deleting the application that owns a token kills the
// token too: every verification also reads the application.

// accessAudience marks otpd's OAuth access tokens; JWTs otpd signs for other purposes (the
// id_token, other surfaces' bearer tokens) do not carry it and are refused as access tokens.
const accessAudience = "urn:otpd:oauth:access"

// Values of the token_use claim.
const (
	tokenUseAccess = "access"
	tokenUseID     = "id"
)

// oauthClaims are the claims of the access and id tokens.
type oauthClaims struct {
	jwt.RegisteredClaims
	TenantID string `json:"tid"`
	ClientID string `json:"client_id,omitempty"`
	AppID    string `json:"app_id,omitempty"`
	Use      string `json:"token_use"`
	Scope    string `json:"scope,omitempty"`
}

// AccessToken is the answer of the token endpoint.
type AccessToken struct {
	AccessToken string
	IDToken     string
	TokenType   string // "bearer"
	ExpiresIn   time.Duration
	ExpiresAt   time.Time
}

// IssueAccessToken issues an access token (and an id token describing the client) to the
// application p authenticated as by AuthenticateClient.
func (e *Engine) IssueAccessToken(ctx context.Context, p Principal) (*AccessToken, error) {
	if p.ApplicationID == "" {
		return nil, ErrUnauthenticated
	}
	a, err := e.store.GetApplication(ctx, p.TenantID, p.ApplicationID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	now := e.clock.Now().Truncate(time.Second)
	exp := now.Add(e.cfg.Tokens.AccessTokenTTL)
	jti, err := keys.RandomToken(16)
	if err != nil {
		return nil, err
	}
	base := jwt.RegisteredClaims{Issuer: e.cfg.Tokens.Issuer, Subject: a.ID, IssuedAt: jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp)}
	access := oauthClaims{RegisteredClaims: base, TenantID: a.TenantID, ClientID: a.ClientID, AppID: a.ID, Use: tokenUseAccess}
	access.ID = jti
	access.Audience = jwt.ClaimStrings{accessAudience}
	at, err := e.SignJWT(ctx, access)
	if err != nil {
		return nil, err
	}
	idc := oauthClaims{RegisteredClaims: base, TenantID: a.TenantID, ClientID: a.ClientID, AppID: a.ID, Use: tokenUseID}
	idc.Audience = jwt.ClaimStrings{a.ClientID}
	idc.ID = jti + ".id"
	it, err := e.SignJWT(ctx, idc)
	if err != nil {
		return nil, err
	}
	return &AccessToken{AccessToken: at, IDToken: it, TokenType: "bearer", ExpiresIn: exp.Sub(now), ExpiresAt: exp}, nil
}

// accessTokenCache remembers access tokens whose signature and claims were checked, by the
// SHA-256 of the token, until they expire. Checking an ES256 signature is most of the CPU an
// authenticated request costs, and a client sends the same token for hours. Only the
// signature check is remembered: revocation and the application are read from the database on
// every request, so a revoked token is refused at once on every instance all the same. The cache
// holds at most maxCachedAccessTokens entries and starts afresh when full.
type accessTokenCache struct {
	mu sync.Mutex
	m  map[[32]byte]*oauthClaims
}

const maxCachedAccessTokens = 10000

// parseAccess verifies an access token's signature, lifetime, issuer, audience and use.
func (e *Engine) parseAccess(ctx context.Context, token string) (*oauthClaims, error) {
	if len(token) > 8192 {
		return nil, ErrInvalidToken
	}
	sum := sha256.Sum256([]byte(token))
	now := e.clock.Now()
	cache := &e.accessTokens
	cache.mu.Lock()
	c, ok := cache.m[sum]
	cache.mu.Unlock()
	if ok {
		if now.Before(c.ExpiresAt.Time) && !now.Before(c.NotBefore.Time) {
			return c, nil
		}
		return nil, ErrInvalidToken
	}
	c = &oauthClaims{}
	if err := e.ParseJWT(ctx, token, c); err != nil {
		return nil, err
	}
	if c.Use != tokenUseAccess || c.Issuer != e.cfg.Tokens.Issuer || c.ID == "" || c.TenantID == "" ||
		c.AppID == "" || !slices.Contains(c.Audience, accessAudience) || c.ExpiresAt == nil || c.NotBefore == nil {
		return nil, ErrInvalidToken
	}
	cache.mu.Lock()
	if cache.m == nil || len(cache.m) >= maxCachedAccessTokens {
		cache.m = make(map[[32]byte]*oauthClaims)
	}
	cache.m[sum] = c
	cache.mu.Unlock()
	return c, nil
}

// VerifyAccessToken checks a bearer access token and returns the application it was issued to.
// It reads the revocation table and the application on every call. Every failure is
// ErrUnauthenticated.
func (e *Engine) VerifyAccessToken(ctx context.Context, token string) (Principal, error) {
	c, err := e.parseAccess(ctx, token)
	if err != nil {
		return Principal{}, ErrUnauthenticated
	}
	revoked, err := e.store.IsTokenRevoked(ctx, c.ID)
	if err != nil {
		return Principal{}, fmt.Errorf("verify access token: %w", err)
	}
	if revoked {
		return Principal{}, ErrUnauthenticated
	}
	if _, err := e.store.GetApplication(ctx, c.TenantID, c.AppID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Principal{}, ErrUnauthenticated
		}
		return Principal{}, fmt.Errorf("verify access token: %w", err)
	}
	return Principal{TenantID: c.TenantID, ApplicationID: c.AppID, Role: store.RoleApp}, nil
}

// Introspection is an RFC 7662 answer. Only Active is meaningful when it is false.
type Introspection struct {
	Active    bool
	TokenType string // "access_token" or "session"
	ClientID  string
	Subject   string
	Username  string
	Issuer    string
	Audience  []string
	JTI       string
	Scope     string
	TenantID  string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// IntrospectToken answers RFC 7662 for caller, an authenticated client: an access token or an
// IdP session id of the caller's tenant that is live (signature, lifetime, not revoked, its
// application or user still there) is active; everything else, including live tokens of other
// tenants, is {active: false}.
func (e *Engine) IntrospectToken(ctx context.Context, caller Principal, token string) (*Introspection, error) {
	inactive := &Introspection{}
	if token == "" || len(token) > 8192 {
		return inactive, nil
	}
	if strings.Count(token, ".") == 2 {
		c, err := e.parseAccess(ctx, token)
		if err != nil || c.TenantID != caller.TenantID {
			return inactive, nil
		}
		if _, err := e.VerifyAccessToken(ctx, token); err != nil {
			if errors.Is(err, ErrUnauthenticated) {
				return inactive, nil
			}
			return nil, err
		}
		return &Introspection{Active: true, TokenType: "access_token", ClientID: c.ClientID, Subject: c.Subject,
			Issuer: c.Issuer, Audience: c.Audience, JTI: c.ID, Scope: c.Scope, TenantID: c.TenantID,
			IssuedAt: c.IssuedAt.Time, ExpiresAt: c.ExpiresAt.Time}, nil
	}
	s, err := e.store.GetLoginSession(ctx, tokenDigest("session", token))
	if errors.Is(err, store.ErrNotFound) {
		return inactive, nil
	}
	if err != nil {
		return nil, err
	}
	if s.TenantID != caller.TenantID {
		return inactive, nil
	}
	u, err := e.SessionUser(ctx, token)
	if errors.Is(err, ErrUnauthenticated) {
		return inactive, nil
	}
	if err != nil {
		return nil, err
	}
	return &Introspection{Active: true, TokenType: "session", Subject: u.ID, Username: u.Login,
		Issuer: e.cfg.Tokens.Issuer, TenantID: s.TenantID, IssuedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt}, nil
}

// RevokeToken revokes an access token or an IdP session id (RFC 7009). caller is the
// authenticated client, or nil where the surface lets the holder of a token revoke it (OpenIAM's
// logout). An authenticated client may revoke the access tokens issued to itself (or, with an
// admin key, any of its tenant's) and its tenant's sessions. Unknown, expired, malformed or
// foreign tokens are ignored without an error, as RFC 7009 §2.2 asks. The revocation is written
// to the database before RevokeToken returns, so every instance refuses the token from then on.
func (e *Engine) RevokeToken(ctx context.Context, caller *Principal, token string) error {
	if token == "" || len(token) > 8192 {
		return nil
	}
	now := e.clock.Now()
	if strings.Count(token, ".") == 2 {
		c, err := e.parseAccess(ctx, token)
		if err != nil {
			return nil // expired or not ours: nothing to revoke
		}
		if caller != nil && (caller.TenantID != c.TenantID || (!caller.IsAdmin() && caller.ApplicationID != c.AppID)) {
			return nil
		}
		p := tokenHolder(c.TenantID)
		if caller != nil {
			p = *caller
		}
		return mapStoreErr(e.inTx(ctx, func(q store.Queries) error {
			if err := q.RevokeToken(ctx, &store.RevokedToken{JTI: c.ID, TenantID: c.TenantID,
				ExpiresAt: c.ExpiresAt.Time, RevokedAt: now}); err != nil {
				return err
			}
			return e.audit(ctx, q, p, "token.revoke", "jti:"+c.ID, "ok", "")
		}))
	}
	h := tokenDigest("session", token)
	s, err := e.store.GetLoginSession(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if caller != nil && caller.TenantID != s.TenantID {
		return nil
	}
	p := tokenHolder(s.TenantID)
	if caller != nil {
		p = *caller
	}
	return mapStoreErr(e.inTx(ctx, func(q store.Queries) error {
		changed, err := q.RevokeLoginSession(ctx, h, now)
		if err != nil || !changed {
			return err
		}
		return e.audit(ctx, q, p, "session.revoke", "user:"+s.UserID, "ok", "")
	}))
}

// tokenHolder is the principal of a request authorised only by holding a token (a logout
// without client credentials); audit records name it "key:token-holder".
func tokenHolder(tenantID string) Principal {
	return Principal{TenantID: tenantID, KeyID: "token-holder", Role: store.RoleApp}
}
