package bsg

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store"
)

// The answers' JSON: TwoFactorAuthenticationSchema, TwoFactorAuthenticationMessagesResource,
// TwoFactorMessageResource and TwoFaTemplateResource of BSG's schema, wrapped in {"data": …}.

// session is TwoFactorAuthenticationSchema; with Messages set it is
// TwoFactorAuthenticationMessagesResource.
type session struct {
	ID           string         `json:"id"`
	Recipient    string         `json:"recipient"`
	Status       string         `json:"status"`
	Channel      string         `json:"channel"`
	Sender       string         `json:"sender"`
	SenderAlt    *string        `json:"sender_alt"`
	MessageText  string         `json:"message_text"`
	CodeLifetime int            `json:"code_lifetime"`
	CodeMaxTries int            `json:"code_max_tries"`
	CodeDigits   int            `json:"code_digits"`
	Price        json.Number    `json:"price"`
	Currency     string         `json:"currency"`
	CountryCode  string         `json:"country_code"`
	ExpiredAt    string         `json:"expired_at"`
	CreatedAt    string         `json:"created_at"`
	FinishedAt   *string        `json:"finished_at"`
	Messages     *[]wireMessage `json:"messages,omitempty"`
}

// message is TwoFactorMessageResource.
type wireMessage struct {
	ID        int64       `json:"id"`
	Recipient string      `json:"recipient"`
	Status    string      `json:"status"`
	Channel   string      `json:"channel"`
	Sender    string      `json:"sender"`
	Price     json.Number `json:"price"`
	Currency  string      `json:"currency"`
	SentAt    *string     `json:"sent_at"`
	CreatedAt string      `json:"created_at"`
}

// template is TwoFaTemplateResource.
type template struct {
	TemplateID int64    `json:"template_id"`
	Name       string   `json:"name"`
	Text       string   `json:"text"`
	Countries  []string `json:"countries"`
	Status     string   `json:"status"`
	UpdatedAt  string   `json:"updated_at"`
}

type data struct {
	Data any `json:"data"`
}

type list struct {
	Total int `json:"total"`
	List  any `json:"list"`
}

// Times: the schema's date-time fields (a session's expired_at, created_at, finished_at, a
// template's updated_at) are RFC 3339 in UTC with an explicit offset, which every generated SDK
// parses; a message's sent_at and created_at are plain strings in BSG's examples' form
// ("2022-04-18 11:00:30", UTC).
const dateTime = "2006-01-02T15:04:05-07:00"

func dateTimeOf(t time.Time) string { return t.UTC().Format(dateTime) }

func dateTimePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := dateTimeOf(*t)
	return &s
}

func plainTimeOf(t time.Time) string { return t.UTC().Format(wireTime) }

func plainTimePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := plainTimeOf(*t)
	return &s
}

// digits is an E.164 number as BSG shows it: digits without the "+".
func digits(e164 string) string { return strings.TrimPrefix(e164, "+") }

// amount writes a decimal string as a JSON number.
func amount(s string) json.Number {
	if n, ok := engine.NormalizeAmount(s); ok {
		return json.Number(n)
	}
	return json.Number("0")
}

// messageStatus is a message's status in BSG's words, within the schema's enum (sent,
// accepted) so generated SDKs can read it: "sent" once a provider took the message (sent,
// delivered), "accepted" otherwise — accepted for sending but not (yet, or ever) sent: queued,
// sending, accepted by a provider without confirmation, undelivered, failed. The native API
// shows the exact status.
func messageStatus(s string) string {
	switch s {
	case store.MsgSent, store.MsgDelivered:
		return "sent"
	}
	return "accepted"
}

func toSession(s *engine.BSGSession, withMessages bool) session {
	out := session{
		ID: s.ID, Recipient: digits(s.Recipient), Status: s.Status, Channel: s.Channel,
		Sender: s.BSG.Sender, MessageText: s.BSG.Text,
		CodeLifetime: int(s.TTL / time.Second), CodeMaxTries: s.MaxAttempts, CodeDigits: s.CodeLength,
		Price: amount(s.Price), Currency: s.Currency, CountryCode: s.Country,
		ExpiredAt: dateTimeOf(s.ExpiresAt), CreatedAt: dateTimeOf(s.CreatedAt), FinishedAt: dateTimePtr(s.FinishedAt),
	}
	if s.BSG.SenderAlt != "" {
		alt := s.BSG.SenderAlt
		out.SenderAlt = &alt
	}
	if withMessages {
		ms := make([]wireMessage, 0, len(s.Messages))
		for _, m := range s.Messages {
			cur := m.Currency
			if cur == "" {
				cur = s.Currency
			}
			ms = append(ms, wireMessage{ID: m.Num, Recipient: digits(m.Recipient), Status: messageStatus(m.Status),
				Channel: m.Channel, Sender: m.Sender, Price: amount(m.Price), Currency: cur,
				SentAt: plainTimePtr(m.SentAt), CreatedAt: plainTimeOf(m.CreatedAt)})
		}
		out.Messages = &ms
	}
	return out
}

func toTemplate(t *store.Template) template {
	cs := t.Countries
	if cs == nil {
		cs = []string{}
	}
	return template{TemplateID: t.ID, Name: t.Name, Text: t.Text, Countries: cs, Status: t.Status,
		UpdatedAt: dateTimeOf(t.UpdatedAt)}
}
