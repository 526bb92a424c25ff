package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/otpd/otpd/internal/store"
)

// The SMS-pumping defences and the BSG session rules, hooked into Start and Resend. Attackers
// drain SMS budgets by making a victim's sign-up form send codes to premium-rate numbers in
// ranges they are paid for; these rules bound what one tenant can be made to send:
//
//   - a destination country allow-list (BSG sessions: default deny),
//   - a sliding-window limit per number block (the number without its last digits),
//   - a daily cap per country calling code,
//   - a daily spend cap over the price table,
//
// besides the engine's per-recipient, per-IP, per-application and per-tenant limits and the
// resend cooldown. BSG sessions also get the pending-session limit and the duplicate-request
// window. Every refusal is counted and audited by Start and Resend (refused), outside the
// rolled-back transaction, so a refused send leaves nothing but its audit record.

// messagingMeta is what every SMS, Viber, voice and WhatsApp session keeps in its Metadata under
// "messaging": where the number is and what one message costs (fixed at the start, so every
// message of the session is priced alike).
type messagingMeta struct {
	Country  string `json:"country"`
	DialCode string `json:"dial_code"`
	Price    string `json:"price"`
	Currency string `json:"currency"`
}

// BSGMeta is what a BSG session keeps in its Metadata under "bsg". SenderAlt is the SMS sender a
// Viber message falls back to (the outbox worker reads it from the session when it sends the
// fallback).
type BSGMeta struct {
	TemplateID int64  `json:"template_id"`
	Sender     string `json:"sender"`
	SenderAlt  string `json:"sender_alt,omitempty"`
	Text       string `json:"text,omitempty"` // the template's text, with the placeholder
}

// sessionMeta is the part of a challenge's Metadata this file reads.
type sessionMeta struct {
	Messaging *messagingMeta `json:"messaging,omitempty"`
	BSG       *BSGMeta       `json:"bsg,omitempty"`
}

func parseSessionMeta(raw string) sessionMeta {
	var m sessionMeta
	if raw != "" {
		_ = json.Unmarshal([]byte(raw), &m) // a dialect's metadata without these members
	}
	return m
}

// isBSG reports whether a challenge is a BSG session.
func isBSG(c *store.Challenge) bool { return c.Surface == SurfaceBSG }

// phoneChannel reports whether messages on ch cost money per message and go to phone numbers.
func phoneChannel(ch string) bool {
	switch ch {
	case ChannelSMS, ChannelViber, ChannelVoice, ChannelWhatsApp:
		return true
	}
	return false
}

// messagingPlan is what planMessaging decided before Start's transaction.
type messagingPlan struct {
	settings MessagingSettings
	meta     messagingMeta
	bsg      *BSGMeta
	dupKey   string // the BSG send's fingerprint for the duplicate window
}

// planMessaging prepares a start on a phone channel: it reads the tenant's settings and price
// and, for a BSG send (Metadata with "bsg"), checks the code length against the tenant's
// minimum and the template, then records what the session keeps in r.Metadata. It returns nil
// for other channels, and for recipients newChallenge will refuse anyway.
func (e *Engine) planMessaging(ctx context.Context, p Principal, r *StartRequest) (*messagingPlan, error) {
	meta := parseSessionMeta(r.Metadata)
	if !phoneChannel(r.Channel) {
		if meta.BSG != nil {
			return nil, invalid("channel", "The value you selected is not a valid choice.")
		}
		return nil, nil
	}
	e164, region, ok := NormalizePhone(r.To)
	if !ok {
		return nil, nil
	}
	s, _, err := e.messagingSettings(ctx, e.store, p.TenantID)
	if err != nil {
		return nil, err
	}
	plan := &messagingPlan{settings: s, meta: messagingMeta{Country: region, DialCode: dialCode(region), Currency: s.Currency}}
	if b := meta.BSG; b != nil {
		if r.CodeLength < s.MinCodeLength {
			return nil, invalid("code_length", "This value should be greater than or equal to %d.", s.MinCodeLength)
		}
		r.minCodeLength = s.MinCodeLength
		t, err := e.templateForSend(ctx, p.TenantID, b.TemplateID, region)
		if err != nil {
			return nil, err
		}
		b.Text = t.Text
		plan.bsg = b
		sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%s\x00%s\x00%d\x00%d\x00%d\x00%d",
			p.ApplicationID, r.Channel, e164, b.Sender, b.SenderAlt, b.TemplateID, r.TTL/time.Second, r.MaxAttempts, r.CodeLength))
		plan.dupKey = hex.EncodeToString(sum[:16])
	}
	if plan.meta.Price, err = e.priceOf(ctx, e.store, p.TenantID, r.Channel, region); err != nil {
		return nil, err
	}
	r.Metadata, err = mergeMetadata(r.Metadata, map[string]any{"messaging": plan.meta, "bsg": plan.bsg})
	return plan, err
}

// mergeMetadata sets members of a JSON object (nil values are left out).
func mergeMetadata(raw string, set map[string]any) (string, error) {
	m := map[string]json.RawMessage{}
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return "", fmt.Errorf("session metadata: %w", err)
		}
	}
	for k, v := range set {
		if b, ok := v.(*BSGMeta); ok && b == nil {
			continue
		}
		enc, err := json.Marshal(v)
		if err != nil {
			return "", err
		}
		m[k] = enc
	}
	out, err := json.Marshal(m)
	return string(out), err
}

// dialCode returns the country calling code of a region ("61" for AU; "" for none).
func dialCode(region string) string {
	if cc := phonenumbers.GetCountryCodeForRegion(region); cc != 0 {
		return strconv.Itoa(cc)
	}
	return ""
}

