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
	ID           string      `json:"id"`
	Recipient    string      `json:"recipient"`
	Status       string      `json:"status"`
	Channel      string      `json:"channel"`
	Sender       string      `json:"sender"`
	SenderAlt    *string     `json:"sender_alt"`
	MessageText  string      `json:"message_text"`
	CodeLifetime int         `json:"code_lifetime"`
	CodeMaxTries int         `json:"code_max_tries"`
	CodeDigits   int         `json:"code_digits"`
	Price        json.Number `json:"price"`
	Currency     string      `json:"currency"`
	CountryCode  string      `json:"country_code"`
	ExpiredAt    string      `json:"expired_at"`
	CreatedAt    string      `json:"created_at"`
	FinishedAt   *string     `json:"finished_at"`
	Messages     *[]wireMessage  `json:"messages,omitempty"`
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

func wireTimeOf(t time.Time) string { return t.UTC().Format(wireTime) }

func wireTimePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := wireTimeOf(*t)
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

// messageStatus is a message's status in BSG's words: accepted while otpd or the provider still
// has it, sent once handed over, then delivered or undelivered when a receipt says so (a
// message otpd gave up on is undelivered).
func messageStatus(s string) string {
	switch s {
	case store.MsgSent:
		return "sent"
	case store.MsgDelivered:
		return "delivered"
	case store.MsgUndelivered, store.MsgFailed:
		return "undelivered"
	}
	return "accepted" // queued, sending, accepted
}

func toSession(s *engine.BSGSession, withMessages bool) session {
	out := session{
		ID: s.ID, Recipient: digits(s.Recipient), Status: s.Status, Channel: s.Channel,
		Sender: s.BSG.Sender, MessageText: s.BSG.Text,
		CodeLifetime: int(s.TTL / time.Second), CodeMaxTries: s.MaxAttempts, CodeDigits: s.CodeLength,
		Price: amount(s.Price), Currency: s.Currency, CountryCode: s.Country,
		ExpiredAt: wireTimeOf(s.ExpiresAt), CreatedAt: wireTimeOf(s.CreatedAt), FinishedAt: wireTimePtr(s.FinishedAt),
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
				SentAt: wireTimePtr(m.SentAt), CreatedAt: wireTimeOf(m.CreatedAt)})
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
		UpdatedAt: wireTimeOf(t.UpdatedAt)}
}
