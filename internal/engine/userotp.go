package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/otpd/otpd/internal/store"
)

// User OTPs for a purpose (the Haventec surface): an authorised requestor — someone whose token
// the customer's IAM vouches for, by RFC 7662 introspection, with the allowed role — has otpd
// generate an OTP for a user and purpose. The OTP is a verification session on channel "none"
// bound to the user and purpose; it is consumed, once, by VerifyUserOTP under the usual try
// budget. A user has at most one live OTP per purpose.

// Outcomes of IssueUserOTP besides the IAM misconfigurations (userotp_iam.go).
var (
	// ErrUnknownApplication: the application is not one of the caller's tenant's (or not the
	// caller's own, for an application key).
	ErrUnknownApplication = fmt.Errorf("application %w", ErrNotFound)
	// ErrUnknownUser: no such user in the tenant.
	ErrUnknownUser = fmt.Errorf("user %w", ErrNotFound)
	// ErrUserNotEligible: the user may not be given an OTP this way (an administrator, or a
	// disabled user).
	ErrUserNotEligible = errors.New("the user may not be given an OTP by a requestor")
	// ErrRequestorNotAllowed: the IAM says the requestor token is not active, or it lacks the
	// allowed role, or it belongs to another user than the requestor named.
	ErrRequestorNotAllowed = errors.New("the requestor is not allowed to create an OTP for that user")
	// ErrIAMUnavailable: the IAM could not be asked (unreachable, timeout, refused otpd's
	// client credentials, or answered something that is not an RFC 7662 answer). No OTP is
	// issued.
	ErrIAMUnavailable = errors.New("the IAM introspection endpoint did not give a usable answer")
	// ErrUserOTPExists: the user already has a live OTP for the purpose.
	ErrUserOTPExists = errors.New("the user has already a valid OTP for this purpose")
)

// UserOTPRequest asks for an OTP for a user and purpose on behalf of a requestor.
type UserOTPRequest struct {
	ApplicationID     string
	UserID            string
	Purpose           string
	RequestorToken    string
	RequestorUsername string
	TTL               time.Duration // 0: the policy's user_otp_ttl
}

// UserOTP is an issued OTP. OTP is shown once.
type UserOTP struct {
	OTP          string
	SessionID    string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	TTL          time.Duration
	UserEmail    string
	MobileNumber string
}

// IssueUserOTP runs the checks in this order — request fields, application, its IAM settings,
// user, the requestor's token at the IAM — and then issues the OTP, claiming the user's slot for
// the purpose in the same transaction that creates the session.
func (e *Engine) IssueUserOTP(ctx context.Context, p Principal, r UserOTPRequest) (*UserOTP, error) {
	var errs ValidationErrors
	if r.Purpose == "" || !purposeRE.MatchString(r.Purpose) {
		errs = append(errs, &ValidationError{"purpose", "must be 1–64 characters of A–Z a–z 0–9 _ . : -"})
	}
	u := strings.TrimSpace(r.RequestorUsername)
	if u == "" || len(u) > 256 || !utf8.ValidString(u) || strings.ContainsFunc(u, isControl) {
		errs = append(errs, &ValidationError{"requestor_username", "must be 1–256 printable characters"})
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = e.cfg.Tokens.UserOTPTTL
	}
	if ttl < MinTTL || ttl > e.cfg.MaxTTL || ttl%time.Second != 0 {
		errs = append(errs, &ValidationError{"ttl", fmt.Sprintf("must be whole seconds, %d–%d", int(MinTTL/time.Second), int(e.cfg.MaxTTL/time.Second))})
	}
	if r.RequestorToken == "" || len(r.RequestorToken) > 8192 {
		errs = append(errs, &ValidationError{"requestor_token", "is required (at most 8192 characters)"})
	}
	if len(errs) > 0 {
		return nil, errs
	}

	app, err := e.store.GetApplication(ctx, p.TenantID, r.ApplicationID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && p.ApplicationID != "" && p.ApplicationID != app.ID) {
		return nil, ErrUnknownApplication
	}
	if err != nil {
		return nil, err
	}
	iam, err := e.store.GetIAMSettings(ctx, p.TenantID, app.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrIAMNotEnabled
	}
	if err != nil {
		return nil, err
	}
	if probs := iamProblems(iam); len(probs) > 0 {
		return nil, probs[0]
	}
	user, err := e.store.GetUser(ctx, p.TenantID, r.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrUnknownUser
	}
	if err != nil {
		return nil, err
	}
	if !user.Enabled || strings.EqualFold(user.Role, store.RoleAdmin) {
		return nil, ErrUserNotEligible
	}
	if err := e.authorizeRequestor(ctx, iam, r.RequestorToken, u); err != nil {
		if errors.Is(err, ErrRequestorNotAllowed) {
			e.auditRefusal(ctx, p, "user_otp.issue", user.ID, err, "")
		}
		return nil, err
	}

	c, err := e.newChallenge(p, StartRequest{Channel: ChannelNone, To: "user:" + user.ID, TTL: ttl,
		Purpose: r.Purpose, UserID: user.ID, Surface: SurfaceUserOTP})
	if err != nil {
		return nil, err
	}
	var (
		out      *Session
		limitErr error
	)
	err = e.inTx(ctx, func(q store.Queries) error {
		out, limitErr = nil, nil
		ok, err := q.ClaimUserOTPSlot(ctx, &store.UserOTPSlot{TenantID: p.TenantID, UserID: user.ID,
			Purpose: r.Purpose, ChallengeID: c.ID, ExpiresAt: c.ExpiresAt}, c.CreatedAt)
		if err != nil {
			return err
		}
		if !ok {
			return ErrUserOTPExists
		}
		if err := e.takeLimits(ctx, q, p, c.Recipient, "", c.CreatedAt); err != nil {
			limitErr = err
			return err
		}
		if out, _, err = e.sendNewCode(ctx, q, c, q.CreateChallenge); err != nil {
			return err
		}
		details, _ := json.Marshal(map[string]string{"purpose": r.Purpose, "requestor": u})
		return q.CreateAuditEvent(ctx, &store.AuditEvent{ID: newID(), TenantID: p.TenantID, At: c.CreatedAt,
			Actor: p.actor(), Action: "user_otp.issue", Target: user.ID, Result: "ok", Details: string(details)})
	})
	if limitErr != nil {
		return nil, e.refused(ctx, p, "user_otp.issue", user.ID, limitErr, "")
	}
	if err != nil {
		return nil, mapStoreErr(err)
	}
	e.metrics.startedInc(ChannelNone, "")
	return &UserOTP{OTP: out.Code, SessionID: out.ID, CreatedAt: out.CreatedAt, ExpiresAt: out.ExpiresAt,
		TTL: ttl, UserEmail: user.Email, MobileNumber: user.Phone}, nil
}

