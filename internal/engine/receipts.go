package engine

import (
	"context"
	"errors"
	"time"

	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/store"
)

// Delivery receipts and the fallback channel.
//
// A message's status only moves forward:
//
//	queued ⇄ sending → sent → accepted → delivered | undelivered | failed
//	                 ↘ failed (the outbox gave up)
//
// The outbox worker moves a message up to sent (the provider took it) or failed. Receipts then
// move it along the ranks sent (1) < accepted (2) < delivered = undelivered = failed (3): a
// receipt applies only when its status ranks above the message's, so a late "accepted" never
// undoes "delivered", and a final status is never replaced by another final one (a "failed"
// after "delivered" is ignored). Receipts for a message still queued or sending cannot match: the
// provider's message id is recorded with the send.
//
// Fallback: a message with a fallback channel (Viber with BSG's sender_alt) that finally fails —
// the worker gives up, or a receipt says undelivered or failed — is sent once more on the
// fallback channel with the same content, hence the same code, in the same transaction that
// records the failure: a new message row whose body is re-sealed for that row. It happens only
// while the session is pending and unexpired and the message still carries its current code (no
// resend since); the fallback message has no fallback of its own.

// msgRank orders message statuses for receipts.
var msgRank = map[string]int{
	store.MsgQueued: 0, store.MsgSending: 0, store.MsgSent: 1, store.MsgAccepted: 2,
	store.MsgDelivered: 3, store.MsgUndelivered: 3, store.MsgFailed: 3,
}

// receiptTransition says whether a receipt with status to moves a message in status from, and
// where to.
func receiptTransition(from, to string) (string, bool) {
	rt, ok := msgRank[to]
	if !ok || rt == 0 {
		return "", false
	}
	rf := msgRank[from]
	if rf == 0 || rf >= 3 || rt <= rf {
		return "", false
	}
	return to, true
}

func negative(status string) bool {
	return status == store.MsgUndelivered || status == store.MsgFailed
}

// ApplyReceipt records a provider's receipt for the message it knows as r.ProviderMessageID.
// tenantID limits the search to one tenant ("" for a deployment provider); provider is the
// provider's id as recorded on the message. A receipt for a message not known yet (the provider
// answered before the send was recorded) is parked and applied when the worker records the send.
func (e *Engine) ApplyReceipt(ctx context.Context, tenantID, provider string, r deliver.Receipt) error {
	return e.applyReceipt(ctx, tenantID, provider, r, false)
}

func (e *Engine) applyReceipt(ctx context.Context, tenantID, provider string, r deliver.Receipt, replay bool) error {
	if r.ProviderMessageID == "" {
		return nil
	}
	var (
		parked bool
		fb     *store.Message
	)
	err := e.inTx(ctx, func(q store.Queries) error {
		parked, fb = false, nil
		now := e.clock.Now()
		m, err := q.FindMessageByProviderID(ctx, tenantID, provider, r.ProviderMessageID)
		if errors.Is(err, store.ErrNotFound) {
			parked = true
			return q.ParkReceipt(ctx, &store.ParkedReceipt{Provider: provider, ProviderMessageID: r.ProviderMessageID,
				TenantID: tenantID, Status: r.Status, Error: r.Error, At: now})
		}
		if err != nil {
			return err
		}
		next, ok := receiptTransition(m.Status, r.Status)
		if !ok {
			return nil
		}
		if negative(next) {
			if fb, err = e.fallbackMessage(ctx, q, m, now); err != nil {
				return err
			}
		}
		// The body stays only while a fallback may still be needed (sent, accepted).
		wipe := msgRank[next] == 3 || m.FallbackChannel == ""
		if err := q.SetMessageStatus(ctx, m.TenantID, m.ID, m.Status, next, now, wipe); err != nil {
			return err
		}
		if m.ChallengeID == "" {
			return nil
		}
		switch {
		case fb != nil:
			if err := q.CreateMessage(ctx, fb); err != nil {
				return err
			}
			return q.SetChallengeDelivery(ctx, m.TenantID, m.ChallengeID, store.DeliveryQueued)
		case negative(next):
			latest, err := e.isLatest(ctx, q, m)
			if err != nil || !latest {
				return err
			}
			return q.SetChallengeDelivery(ctx, m.TenantID, m.ChallengeID, store.DeliveryFailed)
		}
		return nil
	})
	if err != nil {
		return mapStoreErr(err)
	}
	if fb != nil {
		e.notify()
	}
	if parked && !replay {
		// The send may have been recorded since this transaction looked: if the message is
		// there now, take the parked receipt back (whoever takes it applies it, once).
		if _, err := e.store.FindMessageByProviderID(ctx, tenantID, provider, r.ProviderMessageID); err == nil {
			return e.ReplayParked(ctx, provider, r.ProviderMessageID)
		}
	}
	return nil
}

