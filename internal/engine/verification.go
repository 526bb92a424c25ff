package engine

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/otpd/otpd/internal/otp"
	"github.com/otpd/otpd/internal/store"
)

// StartRequest asks for a new verification session. Zero numeric fields take the defaults.
type StartRequest struct {
	Channel     string
	To          string
	CodeLength  int
	TTL         time.Duration
	MaxAttempts int
	Purpose     string
	// ClientIP is the end user's address, for the per-IP limit (empty: no IP limit).
	ClientIP string
	// IdempotencyKey, when set, makes a retried request return the original session.
	IdempotencyKey string
	// Locale selects the message template (reserved; "en" for now).
	Locale string
	// UserID and DeviceID link the session to a user and an OTP device (device challenges).
	UserID, DeviceID string
	// Handle is a dialect's lookup key for the session, unique per tenant (e.g. OpenIAM's moving
	// factor); a taken handle fails the start with ErrConflict.
	Handle string
	// Metadata is a JSON object of dialect data kept with the session (e.g. BSG's template,
	// sender and sender_alt), read back by composeMessage and the dialect.
	Metadata string
	// Surface owns the session (SurfaceNative by default); only it checks, resends or cancels it.
	Surface string

	minCodeLength int // a tenant's lower bound for BSG sends (messaging_defences.go); 0: MinCodeLength
}

// Surfaces that own verification sessions. Each acts only on its own sessions, so no surface
// becomes a way around another's rules (a device's lockout, a user OTP's requestor check).
const (
	SurfaceNative  = ""
	SurfaceBSG     = "bsg"
	SurfaceOpenIAM = "openiam"
	SurfaceDevice  = "device"
	SurfaceUserOTP = "user_otp"
)

// ownedBy admits the sessions of one surface.
func ownedBy(surface string) func(*store.Challenge) bool {
	return func(c *store.Challenge) bool { return c.Surface == surface }
}

// Session is a verification session as the engine reports it.
type Session struct {
	store.Challenge
	// Code is the plaintext code, set only when the engine just issued one for channel "none"
	// (the caller delivers it). It is never stored.
	Code string
	// Replayed is true when an Idempotency-Key matched an earlier request.
	Replayed bool
}

// AttemptsLeft is the remaining try budget (0 once finished).
func (s *Session) AttemptsLeft() int {
	if s.Status != store.StatusPending {
		return 0
	}
	return max(0, s.MaxAttempts-s.Attempts)
}

// SendsLeft is how many more resends the session allows (0 once finished).
func (s *Session) SendsLeft() int {
	if s.Status != store.StatusPending {
		return 0
	}
	return max(0, s.MaxSends-s.Sends)
}

var purposeRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{0,64}$`)

// Start creates a session, issues its code and, for delivered channels, enqueues the message in
// the same transaction. Send limits are taken in that transaction too, so a refused start
// leaves no trace but its audit record.
func (e *Engine) Start(ctx context.Context, p Principal, r StartRequest) (*Session, error) {
	plan, err := e.planMessaging(ctx, p, &r) // messaging_defences.go
	if err != nil {
		return nil, err
	}
	c, err := e.newChallenge(p, r)
	if err != nil {
		return nil, err
	}
	fp := fingerprint(r)
	var (
		out      *Session
		enqueued bool
		limitErr error
	)
	err = e.inTx(ctx, func(q store.Queries) error {
		out, enqueued, limitErr = nil, false, nil
		if r.IdempotencyKey != "" {
			// Keys are scoped to the caller (its application, or its key for admin keys): two
			// applications of a tenant choosing the same key never see each other's sessions.
			prev, err := q.PutIdempotency(ctx, &store.Idempotency{TenantID: p.TenantID, Key: idempotencyScope(p) + "|" + r.IdempotencyKey,
				Fingerprint: fp, ResourceID: c.ID, CreatedAt: c.CreatedAt})
			if errors.Is(err, store.ErrAlreadyExists) {
				if string(prev.Fingerprint) != string(fp) {
					return ErrIdempotencyMismatch
				}
				old, err := q.GetChallenge(ctx, p.TenantID, prev.ResourceID)
				if err != nil {
					return err
				}
				out = &Session{Challenge: *old, Replayed: true}
				return nil
			}
			if err != nil {
				return err
			}
		}
		if err := e.takeLimits(ctx, q, p, c.Recipient, c.ClientIP, c.CreatedAt); err != nil {
			limitErr = err
			return err
		}
		if err := e.takeMessagingLimits(ctx, q, p, c, plan); err != nil {
			if isMessagingRefusal(err) {
				limitErr = err
			}
			return err
		}
		var err error
		if out, enqueued, err = e.sendNewCode(ctx, q, c, q.CreateChallenge); err != nil {
			return err
		}
		return e.recordMessagingSession(ctx, q, c, plan)
	})
	if limitErr != nil {
		return nil, e.refused(ctx, p, "verification.start", "", limitErr, r.ClientIP)
	}
	if err != nil {
		return nil, mapStoreErr(err)
	}
	if enqueued {
		e.notify()
	}
	if !out.Replayed {
		e.metrics.startedInc(c.Channel, c.Recipient)
	}
	return out, nil
}

// newChallenge validates r and builds the row (without a code yet).
func (e *Engine) newChallenge(p Principal, r StartRequest) (*store.Challenge, error) {
	var errs ValidationErrors
	add := func(err error) {
		var v *ValidationError
		if errors.As(err, &v) {
			errs = append(errs, v)
		}
	}
	if !knownChannel(r.Channel) {
		add(invalid("channel", "must be one of none, email, sms, viber, voice, whatsapp"))
	}
	to, err := normalizeRecipient(r.Channel, r.To)
	if err != nil && knownChannel(r.Channel) {
		add(err)
	}
	length := r.CodeLength
	if length == 0 {
		length = e.cfg.CodeLength
	}
	minLength := MinCodeLength
	if r.minCodeLength != 0 {
		minLength = r.minCodeLength
	}
	if length < minLength || length > MaxCodeLength {
		add(invalid("code_length", "must be %d–%d", minLength, MaxCodeLength))
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = e.cfg.TTL
	}
	if ttl < MinTTL || ttl > e.cfg.MaxTTL {
		add(invalid("ttl_seconds", "must be %d–%d", int(MinTTL/time.Second), int(e.cfg.MaxTTL/time.Second)))
	}
	tries := r.MaxAttempts
	if tries == 0 {
		tries = e.cfg.MaxAttempts
	}
	if tries < 1 || tries > MaxMaxAttempts {
		add(invalid("max_attempts", "must be 1–%d", MaxMaxAttempts))
	}
	if !purposeRE.MatchString(r.Purpose) {
		add(invalid("purpose", "must be at most 64 characters of A–Z a–z 0–9 _ . : -"))
	}
	ip := ""
	if r.ClientIP != "" {
		a, err := netip.ParseAddr(r.ClientIP)
		if err != nil {
			add(invalid("client_ip", "must be an IPv4 or IPv6 address"))
		} else {
			ip = a.Unmap().String()
		}
	}
	if len(r.IdempotencyKey) > 255 {
		add(invalid("Idempotency-Key", "must be at most 255 characters"))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if !e.channels[r.Channel] {
		return nil, fmt.Errorf("%w: no delivery provider is configured for channel %q", ErrChannelUnavailable, r.Channel)
	}
	now := e.clock.Now()
	c := &store.Challenge{
		ID: newID(), TenantID: p.TenantID, ApplicationID: p.ApplicationID,
		Channel: r.Channel, Recipient: to, Purpose: r.Purpose, CodeLength: length,
		Status: store.StatusPending, MaxAttempts: tries, Sends: 1, MaxSends: e.cfg.MaxSends,
		LastSentAt: now, TTL: ttl, ClientIP: ip, Metadata: r.Metadata,
		UserID: r.UserID, DeviceID: r.DeviceID, Handle: r.Handle, Surface: r.Surface,
		CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	if c.Metadata == "" {
		c.Metadata = "{}"
	}
	if r.Channel != ChannelNone {
		c.Delivery = store.DeliveryQueued
	}
	return c, nil
}

// idempotencyScope names whose Idempotency-Keys a key belongs to: the application's, or for
// keys without one (admin keys, the local operator) the key's own.
func idempotencyScope(p Principal) string {
	if p.ApplicationID != "" {
		return "app:" + p.ApplicationID
	}
	return p.actor()
}

// fingerprint identifies a start request for Idempotency-Key comparison.
func fingerprint(r StartRequest) []byte {
	r.IdempotencyKey = ""
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	return sum[:]
}

// issueCode generates a fresh code and stores only its keyed hash, bound to the session id.
func (e *Engine) issueCode(c *store.Challenge) (string, error) {
	code, err := otp.GenerateCode(c.CodeLength)
	if err != nil {
		return "", err
	}
	c.CodeHash = e.keys.HashCode(c.ID, code)
	return code, nil
}

// sendNewCode gives c a fresh code, writes c with write (create or update), enqueues the
// message for delivered channels, and returns the session as the caller sees it (with the code
// only for channel none) and whether a message was enqueued.
func (e *Engine) sendNewCode(ctx context.Context, q store.Queries, c *store.Challenge,
	write func(context.Context, *store.Challenge) error) (*Session, bool, error) {
	code, err := e.issueCode(c)
	if err != nil {
		return nil, false, err
	}
	if err := write(ctx, c); err != nil {
		return nil, false, err
	}
	enqueued, err := e.enqueue(ctx, q, c, code)
	if err != nil {
		return nil, false, err
	}
	out := &Session{Challenge: *c}
	if c.Channel == ChannelNone {
		out.Code = code
	}
	return out, enqueued, nil
}

// IPLimitKey is the key an address is counted under by per-IP limits: the address itself for
// IPv4, its /64 for IPv6 — every IPv6 user holds at least a /64, so counting single addresses
// would let one user rotate through 2^64 of them.
func IPLimitKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() || a.Is4In6() {
		return ip
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// takeLimits takes one slot of every configured send limit that applies.
func (e *Engine) takeLimits(ctx context.Context, q store.Queries, p Principal, recipient, ip string, now time.Time) error {
	l := e.cfg.Limits
	app := p.ApplicationID
	if app == "" {
		app = p.actor()
	}
	checks := []struct {
		limit      Limit
		scope, key string
	}{
		{l.Recipient, "recipient", recipient},
		{l.IP, "ip", IPLimitKey(ip)},
		{l.Application, "application", app},
		{l.Tenant, "tenant", p.TenantID},
	}
	for _, c := range checks {
		if c.limit.Count <= 0 || c.key == "" {
			continue
		}
		ok, retry, err := q.TakeRate(ctx, p.TenantID, store.RateLimit{Scope: c.scope, Key: c.key,
			Limit: c.limit.Count, Window: c.limit.Window}, now)
		if err != nil {
			return err
		}
		if !ok {
			return &RateLimitError{Scope: c.scope, RetryAfter: retry}
		}
	}
	return nil
}

// Outcome is the result of one check.
type Outcome int

const (
	// OutcomeVerified: the code was right; this call is the one success of the session.
	OutcomeVerified Outcome = iota + 1
	// OutcomeWrong: the code was wrong and tries remain.
	OutcomeWrong
	// OutcomeExhausted: the code was wrong and that was the last try: the session is now failed.
	OutcomeExhausted
	// OutcomeFinished: the session was already finished (verified, failed, canceled, expired);
	// nothing was evaluated and no try was spent.
	OutcomeFinished
)

// CheckResult is the session after a check and what the check did.
type CheckResult struct {
	Session *Session
	Outcome Outcome
}

// Valid reports whether this check was the session's success.
func (r CheckResult) Valid() bool { return r.Outcome == OutcomeVerified }

// Check evaluates a code against a session. At most one call per session ever returns
// OutcomeVerified. The session is read without a lock, the outcome decided, and then written
// with a compare-and-swap on the row's version: of all checks that read the same version, only
// one can write, and the others read again and decide anew on what it wrote. So every try that
// is counted was evaluated against the state it was counted on, a guess that lost the race is
// never reported (it is re-judged, usually as "finished"), and the writes stay short — on SQLite
// the read does not even enter the single-writer queue.
//
// Check acts on the native API's sessions only; another surface's session is not found here
// (e.g. an SMS device's challenge can only be checked through VerifyDevice, so the device's fail
// counter and lockout apply on every path — SECURITY.md 23).
func (e *Engine) Check(ctx context.Context, p Principal, id, code string) (*CheckResult, error) {
	return e.check(ctx, p, id, code, ownedBy(SurfaceNative))
}

// check is Check on the sessions accept admits (nil: all); the others are not found.
func (e *Engine) check(ctx context.Context, p Principal, id, code string, accept func(*store.Challenge) bool) (*CheckResult, error) {
	// Bound the work before touching the database (SECURITY.md 34). The session's own length is
	// checked once it is read (BSG sessions may be shorter than MinCodeLength).
	if len(code) < MinAllowedCodeLength || len(code) > MaxCodeLength || !otp.ValidFormat(code, len(code)) {
		return nil, fmt.Errorf("%w: the code must be %d–%d ASCII digits", ErrMalformedCode, MinAllowedCodeLength, MaxCodeLength)
	}
	for range maxCASRounds {
		res, err := e.checkOnce(ctx, p, id, code, accept)
		if errors.Is(err, store.ErrConflict) {
			continue // another writer moved the session: judge again on what it wrote
		}
		if err != nil {
			return nil, mapStoreErr(err)
		}
		e.metrics.checked(res.Session.Channel, res.Session.Recipient, res.Outcome)
		return res, nil
	}
	return nil, fmt.Errorf("%w: the session is changing too fast, retry", ErrConflict)
}

// maxCASRounds bounds the re-reads of one check. Every lost round means another request changed
// the session, and a session changes at most max_attempts + a few times, so this is never reached
// in practice; it only guards against a bug spinning forever.
const maxCASRounds = 64

// checkOnce is one read-decide-write round of Check; store.ErrConflict means "read again".
func (e *Engine) checkOnce(ctx context.Context, p Principal, id, code string, accept func(*store.Challenge) bool) (*CheckResult, error) {
	c, err := e.store.GetChallenge(ctx, p.TenantID, id)
	if err != nil {
		return nil, err
	}
	if accept != nil && !accept(c) {
		return nil, store.ErrNotFound
	}
	now := e.clock.Now()
	finished := func() *CheckResult {
		return &CheckResult{Session: &Session{Challenge: *c}, Outcome: OutcomeFinished}
	}
	if c.Status == store.StatusPending && !now.Before(c.ExpiresAt) {
		at := c.ExpiresAt
		c.Status, c.FinishedAt = store.StatusExpired, &at
		err := e.store.InTx(ctx, func(q store.Queries) error { return q.SetChallengeOutcome(ctx, c) })
		return finished(), err
	}
	if c.Status != store.StatusPending {
		return finished(), nil
	}
	if len(code) != c.CodeLength {
		return nil, fmt.Errorf("%w: the code must be exactly %d digits", ErrMalformedCode, c.CodeLength)
	}
	res := &CheckResult{Outcome: OutcomeWrong}
	match := e.keys.CheckCode(c.CodeHash, c.ID, code)
	c.Attempts++
	switch {
	case match:
		c.Status, c.FinishedAt = store.StatusVerified, &now
		res.Outcome = OutcomeVerified
	case c.Attempts >= c.MaxAttempts:
		c.Status, c.FinishedAt = store.StatusFailed, &now
		res.Outcome = OutcomeExhausted
	}
	err = e.store.InTx(ctx, func(q store.Queries) error {
		if err := q.SetChallengeOutcome(ctx, c); err != nil {
			return err
		}
		if res.Outcome == OutcomeExhausted { // a spent budget is worth an audit record; a success is in the row
			return e.audit(ctx, q, p, "verification.failed", c.ID, c.Status, c.ClientIP)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Session = &Session{Challenge: *c}
	return res, nil
}

// expireIfDue moves a pending session past its lifetime to expired (finished_at = expires_at)
// and reports whether it did. Every read path calls it, so expiry never depends on a janitor.
func (e *Engine) expireIfDue(ctx context.Context, q store.Queries, c *store.Challenge, now time.Time) (bool, error) {
	if c.Status != store.StatusPending || now.Before(c.ExpiresAt) {
		return false, nil
	}
	at := c.ExpiresAt
	c.Status, c.FinishedAt = store.StatusExpired, &at
	return true, q.UpdateChallenge(ctx, c)
}

// Resend issues a new code for a pending session: the old code stops working, the lifetime
// starts again, the try budget does not refill (NIST SP 800-63B-4 §3.1.3.2).
func (e *Engine) Resend(ctx context.Context, p Principal, id string) (*Session, error) {
	return e.resend(ctx, p, id, ownedBy(SurfaceNative))
}

// resend is Resend on the sessions accept admits; the others are not found.
func (e *Engine) resend(ctx context.Context, p Principal, id string, accept func(*store.Challenge) bool) (*Session, error) {
	var (
		out      *Session
		enqueued bool
		limitErr error
	)
	err := e.inTx(ctx, func(q store.Queries) error {
		out, enqueued, limitErr = nil, false, nil
		c, err := q.GetChallengeForUpdate(ctx, p.TenantID, id)
		if err != nil {
			return err
		}
		if !accept(c) {
			return store.ErrNotFound // another surface's session
		}
		now := e.clock.Now()
		if expired, err := e.expireIfDue(ctx, q, c, now); err != nil || expired {
			out = &Session{Challenge: *c}
			return err
		}
		if c.Status != store.StatusPending {
			out = &Session{Challenge: *c}
			return nil
		}
		if c.Sends >= c.MaxSends {
			return ErrMaxSends
		}
		if wait := c.LastSentAt.Add(e.cfg.ResendCooldown).Sub(now); wait > 0 {
			limitErr = &RateLimitError{Scope: "cooldown", RetryAfter: wait}
			return limitErr
		}
		if err := e.takeLimits(ctx, q, p, c.Recipient, c.ClientIP, now); err != nil {
			limitErr = err
			return err
		}
		if err := e.takeMessagingLimitsResend(ctx, q, p, c); err != nil {
			if isMessagingRefusal(err) {
				limitErr = err
			}
			return err
		}
		c.Sends++
		c.LastSentAt, c.ExpiresAt = now, now.Add(c.TTL)
		if c.Channel != ChannelNone {
			c.Delivery = store.DeliveryQueued
		}
		out, enqueued, err = e.sendNewCode(ctx, q, c, q.UpdateChallenge)
		return err
	})
	if limitErr != nil {
		return nil, e.refused(ctx, p, "verification.resend", id, limitErr, "")
	}
	if err != nil {
		return nil, mapStoreErr(err)
	}
	if out.Status != store.StatusPending {
		return out, &FinishedError{Status: out.Status}
	}
	if enqueued {
		e.notify()
	}
	return out, nil
}

// Cancel ends a pending session. A finished session returns FinishedError with the session.
func (e *Engine) Cancel(ctx context.Context, p Principal, id string) (*Session, error) {
	return e.cancel(ctx, p, id, ownedBy(SurfaceNative))
}

// cancel is Cancel on the sessions accept admits; the others are not found.
func (e *Engine) cancel(ctx context.Context, p Principal, id string, accept func(*store.Challenge) bool) (*Session, error) {
	var (
		out      *Session
		canceled bool
	)
	err := e.inTx(ctx, func(q store.Queries) error {
		canceled = false
		c, err := q.GetChallengeForUpdate(ctx, p.TenantID, id)
		if err != nil {
			return err
		}
		if !accept(c) {
			return store.ErrNotFound // another surface's session
		}
		now := e.clock.Now()
		out = &Session{Challenge: *c}
		if expired, err := e.expireIfDue(ctx, q, c, now); err != nil || expired {
			out = &Session{Challenge: *c}
			return err
		}
		if c.Status != store.StatusPending {
			return nil
		}
		c.Status, c.FinishedAt = store.StatusCanceled, &now
		if err := q.UpdateChallenge(ctx, c); err != nil {
			return err
		}
		out, canceled = &Session{Challenge: *c}, true
		return e.audit(ctx, q, p, "verification.cancel", c.ID, "ok", "")
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	if !canceled {
		return out, &FinishedError{Status: out.Status}
	}
	return out, nil
}

// Get returns a session, expiring it first if its lifetime has passed.
func (e *Engine) Get(ctx context.Context, p Principal, id string) (*Session, error) {
	c, err := e.store.GetChallenge(ctx, p.TenantID, id)
	if err != nil {
		return nil, mapStoreErr(err)
	}
	if c.Status == store.StatusPending && !e.clock.Now().Before(c.ExpiresAt) {
		err := e.inTx(ctx, func(q store.Queries) error {
			if c, err = q.GetChallengeForUpdate(ctx, p.TenantID, id); err != nil {
				return err
			}
			_, err := e.expireIfDue(ctx, q, c, e.clock.Now())
			return err
		})
		if err != nil {
			return nil, mapStoreErr(err)
		}
	}
	return &Session{Challenge: *c}, nil
}

// ListFilter selects sessions; see store.ChallengeFilter.
type ListFilter = store.ChallengeFilter

// List returns the tenant's sessions, newest first, after expiring those past their lifetime.
func (e *Engine) List(ctx context.Context, p Principal, f ListFilter) ([]Session, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	if f.Limit > 500 {
		return nil, invalid("limit", "must be 1–500")
	}
	if f.Recipient != "" {
		if n, err := normalizeRecipient(f.Channel, f.Recipient); err == nil {
			f.Recipient = n
		}
	}
	if _, err := e.store.ExpireChallenges(ctx, p.TenantID, e.clock.Now()); err != nil {
		return nil, err
	}
	rows, err := e.store.ListChallenges(ctx, p.TenantID, f)
	if err != nil {
		return nil, err
	}
	out := make([]Session, len(rows))
	for i := range rows {
		out[i] = Session{Challenge: rows[i]}
	}
	return out, nil
}

// refused records a send refused by a limit — in the audit log, outside the rolled-back
// transaction, and in the metrics — and returns the refusal.
func (e *Engine) refused(ctx context.Context, p Principal, action, target string, why error, ip string) error {
	e.metrics.refused(why)
	e.auditRefusal(ctx, p, action, target, why, ip)
	return why
}

// auditRefusal writes the audit record of a refusal; a failure to write it is logged.
func (e *Engine) auditRefusal(ctx context.Context, p Principal, action, target string, why error, ip string) {
	var rl *RateLimitError
	result := "refused"
	if s := refusalScope(why); s != "" { // messaging.go
		result = "refused:" + s
	} else if errors.As(why, &rl) {
		result = "refused:" + rl.Scope
	}
	if err := e.audit(ctx, e.store, p, action, target, result, ip); err != nil {
		e.log.Warn("audit write failed", "action", action, "err", err)
	}
}
