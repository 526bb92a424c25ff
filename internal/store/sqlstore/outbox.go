package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// The outbox: messages, their leases and their attempts.
//
// While a message is leased (status sending), next_attempt_at equals lease_until, so one partial
// index (messages_due, next_attempt_at over the queued and sending rows) serves the whole claim
// scan: queued rows that are due and sending rows whose lease has run out. A row claimed again
// after its lease ran out gets last_error store.AttemptInterrupted, so the worker knows the
// previous attempt is in doubt and repeats it at the same provider.

const messageCols = `id, tenant_id, challenge_id, channel, recipient, body, provider, status, attempts,
	max_attempts, next_attempt_at, lease_until, lease_owner, provider_message_id, last_error,
	created_at, updated_at, sent_at, sender, fallback_channel, price, currency, fallback_sender`

const claimSQL = `UPDATE messages SET status = 'sending', lease_owner = $1, lease_until = $2,
		next_attempt_at = $2, attempts = attempts + 1, updated_at = $3,
		last_error = CASE WHEN status = 'sending' THEN $5 ELSE last_error END
	WHERE id IN (SELECT id FROM messages
		WHERE status IN ('queued', 'sending') AND next_attempt_at <= $3
			AND (status = 'queued' OR lease_until < $3)
		ORDER BY next_attempt_at LIMIT $4%s)
	RETURNING ` + messageCols

var (
	sqlInsertMessage = def(`INSERT INTO messages (` + messageCols + `) VALUES ($1, $2, $3, $4, $5, $6,
		$7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)`)
	sqlGetMessage            = def(`SELECT ` + messageCols + ` FROM messages WHERE tenant_id = $1 AND id = $2`)
	sqlListMessagesChallenge = def(`SELECT ` + messageCols + ` FROM messages
		WHERE tenant_id = $1 AND challenge_id = $2 ORDER BY created_at, id`)
	// SQLite: the IMMEDIATE transaction excludes other claimers. PostgreSQL: rows another claimer
	// has locked are skipped, and a row claimed since our snapshot fails the re-check.
	sqlClaimSQLite   = def(fmt.Sprintf(claimSQL, ""))
	sqlClaimPostgres = def(fmt.Sprintf(claimSQL, " FOR UPDATE SKIP LOCKED"))
	// A message with a fallback channel keeps its sealed body while it waits for the provider's
	// receipt (sent, accepted): a negative receipt sends the same content on the fallback channel.
	sqlFinishMessage = def(`UPDATE messages SET status = $1, next_attempt_at = $2,
		provider_message_id = CASE WHEN $3 = '' THEN provider_message_id ELSE $3 END,
		last_error = $4, sent_at = coalesce(sent_at, $5), lease_owner = '', lease_until = NULL,
		body = CASE WHEN $6 = 1 AND (fallback_channel = '' OR $1 NOT IN ('sent', 'accepted')) THEN NULL ELSE body END,
		updated_at = $7, provider = CASE WHEN $11 = '' THEN provider ELSE $11 END
		WHERE id = $8 AND lease_owner = $9 AND status = 'sending' AND ($10 = 0 OR attempts = $10)
		RETURNING tenant_id, challenge_id, attempts`)
	sqlMessageExists = def(`SELECT 1 FROM messages WHERE id = $1`)
	sqlFinishAttempt = def(`UPDATE message_attempts SET finished_at = $1, outcome = $2, error = $3,
		provider = CASE WHEN $6 = '' THEN provider ELSE $6 END
		WHERE message_id = $4 AND attempt = $5`)
	sqlStartMessage = def(`UPDATE messages SET provider = $1
		WHERE id = $2 AND lease_owner = $3 AND status = 'sending' AND attempts = $4`)
	sqlStartAttempt = def(`UPDATE message_attempts SET provider = $1 WHERE message_id = $2 AND attempt = $3`)
	sqlSetDelivery  = def(`UPDATE challenges SET delivery = $1, version = version + 1
		WHERE tenant_id = $2 AND id = $3`)
	sqlListAttempts = def(`SELECT message_id, attempt, provider, started_at, finished_at, outcome, error
		FROM message_attempts WHERE message_id = $1 ORDER BY attempt`)
)

func scanMessage(sc scanner) (*store.Message, error) {
	var m store.Message
	var challenge sql.NullString
	var next, created, updated int64
	var lease, sent sql.NullInt64
	err := sc.Scan(&m.ID, &m.TenantID, &challenge, &m.Channel, &m.Recipient, &m.Body, &m.Provider,
		&m.Status, &m.Attempts, &m.MaxAttempts, &next, &lease, &m.LeaseOwner, &m.ProviderMessageID,
		&m.LastError, &created, &updated, &sent, &m.Sender, &m.FallbackChannel, &m.Price, &m.Currency,
		&m.FallbackSender)
	if err != nil {
		return nil, err
	}
	m.ChallengeID = challenge.String
	m.NextAttemptAt = fromMs(next)
	m.LeaseUntil = fromNullMs(lease)
	m.CreatedAt = fromMs(created)
	m.UpdatedAt = fromMs(updated)
	m.SentAt = fromNullMs(sent)
	return &m, nil
}

