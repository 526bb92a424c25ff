package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/store"
)

// enqueue writes the outbox message for c's code, sealed, when the channel delivers.
func (e *Engine) enqueue(ctx context.Context, q store.Queries, c *store.Challenge, code string) (bool, error) {
	if c.Channel == ChannelNone {
		return false, nil
	}
	content, opts, err := e.composeMessage(ctx, q, c, code)
	if err != nil {
		return false, err
	}
	plain, err := json.Marshal(content)
	if err != nil {
		return false, err
	}
	id := newID()
	body, err := e.keys.Seal(plain, []byte("messages:"+id))
	if err != nil {
		return false, err
	}
	now := e.clock.Now()
	err = q.CreateMessage(ctx, &store.Message{
		ID: id, TenantID: c.TenantID, ChallengeID: c.ID, Channel: c.Channel, Recipient: c.Recipient,
		Body: body, Status: store.MsgQueued, MaxAttempts: e.cfg.MessageAttempts,
		NextAttemptAt: now, CreatedAt: now, UpdatedAt: now,
		Sender: opts.Sender, FallbackChannel: opts.FallbackChannel, FallbackSender: opts.FallbackSender,
		Price: opts.Price, Currency: opts.Currency,
	})
	return err == nil, err
}

// messageOptions are the outbox message's delivery attributes besides its content.
type messageOptions struct {
	Sender, FallbackChannel, FallbackSender, Price, Currency string
}

// composeMessage decides what a session's message says and how it travels, for the first send
// and every resend alike, from the session alone (its Metadata, written at the start): a BSG
// session's template text with the code in place of {code2fa}, its sender, and for Viber with a
// sender_alt the SMS fallback sent by sender_alt; the price fixed at the start for every phone
// channel; the default text for everything else.
func (e *Engine) composeMessage(ctx context.Context, q store.Queries, c *store.Challenge, code string) (deliver.Content, messageOptions, error) {
	content, opts := defaultMessage(c, code), messageOptions{}
	meta := parseSessionMeta(c.Metadata)
	if m := meta.Messaging; m != nil {
		opts.Price, opts.Currency = m.Price, m.Currency
	}
	if b := meta.BSG; b != nil {
		if strings.Count(b.Text, CodePlaceholder) != 1 { // templates are checked when saved; never send a message without its code
			return content, opts, fmt.Errorf("session %s: template text without exactly one %s", c.ID, CodePlaceholder)
		}
		content = deliver.Content{Text: strings.Replace(b.Text, CodePlaceholder, code, 1)}
		opts.Sender = b.Sender
		if c.Channel == ChannelViber && b.SenderAlt != "" {
			opts.FallbackChannel, opts.FallbackSender = ChannelSMS, b.SenderAlt
		}
	}
	return content, opts, nil
}

// defaultMessage is the text a recipient gets when no template applies.
func defaultMessage(c *store.Challenge, code string) deliver.Content {
	mins := int(c.TTL.Round(time.Minute) / time.Minute)
	if mins < 1 {
		mins = 1
	}
	text := fmt.Sprintf("Your verification code is %s. It expires in %d minute%s. If you did not ask for it, ignore this message.",
		code, mins, plural(mins))
	if c.Channel != ChannelEmail {
		return deliver.Content{Text: text}
	}
	html := fmt.Sprintf(`<!doctype html><html><body style="font-family:sans-serif">`+
		`<p>Your verification code is</p><p style="font-size:28px;letter-spacing:4px"><b>%s</b></p>`+
		`<p>It expires in %d minute%s. If you did not ask for it, ignore this message.</p></body></html>`,
		code, mins, plural(mins))
	return deliver.Content{Subject: "Your verification code", Text: text, HTML: html}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
