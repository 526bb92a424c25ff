package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/otpd/otpd/internal/store"
)

// Self-service codes (the OpenIAM surface): verification sessions started by end users
// themselves, often without any credential, and found again by a "moving factor" — epoch
// milliseconds, unique per tenant, kept as the session's handle.
//
// Because these endpoints may be public, they are where SMS pumping starts: every send carries
// the end user's IP (from trusted proxies only), so the per-IP and per-recipient send limits of
// Start apply, as does the SMS country allow-list of the messaging policy; a tenant can also
// require an API key. Checks carry the IP too and are limited per IP (CheckSelfServiceCode).

// handlePrefix keeps OpenIAM's moving factors apart from other surfaces' handles.
const selfServiceHandlePrefix = "openiam:"

// SelfServicePurpose is the purpose of self-service sessions.
const SelfServicePurpose = "selfservice"

// ErrAPIKeyRequired: the tenant requires an API key for its self-service endpoints.
var ErrAPIKeyRequired = fmt.Errorf("%w: this tenant requires an API key for self-service", ErrUnauthenticated)

// selfServiceKeyID names key-less self-service callers in audit records ("key:public-selfservice").
const selfServiceKeyID = "public-selfservice"

// SelfServicePrincipal decides whose request a self-service call is. With an API key, the key's
// tenant (the key must be valid). Without one, the tenant that claims host in its token
// settings, else the default tenant — unless that tenant requires an API key. The Host header
// is chosen by the client, so the host map routes requests; it is not access control: a tenant
// that must not serve anonymous callers sets require-API-key.
func (e *Engine) SelfServicePrincipal(ctx context.Context, apiKey, host string) (Principal, error) {
	if apiKey != "" {
		return e.Authenticate(ctx, apiKey)
	}
	tenantID := ""
	if h, ok := NormalizeHost(host); ok {
		id, err := e.store.GetTenantIDByHost(ctx, h)
		switch {
		case err == nil:
			tenantID = id
		case !errors.Is(err, store.ErrNotFound):
			return Principal{}, err
		}
	}
	if tenantID == "" {
		t, err := e.store.GetTenantByName(ctx, DefaultTenantName)
		if errors.Is(err, store.ErrNotFound) {
			return Principal{}, ErrUnauthenticated
		}
		if err != nil {
			return Principal{}, err
		}
		tenantID = t.ID
	}
	s, err := e.tokenSettings(ctx, e.store, tenantID)
	if err != nil {
		return Principal{}, err
	}
	if s.SelfServiceRequireKey {
		return Principal{}, ErrAPIKeyRequired
	}
	return Principal{TenantID: tenantID, KeyID: selfServiceKeyID, Role: store.RoleApp}, nil
}

// SelfServiceCode is a started self-service session and its moving factor.
type SelfServiceCode struct {
	MovingFactor int64
	Session      *Session
}

// maxMovingFactorTries bounds the search for a free moving factor: each try is the next
// millisecond, and a tenant would need that many sends in one millisecond to exhaust it.
const maxMovingFactorTries = 64

// SendSelfServiceCode starts a session on channel (email or sms) for to and returns its moving
// factor: the current epoch millisecond, or the next free one when another session of the tenant
// already has it (the handle is unique per tenant, so the database decides).
func (e *Engine) SendSelfServiceCode(ctx context.Context, p Principal, channel, to, clientIP string) (*SelfServiceCode, error) {
	if channel != ChannelEmail && channel != ChannelSMS {
		return nil, invalid("channel", "must be email or sms")
	}
	mf := e.clock.Now().UnixMilli()
	for range maxMovingFactorTries {
		s, err := e.Start(ctx, p, StartRequest{Channel: channel, To: to, ClientIP: clientIP,
			Purpose: SelfServicePurpose, Handle: selfServiceHandlePrefix + strconv.FormatInt(mf, 10), Surface: SurfaceOpenIAM})
		if errors.Is(err, ErrConflict) {
			mf++
			continue
		}
		if err != nil {
			return nil, err
		}
		return &SelfServiceCode{MovingFactor: mf, Session: s}, nil
	}
	return nil, fmt.Errorf("%w: no free moving factor, retry", ErrConflict)
}

// selfServiceCheckScope names the per-IP limit on self-service checks in rate keys, metrics
// and audit records.
const selfServiceCheckScope = "selfservice_check"

// unknownIP is the key checks without a client IP share, so that such callers (in-process
// ones; every HTTP request has a peer address) are limited together rather than not at all.
const unknownIP = "unknown"

// CheckSelfServiceCode checks code against the session with the moving factor on channel,
// under the same rules as Check (try budget, expiry, one success). ErrNotFound when no
// self-service session of the tenant on that channel has the moving factor.
//
// Moving factors are epoch milliseconds, easy to guess, and the endpoint may be public, so
// before anything else every check takes a slot of the per-client-IP limit
// (TokenPolicy.SelfServiceChecks): without it anyone could spend another user's tries or walk
// through moving factors looking for live sessions. Lookups of unknown moving factors count
// too. A refusal is a RateLimitError with scope "selfservice_check", audited and counted.
func (e *Engine) CheckSelfServiceCode(ctx context.Context, p Principal, channel string, movingFactor int64, code, clientIP string) (*CheckResult, error) {
	if err := e.takeSelfServiceCheck(ctx, p, clientIP); err != nil {
		return nil, err
	}
	if movingFactor <= 0 {
		return nil, ErrNotFound
	}
	c, err := e.store.GetChallengeByHandle(ctx, p.TenantID, selfServiceHandlePrefix+strconv.FormatInt(movingFactor, 10))
	if err != nil {
		return nil, mapStoreErr(err)
	}
	if c.Channel != channel {
		return nil, ErrNotFound
	}
	return e.check(ctx, p, c.ID, code, ownedBy(SurfaceOpenIAM))
}

// takeSelfServiceCheck takes one slot of the self-service check limit for clientIP (an IPv6
// address counts as its /64, as for the send limits).
func (e *Engine) takeSelfServiceCheck(ctx context.Context, p Principal, clientIP string) error {
	l := e.cfg.Tokens.SelfServiceChecks
	if l.Count <= 0 {
		return nil
	}
	key := IPLimitKey(clientIP)
	if key == "" {
		key = unknownIP
	}
	var limitErr error
	err := e.inTx(ctx, func(q store.Queries) error {
		ok, retry, err := q.TakeRate(ctx, p.TenantID, store.RateLimit{Scope: selfServiceCheckScope, Key: key,
			Limit: l.Count, Window: l.Window}, e.clock.Now())
		if err == nil && !ok {
			limitErr = &RateLimitError{Scope: selfServiceCheckScope, RetryAfter: retry}
		}
		return err
	})
	if err != nil {
		return err
	}
	if limitErr != nil {
		return e.refused(ctx, p, "selfservice.check", "", limitErr, clientIP)
	}
	return nil
}