// numberBlock is the E.164 number without its last digits: the range pumping attacks walk.
func numberBlock(e164 string, digits int) string {
	if len(e164)-digits < 4 {
		return e164
	}
	return e164[:len(e164)-digits]
}

// takeMessagingLimits applies the defences to a start inside its transaction.
func (e *Engine) takeMessagingLimits(ctx context.Context, q store.Queries, p Principal, c *store.Challenge, plan *messagingPlan) error {
	if plan == nil {
		return nil
	}
	return e.takeSendLimits(ctx, q, p, c, plan.settings, plan.meta, plan.bsg != nil, plan.dupKey)
}

// takeMessagingLimitsResend applies the defences to a resend inside its transaction.
func (e *Engine) takeMessagingLimitsResend(ctx context.Context, q store.Queries, p Principal, c *store.Challenge) error {
	if !phoneChannel(c.Channel) {
		return nil
	}
	meta := parseSessionMeta(c.Metadata)
	mm := meta.Messaging
	if mm == nil { // a session started before the defences existed
		_, region, _ := NormalizePhone(c.Recipient)
		mm = &messagingMeta{Country: region, DialCode: dialCode(region), Price: "0"}
	}
	s, _, err := e.messagingSettings(ctx, q, c.TenantID)
	if err != nil {
		return err
	}
	return e.takeSendLimits(ctx, q, p, c, s, *mm, meta.BSG != nil, "")
}

// takeSendLimits checks the allow-list and takes a slot of every defence that applies, in the
// caller's transaction (a refusal rolls the slots back). dupKey is set for a BSG start.
func (e *Engine) takeSendLimits(ctx context.Context, q store.Queries, p Principal, c *store.Challenge,
	s MessagingSettings, m messagingMeta, bsg bool, dupKey string) error {
	now := e.clock.Now()
	if !s.allowsCountry(m.Country, bsg) {
		const msg = "The recipients phone number is located in a country that is not on the list of countries allowed for your account."
		// A country is a property of the recipient, not a rate: the generic outcome is a field
		// error on "to", never a RateLimitError (whose Retry-After would promise that waiting
		// helps). The refusal is still counted and audited as scope "country" (refusalScope).
		return outcome(ErrCountryNotAllowed,
			invalid("to", "messages to %s are not allowed for this tenant (see its allowed_countries)", m.Country), msg)
	}
	if dupKey != "" && s.DuplicateWindowSeconds > 0 {
		ok, retry, err := q.TakeRate(ctx, p.TenantID, store.RateLimit{Scope: "duplicate", Key: dupKey, Limit: 1,
			Window: time.Duration(s.DuplicateWindowSeconds) * time.Second}, now)
		if err != nil {
			return err
		}
		if !ok {
			return outcome(ErrDuplicateRequest, &RateLimitError{Scope: "duplicate", RetryAfter: retry}, "Too many duplicate request detected")
		}
	}
	if dupKey != "" && s.PendingLimit > 0 {
		n, err := q.CountPendingChallenges(ctx, p.TenantID, c.ApplicationID, c.Recipient, now)
		if err != nil {
			return err
		}
		if n >= s.PendingLimit {
			return outcome(ErrPendingLimit, &RateLimitError{Scope: "pending", RetryAfter: time.Minute}, "Authentication limit with status pending")
		}
	}
	if l := s.PrefixLimit.limit(); l.Count > 0 {
		block := numberBlock(c.Recipient, e.cfg.Messaging.withDefaults().PrefixBlockDigits)
		ok, retry, err := q.TakeRate(ctx, p.TenantID, store.RateLimit{Scope: "prefix", Key: block, Limit: l.Count, Window: l.Window}, now)
		if err != nil {
			return err
		}
		if !ok {
			return &RateLimitError{Scope: "prefix", RetryAfter: retry}
		}
	}
	day := now.UTC().Unix() / 86400
	untilTomorrow := time.Unix((day+1)*86400, 0).Sub(now)
	if capN := s.dialCodeCap(m.DialCode); capN > 0 {
		ok, err := q.AddDailyCount(ctx, p.TenantID, store.DailyCount{Scope: "dial_code", Key: m.DialCode, Day: day,
			Count: 1, CapCount: int64(capN)})
		if err != nil {
			return err
		}
		if !ok {
			return outcome(ErrDailyCap, &RateLimitError{Scope: "dial_code", RetryAfter: untilTomorrow}, "Total authentication limit")
		}
	}
	price, _ := parseAmount(m.Price)
	spendCap, _ := parseAmount(s.DailySpendCap)
	if price > 0 && spendCap > 0 {
		ok, err := q.AddDailyCount(ctx, p.TenantID, store.DailyCount{Scope: "spend", Key: "", Day: day,
			Count: 1, Amount: price, CapAmount: spendCap})
		if err != nil {
			return err
		}
		if !ok {
			return outcome(ErrSpendCap, &RateLimitError{Scope: "spend", RetryAfter: untilTomorrow}, "Insufficient funds")
		}
	}
	return nil
}

// recordMessagingSession indexes a new BSG session for otp_list, in Start's transaction.
func (e *Engine) recordMessagingSession(ctx context.Context, q store.Queries, c *store.Challenge, plan *messagingPlan) error {
	if plan == nil || plan.bsg == nil {
		return nil
	}
	return q.CreateMessagingSession(ctx, &store.MessagingSession{TenantID: c.TenantID, ChallengeID: c.ID,
		CountryCode: plan.meta.Country, CreatedAt: c.CreatedAt})
}

// isMessagingRefusal reports whether err is one of the refusals of this file (for Start's audit).
func isMessagingRefusal(err error) bool {
	var rl *RateLimitError
	return refusalScope(err) != "" || errors.As(err, &rl)
}