// VerifyUserOTP checks otp against the user's OTP for purpose, under Check's rules (try
// budget, expiry, at most one success). ErrNotFound when the user has no OTP for the purpose.
func (e *Engine) VerifyUserOTP(ctx context.Context, p Principal, userID, purpose, otp string) (*CheckResult, error) {
	if purpose == "" || !purposeRE.MatchString(purpose) {
		return nil, invalid("purpose", "must be 1–64 characters of A–Z a–z 0–9 _ . : -")
	}
	slot, err := e.store.GetUserOTPSlot(ctx, p.TenantID, userID, purpose)
	if err != nil {
		return nil, mapStoreErr(err)
	}
	if u, err := e.store.GetUser(ctx, p.TenantID, userID); err != nil || !u.Enabled {
		// A disabled (or deleted) user's OTPs stop working at once (SECURITY.md 38).
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: user", ErrNotFound)
	}
	res, err := e.check(ctx, p, slot.ChallengeID, otp, ownedBy(SurfaceUserOTP))
	if err != nil {
		return nil, err
	}
	if res.Session.Status != store.StatusPending {
		// Used or dead: the user may be given a new OTP for the purpose. Should this write fail,
		// the slot frees itself at the session's expiry.
		if err := e.store.InTx(ctx, func(q store.Queries) error {
			return q.ReleaseUserOTPSlot(ctx, p.TenantID, userID, purpose, slot.ChallengeID)
		}); err != nil {
			e.log.Warn("release user OTP slot", "err", err)
		}
	}
	return res, nil
}

// introspectionClient asks customers' IAMs. It follows no redirects (the configured URL is the
// only place the client secret goes) and keeps connections for reuse.
var introspectionClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	},
}

// maxIntrospectionAnswer bounds what otpd reads from an IAM.
const maxIntrospectionAnswer = 64 << 10

// authorizeRequestor asks the IAM about token (RFC 7662 §2.1: form body token and
// token_type_hint, client authentication by HTTP Basic as RFC 6749 §2.3.1 encodes it) and
// requires active: true, the allowed role at the role path, and — when the answer names a
// username — that it is the requestor's.
func (e *Engine) authorizeRequestor(ctx context.Context, s *store.IAMSettings, token, username string) error {
	secret, err := e.keys.Open(s.ClientSecret, iamAAD(s.ApplicationID))
	if err != nil {
		return fmt.Errorf("open IAM client secret: %w", err)
	}
	path, err := parseRolePath(s.RolePath)
	if err != nil {
		return ErrIAMRolePathFormat
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Tokens.IntrospectionTimeout)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.IntrospectionURL, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrIAMUnavailable, err) // a *url.Error: callers log only its host
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(s.ClientID), url.QueryEscape(string(secret)))
	res, err := introspectionClient.Do(req)
	if err != nil {
		// The error names the URL (with its query), never the token (it is in the body) or the
		// secret; it stays a *url.Error so that callers can log only the URL's scheme and host.
		return fmt.Errorf("%w: %w", ErrIAMUnavailable, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxIntrospectionAnswer+1))
	if err != nil {
		return fmt.Errorf("%w: reading the answer: %v", ErrIAMUnavailable, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: HTTP status %d", ErrIAMUnavailable, res.StatusCode)
	}
	if len(raw) > maxIntrospectionAnswer {
		return fmt.Errorf("%w: the answer is larger than %d bytes", ErrIAMUnavailable, maxIntrospectionAnswer)
	}
	var answer map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&answer); err != nil || answer == nil {
		return fmt.Errorf("%w: the answer is not a JSON object", ErrIAMUnavailable)
	}
	active, ok := answer["active"].(bool)
	if !ok {
		return fmt.Errorf("%w: the answer has no boolean \"active\"", ErrIAMUnavailable)
	}
	if !active {
		return fmt.Errorf("%w: the token is not active", ErrRequestorNotAllowed)
	}
	if name, ok := answer["username"].(string); ok && name != username {
		return fmt.Errorf("%w: the token belongs to another user", ErrRequestorNotAllowed)
	}
	v, ok := path.lookup(answer)
	if !ok || !hasRole(v, s.AllowedRole) {
		return fmt.Errorf("%w: the token lacks the allowed role", ErrRequestorNotAllowed)
	}
	return nil
}
