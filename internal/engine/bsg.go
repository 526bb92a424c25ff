package engine

import (
	"context"
	"errors"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// The BSG 2FA surface's view of verification sessions. A BSG session is an ordinary session
// (SMS or Viber) whose Metadata carries its template, sender and sender_alt; the BSG surface sees
// only those, and other surfaces' sessions are "not found" to it. All the rules are the engine's:
// Start, Check, Resend and Cancel with the messaging hooks of messaging_defences.go.

// BSGSend is a send_otp request, already checked for its wire format by the dialect.
type BSGSend struct {
	Recipient  string // international number (the dialect passes "+" and BSG's digits)
	Channel    string // sms | viber
	Sender     string
	SenderAlt  string // viber only: the SMS sender of the fallback
	TemplateID int64
	Lifetime   time.Duration
	MaxTries   int
	Digits     int
	ClientIP   string // optional: the end user's address, for the per-IP limit
}

// BSGSession is a BSG session with what its answers show.
type BSGSession struct {
	Session
	BSG      BSGMeta
	Country  string
	Currency string
	// Price is what the session's messages have cost so far: the prices of those handed to a
	// provider ("0" at creation).
	Price string
	// Messages are the session's outbox messages, oldest first (only where loaded).
	Messages []store.NumberedMessage
}

// chargedStatus reports whether a message in this status was handed to a provider.
func chargedStatus(status string) bool {
	switch status {
	case store.MsgSent, store.MsgAccepted, store.MsgDelivered, store.MsgUndelivered:
		return true
	}
	return false
}

// bsgSession builds the view; msgs are the session's messages (nil: not loaded, price 0).
func bsgSession(s *Session, msgs []store.NumberedMessage) *BSGSession {
	meta := parseSessionMeta(s.Metadata)
	out := &BSGSession{Session: *s, Price: "0", Messages: msgs}
	if meta.BSG != nil {
		out.BSG = *meta.BSG
	}
	if m := meta.Messaging; m != nil {
		out.Country, out.Currency = m.Country, m.Currency
	}
	var prices []string
	for _, m := range msgs {
		if chargedStatus(m.Status) {
			prices = append(prices, m.Price)
		}
	}
	out.Price = SumAmounts(prices...)
	return out
}

// withMessages loads the session's messages into the view.
func (e *Engine) withMessages(ctx context.Context, p Principal, s *Session) (*BSGSession, error) {
	msgs, err := e.store.ListNumberedMessages(ctx, p.TenantID, []string{s.ID})
	if err != nil {
		return nil, err
	}
	return bsgSession(s, msgs), nil
}

// SendBSG starts a BSG session (send_otp).
func (e *Engine) SendBSG(ctx context.Context, p Principal, r BSGSend) (*BSGSession, error) {
	meta, err := mergeMetadata("", map[string]any{"bsg": &BSGMeta{TemplateID: r.TemplateID, Sender: r.Sender, SenderAlt: r.SenderAlt}})
	if err != nil {
		return nil, err
	}
	s, err := e.Start(ctx, p, StartRequest{Channel: r.Channel, To: r.Recipient, CodeLength: r.Digits,
		TTL: r.Lifetime, MaxAttempts: r.MaxTries, ClientIP: r.ClientIP, Metadata: meta, Surface: SurfaceBSG})
	if err != nil {
		return nil, err
	}
	return bsgSession(s, nil), nil // just queued: nothing charged yet
}

// bsgGet returns the tenant's BSG session (expired first if due), or ErrNotFound for any other.
func (e *Engine) bsgGet(ctx context.Context, p Principal, id string) (*Session, error) {
	s, err := e.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if !isBSG(&s.Challenge) {
		return nil, ErrNotFound
	}
	return s, nil
}

// GetBSG returns a BSG session with its messages (status_otp), expiring it first if due.
func (e *Engine) GetBSG(ctx context.Context, p Principal, id string) (*BSGSession, error) {
	s, err := e.bsgGet(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return e.withMessages(ctx, p, s)
}

// VerifyBSG checks a code against a BSG session (verify_otp). A malformed code (not the
// session's number of digits) is reported as ErrMalformedCode and spends no try.
func (e *Engine) VerifyBSG(ctx context.Context, p Principal, id, code string) (*BSGSession, Outcome, error) {
	res, err := e.check(ctx, p, id, code, isBSG)
	if err != nil {
		return nil, 0, err
	}
	out, err := e.withMessages(ctx, p, res.Session)
	if err != nil {
		return nil, 0, err
	}
	return out, res.Outcome, nil
}

// ResendBSG sends a new code for a pending BSG session (resend_otp). A finished session returns
// FinishedError.
func (e *Engine) ResendBSG(ctx context.Context, p Principal, id string) (*BSGSession, error) {
	if _, err := e.bsgGet(ctx, p, id); err != nil {
		return nil, err
	}
	s, err := e.resend(ctx, p, id, isBSG)
	if s == nil {
		return nil, err
	}
	out, merr := e.withMessages(ctx, p, s)
	if merr != nil {
		return nil, merr
	}
	return out, err
}

// CancelBSG cancels a pending BSG session (cancel_otp). A finished session returns
// FinishedError.
func (e *Engine) CancelBSG(ctx context.Context, p Principal, id string) (*BSGSession, error) {
	if _, err := e.bsgGet(ctx, p, id); err != nil {
		return nil, err
	}
	s, err := e.cancel(ctx, p, id, isBSG)
	if s == nil {
		return nil, err
	}
	out, merr := e.withMessages(ctx, p, s)
	if merr != nil {
		return nil, merr
	}
	return out, err
}

// BSGListFilter selects BSG sessions; see store.MessagingSessionFilter.
type BSGListFilter = store.MessagingSessionFilter

// ListBSG returns one page of the tenant's BSG sessions with their messages, and how many match
// (otp_list). Pending sessions past their lifetime are expired first.
func (e *Engine) ListBSG(ctx context.Context, p Principal, f BSGListFilter) ([]BSGSession, int, error) {
	if f.Limit < 0 || f.Limit > 500 || f.Offset < 0 {
		return nil, 0, invalid("page", "limit must be 1–500 and offset ≥ 0")
	}
	if f.Recipient != "" {
		if n, _, ok := NormalizePhone(f.Recipient); ok {
			f.Recipient = n
		}
	}
	if _, err := e.store.ExpireChallenges(ctx, p.TenantID, e.clock.Now()); err != nil {
		return nil, 0, err
	}
	rows, total, err := e.store.ListMessagingSessions(ctx, p.TenantID, f)
	if err != nil {
		return nil, 0, err
	}
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = rows[i].ID
	}
	msgs, err := e.store.ListNumberedMessages(ctx, p.TenantID, ids)
	if err != nil {
		return nil, 0, err
	}
	byChallenge := map[string][]store.NumberedMessage{}
	for _, m := range msgs {
		byChallenge[m.ChallengeID] = append(byChallenge[m.ChallengeID], m)
	}
	out := make([]BSGSession, len(rows))
	for i := range rows {
		v := bsgSession(&Session{Challenge: rows[i].Challenge}, byChallenge[rows[i].ID])
		if v.Messages == nil {
			v.Messages = []store.NumberedMessage{}
		}
		out[i] = *v
	}
	return out, total, nil
}

// IsFinished reports whether err says the session is no longer pending, and its status.
func IsFinished(err error) (string, bool) {
	var fe *FinishedError
	if errors.As(err, &fe) {
		return fe.Status, true
	}
	return "", false
}