// ReplayParked applies the receipts parked for one provider message id; the worker calls it
// after recording a send to a provider that reports receipts.
func (e *Engine) ReplayParked(ctx context.Context, provider, providerMessageID string) error {
	rs, err := e.store.TakeParkedReceipts(ctx, provider, providerMessageID)
	if err != nil {
		return err
	}
	for _, r := range rs {
		err := e.applyReceipt(ctx, r.TenantID, provider, deliver.Receipt{ProviderMessageID: providerMessageID,
			Status: r.Status, Error: r.Error}, true)
		if err != nil {
			return err
		}
	}
	return nil
}

// isLatest reports whether m is its session's newest message (it carries the current code).
func (e *Engine) isLatest(ctx context.Context, q store.Queries, m *store.Message) (bool, error) {
	msgs, err := q.ListMessagesByChallenge(ctx, m.TenantID, m.ChallengeID)
	if err != nil {
		return false, err
	}
	return len(msgs) > 0 && msgs[len(msgs)-1].ID == m.ID, nil
}

// fallbackMessage builds the fallback of m, which has just failed, or returns nil when there is
// none to send: no fallback channel, the channel is not offered, the session is over or has a
// newer message, or the body is gone.
func (e *Engine) fallbackMessage(ctx context.Context, q store.Queries, m *store.Message, now time.Time) (*store.Message, error) {
	if m.FallbackChannel == "" || len(m.Body) == 0 {
		return nil, nil
	}
	if !e.channels[m.FallbackChannel] {
		e.log.Warn("fallback channel not offered; no fallback", "message_id", m.ID, "channel", m.FallbackChannel)
		return nil, nil
	}
	if m.ChallengeID != "" {
		c, err := q.GetChallenge(ctx, m.TenantID, m.ChallengeID)
		if err != nil {
			return nil, err
		}
		if c.Status != store.StatusPending || !now.Before(c.ExpiresAt) {
			return nil, nil
		}
		if latest, err := e.isLatest(ctx, q, m); err != nil || !latest {
			return nil, err
		}
	}
	plain, err := e.keys.Open(m.Body, []byte("messages:"+m.ID))
	if err != nil {
		e.log.Warn("message body does not open; no fallback", "message_id", m.ID)
		return nil, nil
	}
	id := newID()
	body, err := e.keys.Seal(plain, []byte("messages:"+id))
	if err != nil {
		return nil, err
	}
	return &store.Message{ID: id, TenantID: m.TenantID, ChallengeID: m.ChallengeID, Channel: m.FallbackChannel,
		Recipient: m.Recipient, Body: body, Status: store.MsgQueued, MaxAttempts: m.MaxAttempts,
		NextAttemptAt: now, CreatedAt: now, UpdatedAt: now, Sender: m.FallbackSender}, nil
}

// FinishWithFallback records the final failure of a message that has a fallback channel and, in
// the same transaction, enqueues its fallback (when one is due): the outbox worker's Fallback.
// A lost lease is store.ErrConflict, and nothing is written.
func (e *Engine) FinishWithFallback(ctx context.Context, owner string, res store.AttemptResult, m *store.Message) error {
	var fb *store.Message
	err := e.store.InTx(ctx, func(q store.Queries) error {
		fb = nil
		cur, err := q.GetMessage(ctx, m.TenantID, m.ID)
		if err != nil {
			return err
		}
		if cur.Status != store.MsgSending || cur.LeaseOwner != owner {
			return store.ErrConflict
		}
		res := res
		if fb, err = e.fallbackMessage(ctx, q, cur, res.Now); err != nil {
			return err
		}
		if fb != nil {
			if err := q.CreateMessage(ctx, fb); err != nil {
				return err
			}
			res.ChallengeDelivery = store.DeliveryQueued
		}
		return q.FinishAttemptTx(ctx, owner, res)
	})
	if err == nil && fb != nil {
		e.notify()
	}
	return err
}

// AfterSent applies receipts that arrived before the worker recorded a send: the outbox
// worker's AfterSent.
func (e *Engine) AfterSent(ctx context.Context, m *store.Message, provider, providerMessageID string) {
	if err := e.ReplayParked(ctx, provider, providerMessageID); err != nil {
		e.log.Warn("parked receipts not applied", "message_id", m.ID, "provider", provider, "err", err)
	}
}
