// Package logsender is the development provider "log": instead of sending, it writes one log
// line per message — id, channel and masked recipient, never the body (SPEC rule 8) — and keeps
// the message, sealed, in the dev inbox (the dev_messages table), where GET /v1/dev/messages
// shows it to the tenant.
package logsender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
)

// Name is the provider name.
const Name = "log"

// Sender is the log provider. It serves every channel.
type Sender struct {
	q   store.Queries
	kr  *keys.Keyring
	log *slog.Logger
	// Clock stamps inbox entries; clock.Real unless set (before first use).
	Clock clock.Clock
}

var _ deliver.Sender = (*Sender)(nil)

// New returns a log provider that stores into q, sealing with kr, and logs to log
// (slog.Default() when nil).
func New(q store.Queries, kr *keys.Keyring, log *slog.Logger) *Sender {
	if log == nil {
		log = slog.Default()
	}
	return &Sender{q: q, kr: kr, log: log, Clock: clock.Real{}}
}

// Name is "log".
func (s *Sender) Name() string { return Name }

// aad binds a sealed inbox body to its row.
func aad(id string) []byte { return []byte("dev_messages:" + id) }

// Send stores m in the dev inbox and logs that it did. The returned provider id is the inbox
// entry's id.
func (s *Sender) Send(ctx context.Context, m deliver.Message) (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("log provider: new id: %w", err)
	}
	plain, err := json.Marshal(m.Content)
	if err != nil {
		return "", deliver.Permanent(fmt.Errorf("log provider: encode content: %w", err))
	}
	body, err := s.kr.Seal(plain, aad(id.String()))
	if err != nil {
		return "", fmt.Errorf("log provider: seal: %w", err)
	}
	now := time.Now().UTC()
	if s.Clock != nil {
		now = s.Clock.Now()
	}
	err = s.q.CreateDevMessage(ctx, &store.DevMessage{
		ID: id.String(), TenantID: m.TenantID, Channel: m.Channel, Recipient: m.To,
		Body: body, CreatedAt: now,
	})
	if err != nil {
		return "", fmt.Errorf("log provider: store in dev inbox: %w", err)
	}
	s.log.Info("log provider: message stored in dev inbox (body not logged)",
		"message_id", m.ID, "inbox_id", id.String(), "tenant_id", m.TenantID,
		"channel", m.Channel, "to", deliver.MaskRecipient(m.To))
	return id.String(), nil
}

// InboxMessage is one opened dev inbox entry.
type InboxMessage struct {
	ID        string    `json:"id"`
	Channel   string    `json:"channel"`
	To        string    `json:"to"`
	Subject   string    `json:"subject,omitempty"`
	Body      string    `json:"body"` // the text part
	CreatedAt time.Time `json:"created_at"`
}

// errUnreadable marks an inbox entry that does not open (its key is gone or the row is damaged).
var errUnreadable = errors.New("log provider: dev inbox entry does not open")

// Inbox lists a tenant's dev inbox, newest first, opened; to "" lists every recipient. An entry
// that does not open (e.g. sealed under a key no longer in the ring) is skipped rather than
// hiding the rest of the inbox.
func Inbox(ctx context.Context, q store.Queries, kr *keys.Keyring, tenantID, to string, limit int) ([]InboxMessage, error) {
	rows, err := q.ListDevMessages(ctx, tenantID, to, limit)
	if err != nil {
		return nil, fmt.Errorf("dev inbox: %w", err)
	}
	out := make([]InboxMessage, 0, len(rows))
	for _, r := range rows {
		c, err := open(kr, &r)
		if err != nil {
			continue
		}
		out = append(out, InboxMessage{ID: r.ID, Channel: r.Channel, To: r.Recipient,
			Subject: c.Subject, Body: c.Text, CreatedAt: r.CreatedAt})
	}
	return out, nil
}

func open(kr *keys.Keyring, r *store.DevMessage) (deliver.Content, error) {
	var c deliver.Content
	plain, err := kr.Open(r.Body, aad(r.ID))
	if err != nil {
		return c, errUnreadable
	}
	if err := json.Unmarshal(plain, &c); err != nil {
		return c, errUnreadable
	}
	return c, nil
}