// isFinal reports whether a message status ends the message's life (its body is wiped).
func isFinal(status string) bool {
	switch status {
	case store.MsgSent, store.MsgAccepted, store.MsgDelivered, store.MsgUndelivered, store.MsgFailed:
		return true
	}
	return false
}

// CreateMessage inserts m (status queued if empty); ErrNotFound if its challenge is not one of
// its tenant's.
func (q *queries) CreateMessage(ctx context.Context, m *store.Message) error {
	if m.ID == "" {
		m.ID = newID()
	}
	if m.Status == "" {
		m.Status = store.MsgQueued
	}
	m.NextAttemptAt = truncMs(m.NextAttemptAt)
	m.LeaseUntil = truncMsPtr(m.LeaseUntil)
	m.CreatedAt = truncMs(m.CreatedAt)
	m.UpdatedAt = truncMs(m.UpdatedAt)
	m.SentAt = truncMsPtr(m.SentAt)
	_, err := q.exec(ctx, sqlInsertMessage, m.ID, m.TenantID, nullStr(m.ChallengeID), m.Channel,
		m.Recipient, nullBytes(m.Body), m.Provider, m.Status, m.Attempts, m.MaxAttempts,
		ms(m.NextAttemptAt), nullMs(m.LeaseUntil), m.LeaseOwner, m.ProviderMessageID, m.LastError,
		ms(m.CreatedAt), ms(m.UpdatedAt), nullMs(m.SentAt), m.Sender, m.FallbackChannel, m.Price, m.Currency,
		m.FallbackSender)
	return wrap(err, "create message")
}

func (q *queries) GetMessage(ctx context.Context, tenantID, id string) (*store.Message, error) {
	m, err := scanMessage(q.queryRow(ctx, false, sqlGetMessage, tenantID, id))
	return m, wrap(err, "get message")
}

// ListMessagesByChallenge returns the challenge's messages, oldest first.
func (q *queries) ListMessagesByChallenge(ctx context.Context, tenantID, challengeID string) ([]store.Message, error) {
	rows, err := q.query(ctx, false, sqlListMessagesChallenge, tenantID, challengeID)
	msgs, err := scanAll(rows, err, scanMessage)
	return msgs, wrap(err, "list messages")
}

// ClaimMessages leases up to limit due messages to owner until now+lease, in one transaction:
// it moves them to sending, counts the attempt, records a "started" attempt row, and returns
// them oldest-due first. While leased, NextAttemptAt equals LeaseUntil.
func (s *Store) ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]store.Message, error) {
	if owner == "" {
		return nil, errors.New("sqlstore: claim messages: empty owner")
	}
	if limit <= 0 {
		return nil, nil
	}
	if lease < time.Millisecond {
		return nil, fmt.Errorf("sqlstore: claim messages: lease %v is under a millisecond", lease)
	}
	claim := sqlClaimSQLite
	if s.dialect == DialectPostgres {
		claim = sqlClaimPostgres
	}
	var out []store.Message
	err := s.inTx(ctx, func(q *queries) error {
		rows, err := q.query(ctx, true, claim, owner, ms(now.Add(lease)), ms(now), limit, store.AttemptInterrupted)
		out, err = scanAll(rows, err, scanMessage)
		if err != nil || len(out) == 0 {
			return err
		}
		// RETURNING has no order; the original order is by due time, which the update overwrote.
		slices.SortFunc(out, func(a, b store.Message) int {
			return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
		})
		var b strings.Builder
		b.WriteString(`INSERT INTO message_attempts (message_id, attempt, provider, started_at, outcome, error) VALUES `)
		args := make([]any, 0, 4*len(out))
		for i, m := range out {
			if i > 0 {
				b.WriteString(", ")
			}
			n := len(args)
			fmt.Fprintf(&b, "($%d, $%d, $%d, $%d, 'started', '')", n+1, n+2, n+3, n+4)
			args = append(args, m.ID, m.Attempts, m.Provider, ms(now))
		}
		_, err = q.exec(ctx, b.String(), args...)
		return err
	})
	if err != nil {
		return nil, wrap(err, "claim messages")
	}
	return out, nil
}

