package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
)

// One-time token purposes. A token is bound to its purpose: it can only be redeemed for it.
const (
	OTTPurposeLogin  = "user_login" // exchanged for an IdP login session
	OTTPurposeVerify = "verify"     // proves the user's identity once, without a session
)

// ottBytes is the entropy of a one-time token and of a session id: 256 bits (SECURITY.md 6).
const ottBytes = 32

// ErrUserDisabled: the user exists but is disabled.
var ErrUserDisabled = errors.New("the user is disabled")

// OTTRequest asks for a one-time token for one user, named by exactly one of Login,
// ExternalID and UserID.
type OTTRequest struct {
	Purpose                   string
	Login, ExternalID, UserID string
	// AuditData is an optional JSON object the issuer attaches; it is kept with the token for
	// the audit trail and never interpreted.
	AuditData json.RawMessage
}

// IssuedOTT is a new one-time token. Token is shown once; only its digest is stored.
type IssuedOTT struct {
	Token     string
	UserID    string
	Purpose   string
	ExpiresAt time.Time
}

// maxAuditData bounds what an issuer may attach to a token.
const maxAuditData = 4096

// IssueOneTimeToken issues a single-use token for a user of the caller's tenant: 256 random
// bits, stored only as a digest, valid for the policy's ott_ttl (30 s), redeemable once for its
// purpose.
func (e *Engine) IssueOneTimeToken(ctx context.Context, p Principal, r OTTRequest) (*IssuedOTT, error) {
	var errs ValidationErrors
	if r.Purpose != OTTPurposeLogin && r.Purpose != OTTPurposeVerify {
		errs = append(errs, &ValidationError{"purpose", "must be user_login or verify"})
	}
	n := 0
	for _, s := range []string{r.Login, r.ExternalID, r.UserID} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		errs = append(errs, &ValidationError{"login", "exactly one of login, external_id and user_id is required"})
	}
	audit := "{}"
	if len(r.AuditData) > 0 && !bytes.Equal(bytes.TrimSpace(r.AuditData), []byte("null")) {
		var obj map[string]any
		if len(r.AuditData) > maxAuditData || json.Unmarshal(r.AuditData, &obj) != nil || obj == nil {
			errs = append(errs, &ValidationError{"audit_data", fmt.Sprintf("must be a JSON object of at most %d bytes", maxAuditData)})
		} else {
			var buf bytes.Buffer
			if err := json.Compact(&buf, r.AuditData); err == nil {
				audit = buf.String()
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	u, err := e.findUser(ctx, p.TenantID, r.Login, r.ExternalID, r.UserID)
	if err != nil {
		return nil, err
	}
	if !u.Enabled {
		return nil, ErrUserDisabled
	}
	token, err := keys.RandomToken(ottBytes)
	if err != nil {
		return nil, err
	}
	now := e.clock.Now()
	t := &store.OneTimeToken{Hash: tokenDigest("ott", token), TenantID: p.TenantID, UserID: u.ID,
		ApplicationID: p.ApplicationID, Purpose: r.Purpose, AuditData: audit,
		CreatedAt: now, ExpiresAt: now.Add(e.cfg.Tokens.OTTTTL)}
	if err := e.inTx(ctx, func(q store.Queries) error { return q.CreateOneTimeToken(ctx, t) }); err != nil {
		return nil, mapStoreErr(err)
	}
	return &IssuedOTT{Token: token, UserID: u.ID, Purpose: r.Purpose, ExpiresAt: t.ExpiresAt}, nil
}

// findUser looks a user up by one of its identifiers.
func (e *Engine) findUser(ctx context.Context, tenantID, login, externalID, userID string) (*store.User, error) {
	var (
		u   *store.User
		err error
	)
	switch {
	case login != "":
		u, err = e.store.GetUserByLogin(ctx, tenantID, strings.TrimSpace(login))
	case externalID != "":
		u, err = e.store.GetUserByExternalID(ctx, tenantID, strings.TrimSpace(externalID))
	default:
		if len(userID) > 64 {
			return nil, ErrNotFound
		}
		u, err = e.store.GetUser(ctx, tenantID, userID)
	}
	return u, mapStoreErr(err)
}

// Redemption is a redeemed one-time token: its user and, for purpose user_login, the new IdP
// session (SessionToken is the cookie value, shown once; only its digest is stored).
type Redemption struct {
	User             *store.User
	Purpose          string
	SessionToken     string
	SessionExpiresAt time.Time
}

// maxTokenLen bounds a presented token before any work is done.
const maxTokenLen = 512

// RedeemOneTimeToken exchanges a token for its user, once. The token must be unused, unexpired,
// of the given purpose and, when tenantID is not "", of that tenant: a caller that has a tenant
// (the native API's key) passes it, so another tenant's token is refused without being spent;
// a caller that holds nothing but the token (the Acronis login, whose token is the credential)
// passes "". The redemption is one conditional update that checks all of this, so of any
// number of concurrent redemptions, on any number of instances, at most one succeeds. For
// purpose user_login a login session is created in the same transaction. Every failure —
// unknown, used, expired, other purpose, other tenant, user disabled — is the same
// ErrUnauthenticated.
func (e *Engine) RedeemOneTimeToken(ctx context.Context, tenantID, token, purpose string) (*Redemption, error) {
	if token == "" || len(token) > maxTokenLen {
		return nil, ErrUnauthenticated
	}
	h := tokenDigest("ott", token)
	out := &Redemption{Purpose: purpose}
	var session *store.LoginSession
	if purpose == OTTPurposeLogin {
		st, err := keys.RandomToken(ottBytes)
		if err != nil {
			return nil, err
		}
		out.SessionToken = st
		session = &store.LoginSession{Hash: tokenDigest("session", st)}
	}
	errRefused := errors.New("refused")
	err := e.store.InTx(ctx, func(q store.Queries) error {
		now := e.clock.Now()
		t, err := q.RedeemOneTimeToken(ctx, h, tenantID, purpose, now)
		if errors.Is(err, store.ErrNotFound) {
			return errRefused
		}
		if err != nil {
			return err
		}
		u, err := q.GetUser(ctx, t.TenantID, t.UserID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !u.Enabled) {
			return errRefused // rolls the redemption back: a disabled user's token stays dead anyway
		}
		if err != nil {
			return err
		}
		out.User = u
		if session != nil {
			session.TenantID, session.UserID = t.TenantID, t.UserID
			session.CreatedAt, session.ExpiresAt = now, now.Add(e.cfg.Tokens.SessionTTL)
			if err := q.CreateLoginSession(ctx, session); err != nil {
				return err
			}
			out.SessionExpiresAt = session.ExpiresAt
		}
		return nil
	})
	if errors.Is(err, errRefused) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, fmt.Errorf("redeem one-time token: %w", err)
	}
	return out, nil
}

// OneTimeTokenTenant returns the tenant of a live (unused, unexpired) token without redeeming
// it, for the external-login page, which must check the redirect target against the tenant's
// allow-list before the token is spent. Every failure is ErrUnauthenticated.
func (e *Engine) OneTimeTokenTenant(ctx context.Context, token string) (string, error) {
	if token == "" || len(token) > maxTokenLen {
		return "", ErrUnauthenticated
	}
	t, err := e.store.GetOneTimeToken(ctx, tokenDigest("ott", token))
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrUnauthenticated
	}
	if err != nil {
		return "", err
	}
	if t.UsedAt != nil || !e.clock.Now().Before(t.ExpiresAt) || t.Purpose != OTTPurposeLogin {
		return "", ErrUnauthenticated
	}
	return t.TenantID, nil
}

// SessionUser returns the user of a live login session. It reads the database on every call,
// so a session ended on one instance is dead on every instance at once. Every failure is
// ErrUnauthenticated.
func (e *Engine) SessionUser(ctx context.Context, sessionToken string) (*store.User, error) {
	if sessionToken == "" || len(sessionToken) > maxTokenLen {
		return nil, ErrUnauthenticated
	}
	s, err := e.store.GetLoginSession(ctx, tokenDigest("session", sessionToken))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	if s.RevokedAt != nil || !e.clock.Now().Before(s.ExpiresAt) {
		return nil, ErrUnauthenticated
	}
	u, err := e.store.GetUser(ctx, s.TenantID, s.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !u.Enabled) {
		return nil, ErrUnauthenticated
	}
	return u, err
}
