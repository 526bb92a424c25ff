package engine

import (
	"context"
	"time"

	"github.com/otpd/otpd/internal/deliver/logsender"
	"github.com/otpd/otpd/internal/store"
)

// Purge expires abandoned sessions past their lifetime (as a read would) and deletes rows that
// no rule needs any more: finished sessions and final messages older than the retention, rate
// events older than the longest limit window, idempotency keys older than a day, retired signing
// keys, and dead one-time tokens, sessions and revocations. A purge can never make a dead code
// valid again: a session is only deleted once it is finished.
func (e *Engine) Purge(ctx context.Context) (store.PurgeResult, error) {
	now := e.clock.Now()
	l := e.cfg.Limits
	// Rate events must outlive the longest window any limit may use: the deployment's, and
	// whatever a tenant set for itself (bounded by MaxTenantLimitWindow).
	window := max(l.Recipient.Window, l.IP.Window, l.Application.Window, l.Tenant.Window, e.cfg.ResendCooldown,
		e.cfg.Messaging.PrefixLimit.Window, e.cfg.Messaging.DuplicateWindow, MaxTenantLimitWindow)
	keep := now.Add(-e.cfg.Retention)
	res, err := e.store.Purge(ctx, store.PurgePolicy{
		ExpirePendingBefore:      now,
		ChallengesFinishedBefore: keep,
		MessagesFinalBefore:      keep,
		RateEventsBefore:         now.Add(-window),
		IdempotencyBefore:        now.Add(-24 * time.Hour),
		DevMessagesBefore:        now.Add(-24 * time.Hour),
		Batch:                    1000,
	})
	if err == nil {
		var n int64
		n, err = e.store.DeleteSigningKeys(ctx, now.Add(-SigningKeyRetention))
		e.metrics.purgedAdd("signing_keys", n)
	}
	if err == nil {
		_, err = e.PurgeTokens(ctx)
	}
	e.metrics.purgedAdd("expired_sessions", res.Expired)
	e.metrics.purgedAdd("challenges", res.Challenges)
	e.metrics.purgedAdd("messages", res.Messages)
	e.metrics.purgedAdd("rate_events", res.RateEvents)
	e.metrics.purgedAdd("idempotency", res.Idempotency)
	e.metrics.purgedAdd("dev_messages", res.DevMessages)
	return res, err
}

// RunJanitor purges every interval until ctx ends. Errors are logged, never fatal.
func (e *Engine) RunJanitor(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			res, err := e.Purge(ctx)
			if err != nil && ctx.Err() == nil {
				e.log.Warn("purge failed", "err", err)
			} else if res != (store.PurgeResult{}) {
				e.log.Debug("purged", "challenges", res.Challenges, "messages", res.Messages,
					"rate_events", res.RateEvents, "idempotency", res.Idempotency, "dev_messages", res.DevMessages)
			}
		}
	}
}

// DevInbox lists what the log provider "sent" to a recipient of the caller's tenant (all
// recipients when to is empty), newest first.
func (e *Engine) DevInbox(ctx context.Context, p Principal, to string, limit int) ([]logsender.InboxMessage, error) {
	if limit <= 0 || limit > 500 {
		limit = 50
	}
	if to != "" {
		for _, ch := range []string{ChannelEmail, ChannelSMS, ChannelNone} {
			if n, err := normalizeRecipient(ch, to); err == nil {
				to = n
				break
			}
		}
	}
	return logsender.Inbox(ctx, e.store, e.keys, p.TenantID, to, limit)
}