// FinishAttempt records the outcome of attempt res.Attempt (0: the current one) of a message
// leased by owner, in one transaction: the message moves to res.Status (a final status wipes the
// body, except sent and accepted of a message with a fallback channel, which keep it for a
// receipt-triggered fallback; sent, accepted and delivered set SentAt once), its lease is cleared,
// the attempt row gets its end time, its provider (when res.Provider is set) and its outcome
// ("ok", or "error" for a retry, a failure or an error text), and the challenge's delivery
// summary is set when res.ChallengeDelivery is not empty (bumping the challenge's version).
// ErrConflict if owner no longer holds the lease on that attempt, ErrNotFound if the message is
// gone.
func (s *Store) FinishAttempt(ctx context.Context, owner string, res store.AttemptResult) error {
	if err := checkNextStatus(res.Status); err != nil {
		return err
	}
	err := s.inTx(ctx, func(q *queries) error { return q.finishAttempt(ctx, owner, res) })
	return wrap(err, "finish attempt")
}

// FinishAttemptTx is FinishAttempt inside the caller's transaction.
func (q *queries) FinishAttemptTx(ctx context.Context, owner string, res store.AttemptResult) error {
	if err := checkNextStatus(res.Status); err != nil {
		return err
	}
	return wrap(q.finishAttempt(ctx, owner, res), "finish attempt")
}

func checkNextStatus(status string) error {
	switch status {
	case store.MsgQueued, store.MsgSent, store.MsgAccepted, store.MsgDelivered, store.MsgUndelivered, store.MsgFailed:
		return nil
	}
	return fmt.Errorf("sqlstore: finish attempt: status %q is not a next status", status)
}

func (q *queries) finishAttempt(ctx context.Context, owner string, res store.AttemptResult) error {
	now := ms(res.Now)
	next := now
	if !res.NextAttemptAt.IsZero() {
		next = ms(res.NextAttemptAt)
	}
	var sentAt any
	outcome := "error"
	switch res.Status {
	case store.MsgSent, store.MsgAccepted, store.MsgDelivered:
		sentAt = now
		if res.Error == "" {
			outcome = "ok"
		}
	}
	wipe := 0
	if isFinal(res.Status) {
		wipe = 1
	}
	var tenantID string
	var challengeID sql.NullString
	var attempt int
	err := q.queryRow(ctx, true, sqlFinishMessage, res.Status, next, res.ProviderMessageID,
		res.Error, sentAt, wipe, now, res.MessageID, owner, res.Attempt, res.Provider).
		Scan(&tenantID, &challengeID, &attempt)
	if errors.Is(err, sql.ErrNoRows) {
		var one int
		if err := q.queryRow(ctx, true, sqlMessageExists, res.MessageID).Scan(&one); err != nil {
			return err
		}
		return fmt.Errorf("lease of %s attempt %d not held by %s: %w", res.MessageID, res.Attempt, owner, store.ErrConflict)
	}
	if err != nil {
		return err
	}
	if _, err := q.exec(ctx, sqlFinishAttempt, now, outcome, res.Error, res.MessageID, attempt, res.Provider); err != nil {
		return err
	}
	if res.ChallengeDelivery != "" && challengeID.Valid {
		if _, err := q.exec(ctx, sqlSetDelivery, res.ChallengeDelivery, tenantID, challengeID.String); err != nil {
			return err
		}
	}
	return nil
}

// StartAttempts records the provider of each message's current attempt, in one transaction, for
// the messages owner still leases at that attempt; it returns the ids it recorded.
func (s *Store) StartAttempts(ctx context.Context, owner string, starts []store.AttemptStart) ([]string, error) {
	var ok []string
	err := s.inTx(ctx, func(q *queries) error {
		ok = ok[:0]
		for _, st := range starts {
			n, err := affected(q.exec(ctx, sqlStartMessage, st.Provider, st.MessageID, owner, st.Attempt))
			if err != nil {
				return err
			}
			if n == 0 {
				continue
			}
			if _, err := q.exec(ctx, sqlStartAttempt, st.Provider, st.MessageID, st.Attempt); err != nil {
				return err
			}
			ok = append(ok, st.MessageID)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "start attempts")
	}
	return ok, nil
}

// ListAttempts returns a message's attempts, oldest first.
func (s *Store) ListAttempts(ctx context.Context, messageID string) ([]store.MessageAttempt, error) {
	rows, err := s.query(ctx, false, sqlListAttempts, messageID)
	as, err := scanAll(rows, err, func(sc scanner) (*store.MessageAttempt, error) {
		var a store.MessageAttempt
		var started int64
		var finished sql.NullInt64
		if err := sc.Scan(&a.MessageID, &a.Attempt, &a.Provider, &started, &finished, &a.Outcome, &a.Error); err != nil {
			return nil, err
		}
		a.StartedAt = fromMs(started)
		a.FinishedAt = fromNullMs(finished)
		return &a, nil
	})
	return as, wrap(err, "list attempts")
}
