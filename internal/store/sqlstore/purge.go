package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/otpd/otpd/internal/store"
)

var (
	// Abandoned sessions are expired in batches through the (status, expires_at) index.
	sqlExpirePending = def(`UPDATE challenges SET status = 'expired', finished_at = expires_at,
		version = version + 1
		WHERE id IN (SELECT id FROM challenges WHERE status = 'pending' AND expires_at < $1
			ORDER BY expires_at LIMIT $2)`)
	sqlPurgeChallengeIDs = def(`SELECT id FROM challenges
		WHERE finished_at IS NOT NULL AND finished_at < $1 AND status <> 'pending'
		ORDER BY finished_at LIMIT $2`)
	// Attempts go with their message (ON DELETE CASCADE).
	sqlPurgeMessages = def(`DELETE FROM messages WHERE id IN (SELECT id FROM messages
		WHERE status IN ('sent', 'accepted', 'delivered', 'undelivered', 'failed') AND updated_at < $1
		ORDER BY updated_at LIMIT $2)`)
	sqlPurgeDevMessages = def(`DELETE FROM dev_messages WHERE id IN (SELECT id FROM dev_messages
		WHERE created_at < $1 LIMIT $2)`)
	// rate_events and idempotency_keys have no single-column key: batches are picked by row
	// address, rowid on SQLite and ctid on PostgreSQL.
	sqlPurgeRateSQLite = def(`DELETE FROM rate_events WHERE rowid IN (SELECT rowid FROM rate_events
		WHERE at < $1 LIMIT $2)`)
	sqlPurgeRatePostgres = def(`DELETE FROM rate_events WHERE ctid = ANY (ARRAY(SELECT ctid FROM rate_events
		WHERE at < $1 LIMIT $2))`)
	sqlPurgeIdemSQLite = def(`DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys
		WHERE created_at < $1 LIMIT $2)`)
	sqlPurgeIdemPostgres = def(`DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(SELECT ctid FROM idempotency_keys
		WHERE created_at < $1 LIMIT $2))`)
)

// Purge deletes, in batches of p.Batch rows (default 1000, at most 5000) so no statement holds
// locks for long: finished (not pending) challenges with finished_at before the cutoff together
// with their messages and attempts; messages in a final status last updated before the cutoff;
// rate events, idempotency keys and dev messages older than their cutoffs. A zero cutoff skips
// that kind. Each batch commits on its own; an error returns what was deleted so far.
func (s *Store) Purge(ctx context.Context, p store.PurgePolicy) (store.PurgeResult, error) {
	batch := limit(p.Batch, 1000, 5000)
	var res store.PurgeResult

	if !p.ExpirePendingBefore.IsZero() {
		for {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			var n int64
			err := s.inTx(ctx, func(q *queries) error {
				var err error
				n, err = affected(q.exec(ctx, sqlExpirePending, ms(p.ExpirePendingBefore), batch))
				return err
			})
			res.Expired += n
			if err != nil {
				return res, wrap(err, "expire pending challenges")
			}
			if n < int64(batch) {
				break
			}
		}
	}

	if !p.ChallengesFinishedBefore.IsZero() {
		for {
			var ch, msg int64
			err := s.inTx(ctx, func(q *queries) error {
				var err error
				ch, msg, err = q.purgeChallenges(ctx, p.ChallengesFinishedBefore, batch)
				return err
			})
			res.Challenges += ch
			res.Messages += msg
			if err != nil {
				return res, wrap(err, "purge challenges")
			}
			if ch < int64(batch) {
				break
			}
		}
	}

	rateSQL, idemSQL := sqlPurgeRateSQLite, sqlPurgeIdemSQLite
	if s.dialect == DialectPostgres {
		rateSQL, idemSQL = sqlPurgeRatePostgres, sqlPurgeIdemPostgres
	}
	for _, job := range []struct {
		what   string
		query  string
		cutoff time.Time
		n      *int64
	}{
		{"messages", sqlPurgeMessages, p.MessagesFinalBefore, &res.Messages},
		{"rate events", rateSQL, p.RateEventsBefore, &res.RateEvents},
		{"idempotency keys", idemSQL, p.IdempotencyBefore, &res.Idempotency},
		{"dev messages", sqlPurgeDevMessages, p.DevMessagesBefore, &res.DevMessages},
	} {
		if job.cutoff.IsZero() {
			continue
		}
		for {
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("sqlstore: purge %s: %w", job.what, err)
			}
			n, err := affected(s.exec(ctx, job.query, ms(job.cutoff), batch))
			*job.n += n
			if err != nil {
				return res, wrap(err, "purge "+job.what)
			}
			if n < int64(batch) {
				break
			}
		}
	}
	return res, nil
}

// purgeChallenges deletes one batch of finished challenges and their messages and attempts.
func (q *queries) purgeChallenges(ctx context.Context, cutoff time.Time, batch int) (challenges, messages int64, err error) {
	rows, err := q.query(ctx, true, sqlPurgeChallengeIDs, ms(cutoff), batch)
	ids, err := scanAll(rows, err, func(sc scanner) (*any, error) {
		var id string
		if err := sc.Scan(&id); err != nil {
			return nil, err
		}
		v := any(id)
		return &v, nil
	})
	if err != nil || len(ids) == 0 {
		return 0, 0, err
	}
	in := placeholders(1, len(ids))
	if _, err := q.execOnce(ctx, `DELETE FROM message_attempts WHERE message_id IN
		(SELECT id FROM messages WHERE challenge_id IN (`+in+`))`, ids...); err != nil {
		return 0, 0, err
	}
	if messages, err = affected(q.execOnce(ctx, `DELETE FROM messages WHERE challenge_id IN (`+in+`)`, ids...)); err != nil {
		return 0, 0, err
	}
	if challenges, err = affected(q.execOnce(ctx, `DELETE FROM challenges WHERE id IN (`+in+`)`, ids...)); err != nil {
		return 0, 0, err
	}
	return challenges, messages, nil
}
