package deliver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
)

// Worker defaults.
const (
	DefaultLease       = 60 * time.Second
	DefaultBatch       = 16
	DefaultMaxAttempts = 5
	DefaultPoll        = 500 * time.Millisecond
	DefaultSendTimeout = 30 * time.Second
)

// finishTimeout bounds recording an attempt. It runs on a context detached from the worker's,
// so a shutdown still records what was sent.
const finishTimeout = 10 * time.Second

// maxErrorLen bounds the error text stored with an attempt.
const maxErrorLen = 200

// Worker delivers the outbox: it claims due messages with a lease, opens each sealed body, hands
// it to a provider of the message's tenant and channel and records the outcome — sent, retry
// later, or failed (which also marks the challenge's delivery failed, or enqueues the message's
// fallback).
//
// Failover: a route has a primary and possibly a secondary provider. The first attempt goes to
// the primary; an attempt that failed is followed by one at the other provider — at once when
// that is the next one down the route, after the backoff when the route starts over. The
// provider of every attempt is recorded before the send (when the Outbox is an
// store.AttemptRecorder) and again with its outcome.
//
// Several workers, in one process or in several sharing one database, may run at once: the
// lease makes sure a message is handed to one worker at a time. A worker that dies holding a
// lease leaves the message to be claimed again when the lease expires; that attempt is in doubt
// (the provider may have accepted it), so the re-send goes to the same provider with the same
// message id (SMTP Message-ID, provider idempotency key): delivery is at least once, never
// silently lost, and a provider that honours the key sends it once.
//
// Zero fields take the defaults documented on them. Set the fields before the first call to
// Run, RunOnce or Notify and do not change them afterwards.
type Worker struct {
	Outbox  store.Outbox
	Keys    *keys.Keyring
	Senders Registry
	// Router picks the providers of a message; nil routes by Senders (one provider per channel).
	Router Router
	// Fallback, when set, records the final failure of a message that has a fallback channel
	// instead of FinishAttempt: it must record res and enqueue the fallback in one transaction
	// (the engine's FinishWithFallback). nil: such messages simply fail.
	Fallback func(ctx context.Context, owner string, res store.AttemptResult, m *store.Message) error
	// AfterSent is called after a send to a provider that reports receipts has been recorded, so
	// receipts that arrived before the record can be applied. nil: not called.
	AfterSent func(ctx context.Context, m *store.Message, provider, providerMessageID string)
	// Clock stamps attempts and schedules retries. Default clock.Real.
	Clock clock.Clock
	// Owner names this worker in leases; unique per process. Default: hostname, pid and a random
	// suffix (DefaultOwner).
	Owner string
	// Lease is how long a claimed message belongs to this worker. It must exceed SendTimeout
	// plus the time to record the attempt; when it does not, SendTimeout is lowered to Lease/2.
	// Default 60s.
	Lease time.Duration
	// Batch bounds the messages in flight (claimed and not yet recorded); Run claims as many as
	// there are free slots, RunOnce up to Batch. Default 16.
	Batch int
	// MaxAttempts bounds the attempts of a message: after that many it fails. A message's own
	// MaxAttempts (set by the engine) applies when it is smaller. Default 5.
	MaxAttempts int
	// Backoff is the wait after failed attempt n (1-based) before the next. Default
	// DefaultBackoff: 2s·2^(n-1), at most 5 minutes.
	Backoff func(attempt int) time.Duration
	// Poll is how often Run looks for due messages when nobody calls Notify. Default 500ms.
	Poll time.Duration
	// SendTimeout bounds one Send. Default 30s.
	SendTimeout time.Duration
	// Logger gets one line per attempt: message id, channel, provider, masked recipient, outcome.
	// Default slog.Default().
	Logger *slog.Logger
	// Metrics counts attempts; nil counts nothing.
	Metrics *Metrics

	once sync.Once
	wake chan struct{}
}

// DefaultBackoff waits 2s·2^(attempt-1) after failed attempt number attempt, capped at 5 minutes:
// 2s, 4s, 8s, 16s, … It has no jitter: workers are few, and retries of different messages are
// spread by when those messages were created.
func DefaultBackoff(attempt int) time.Duration {
	const base, ceiling = 2 * time.Second, 5 * time.Minute
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// DefaultOwner returns hostname/pid/random, unique per process and readable in the database.
func DefaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail on supported platforms
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b[:])
}

func (w *Worker) init() {
	w.once.Do(func() {
		w.wake = make(chan struct{}, 1)
		if w.Clock == nil {
			w.Clock = clock.Real{}
		}
		if w.Owner == "" {
			w.Owner = DefaultOwner()
		}
		if w.Lease <= 0 {
			w.Lease = DefaultLease
		}
		if w.Batch <= 0 {
			w.Batch = DefaultBatch
		}
		if w.MaxAttempts <= 0 {
			w.MaxAttempts = DefaultMaxAttempts
		}
		if w.Backoff == nil {
			w.Backoff = DefaultBackoff
		}
		if w.Poll <= 0 {
			w.Poll = DefaultPoll
		}
		if w.SendTimeout <= 0 {
			w.SendTimeout = DefaultSendTimeout
		}
		if w.Logger == nil {
			w.Logger = slog.Default()
		}
		if w.SendTimeout >= w.Lease {
			w.Logger.Warn("delivery worker: send timeout not below the lease; lowering it",
				"send_timeout", w.SendTimeout, "lease", w.Lease)
			w.SendTimeout = w.Lease / 2
		}
	})
}

// Notify wakes Run to look for due messages now. It never blocks; the engine calls it after
// committing a message.
func (w *Worker) Notify() {
	w.init()
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Run delivers until ctx is done. It keeps up to Batch sends in flight: it claims as many due
// messages as there are free slots whenever notified, every Poll, at once again after a claim
// that filled every free slot, and — while messages may still be due — as soon as a send
// finishes. So a slow provider holds only its own slots, never the messages claimed after its
// own. When ctx ends it stops claiming, lets the sends in flight finish (each bounded by
// SendTimeout), records them, and returns nil.
func (w *Worker) Run(ctx context.Context) error {
	w.init()
	if err := w.check(); err != nil {
		return err
	}
	w.Logger.Info("delivery worker started", "owner", w.Owner, "channels", w.channels(), "max_in_flight", w.Batch)
	p := newPool()
	defer func() {
		p.wg.Wait()
		w.Logger.Info("delivery worker stopped", "owner", w.Owner)
	}()
	failures := 0
	for ctx.Err() == nil {
		wait := w.Poll
		full := true // every free slot was filled: more may be due
		if free := w.Batch - p.inFlight(); free > 0 {
			n, err := w.claimAndStart(ctx, free, p)
			if ctx.Err() != nil {
				return nil
			}
			switch {
			case err != nil:
				failures++
				full = false
				// A database that is down is not helped by being asked twice a second.
				wait = min(w.Poll*time.Duration(1<<min(failures, 6)), time.Minute)
				w.Logger.Error("delivery worker: claim failed", "err", err, "retry_in", wait)
			default:
				failures = 0
				full = n == free
			}
		}
		if full && p.inFlight() < w.Batch {
			continue // slots are free again and more may be due
		}
		var freed <-chan struct{}
		if full {
			freed = p.freed // claim again as soon as a slot frees
		}
		select {
		case <-ctx.Done():
		case <-w.wake:
		case <-freed:
		case <-time.After(wait):
		}
	}
	return nil
}

// RunOnce claims up to Batch due messages, processes them and waits for them, returning how
// many it claimed (for tests and tools; Run keeps sends in flight while it claims more). The
// sends and their recording are not cut short when ctx ends: a claimed message is always
// finished (or, if recording fails, left to its lease).
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	w.init()
	if err := w.check(); err != nil {
		return 0, err
	}
	p := newPool()
	n, err := w.claimAndStart(ctx, w.Batch, p)
	p.wg.Wait()
	return n, err
}

// pool tracks the sends in flight.
type pool struct {
	wg    sync.WaitGroup
	n     atomic.Int64
	freed chan struct{} // a send finished (a pending signal is enough)
}

func newPool() *pool { return &pool{freed: make(chan struct{}, 1)} }

func (p *pool) inFlight() int { return int(p.n.Load()) }

// start runs f as a send in flight.
func (p *pool) start(f func()) {
	p.n.Add(1)
	p.wg.Go(func() {
		defer func() {
			p.n.Add(-1)
			select {
			case p.freed <- struct{}{}:
			default:
			}
		}()
		f()
	})
}

// claimAndStart claims up to limit due messages, records their providers and starts their
// sends in p. ctx ends the claim only: the sends run detached from it.
func (w *Worker) claimAndStart(ctx context.Context, limit int, p *pool) (int, error) {
	msgs, err := w.Outbox.ClaimMessages(ctx, w.Owner, w.Clock.Now(), w.Lease, limit)
	if err != nil {
		return 0, fmt.Errorf("deliver: claim messages: %w", err)
	}
	// Detached: shutdown stops claiming, not the messages already claimed.
	work := context.WithoutCancel(ctx)
	plans := w.plan(work, msgs)
	for i := range plans {
		if d := &plans[i]; !d.skip {
			p.start(func() { w.process(work, d) })
		}
	}
	return len(msgs), nil
}

// delivery is one claimed message and the provider its attempt goes to.
type delivery struct {
	m        *store.Message
	route    []Sender
	idx      int   // index in route of this attempt's provider; -1 when there is none
	routeErr error // why there is no provider
	skip     bool  // the provider choice could not be recorded: leave the message to its lease
}

// plan picks each message's provider and records the choices before anything is sent, so an
// attempt that is interrupted mid-send is known to have gone to that provider.
func (w *Worker) plan(ctx context.Context, msgs []store.Message) []delivery {
	plans := make([]delivery, len(msgs))
	var starts []store.AttemptStart
	for i := range msgs {
		m := &msgs[i]
		d := delivery{m: m, idx: -1}
		d.route, d.routeErr = w.router().Route(ctx, m.TenantID, m.Channel)
		if d.routeErr == nil && len(d.route) == 0 {
			d.routeErr = fmt.Errorf("%w %q", ErrNoSender, m.Channel)
		}
		if d.routeErr == nil {
			d.idx = pickProvider(d.route, m)
			if name := d.route[d.idx].Name(); name != m.Provider {
				starts = append(starts, store.AttemptStart{MessageID: m.ID, Attempt: m.Attempts, Provider: name})
			}
		}
		plans[i] = d
	}
	rec, ok := w.Outbox.(store.AttemptRecorder)
	if !ok || len(starts) == 0 {
		return plans
	}
	ids, err := rec.StartAttempts(ctx, w.Owner, starts)
	recorded := map[string]bool{}
	for _, id := range ids {
		recorded[id] = true
	}
	for _, st := range starts {
		if recorded[st.MessageID] {
			continue
		}
		for i := range plans {
			if plans[i].m.ID == st.MessageID {
				plans[i].skip = true
			}
		}
		w.Logger.Warn("delivery worker: could not record the provider of an attempt; the message waits for its lease",
			"message_id", st.MessageID, "attempt", st.Attempt, "provider", st.Provider, "err", err)
	}
	return plans
}

func (w *Worker) router() Router {
	if w.Router != nil {
		return w.Router
	}
	return w.Senders
}

// pickProvider chooses the index in route of m's current attempt's provider: the primary for a
// first attempt; the provider of the previous attempt again when that attempt was interrupted
// (it is in doubt, and only that provider can tell a repeat by its message id); otherwise the
// provider after the previous one, wrapping around.
func pickProvider(route []Sender, m *store.Message) int {
	prev := -1
	for i, s := range route {
		if s.Name() == m.Provider {
			prev = i
			break
		}
	}
	switch {
	case m.Attempts <= 1 || prev < 0:
		return 0
	case m.LastError == store.AttemptInterrupted:
		return prev
	default:
		return (prev + 1) % len(route)
	}
}

func (w *Worker) check() error {
	if w.Outbox == nil || w.Keys == nil {
		return errors.New("deliver: Worker needs Outbox and Keys")
	}
	return nil
}

func (w *Worker) channels() []string {
	if w.Router != nil {
		return []string{"routed"}
	}
	out := make([]string, 0, len(w.Senders))
	for ch, s := range w.Senders {
		if s != nil {
			out = append(out, ch+"="+s.Name())
		}
	}
	return out
}

// process makes one attempt at d.m and records it.
func (w *Worker) process(ctx context.Context, d *delivery) {
	m := d.m
	var sender Sender
	if d.idx >= 0 {
		sender = d.route[d.idx]
	}
	provider, sendErr := w.attempt(ctx, m, sender, d.routeErr)
	now := w.Clock.Now()

	res := store.AttemptResult{MessageID: m.ID, Attempt: m.Attempts, Now: now, Provider: provider}
	var outcome string
	switch {
	case sendErr.err == nil:
		outcome = OutcomeSent
		res.Status = store.MsgSent
		res.ProviderMessageID = sendErr.providerID
		res.ChallengeDelivery = store.DeliverySent
	case sendErr.permanent || m.Attempts >= w.maxAttempts(m):
		outcome = OutcomeFailed
		res.Status = store.MsgFailed
		res.Error = shortError(sendErr.err)
		res.ChallengeDelivery = store.DeliveryFailed
	default:
		outcome = OutcomeRetry
		res.Status = store.MsgQueued
		res.Error = shortError(sendErr.err)
		res.NextAttemptAt = now.Add(w.Backoff(m.Attempts))
		if d.idx >= 0 && d.idx+1 < len(d.route) {
			res.NextAttemptAt = now // fail over to the next provider at once
		}
	}
	if m.ChallengeID == "" {
		res.ChallengeDelivery = ""
	}
	w.Metrics.Attempt(m.Channel, provider, outcome)

	attrs := []any{"message_id", m.ID, "channel", m.Channel, "provider", provider,
		"to", MaskRecipient(m.Recipient), "attempt", m.Attempts, "outcome", outcome}
	if m.LastError == store.AttemptInterrupted {
		attrs = append(attrs, "repeat_of_interrupted", true)
	}
	switch outcome {
	case OutcomeSent:
		w.Logger.Info("message sent", attrs...)
	case OutcomeRetry:
		w.Logger.Warn("message not sent, will retry", append(attrs, "err", res.Error, "next_attempt_at", res.NextAttemptAt)...)
	default:
		w.Logger.Error("message failed", append(attrs, "err", res.Error, "permanent", sendErr.permanent)...)
	}

	record := func(ctx context.Context) error { return w.Outbox.FinishAttempt(ctx, w.Owner, res) }
	if res.Status == store.MsgFailed && m.FallbackChannel != "" && w.Fallback != nil {
		record = func(ctx context.Context) error { return w.Fallback(ctx, w.Owner, res, m) }
	}
	err := w.finish(ctx, record)
	if err == nil && outcome == OutcomeSent && res.ProviderMessageID != "" && w.AfterSent != nil {
		if rr, ok := sender.(ReceiptReporter); ok && rr.ReportsReceipts() {
			w.AfterSent(ctx, m, provider, res.ProviderMessageID)
		}
	}
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			// Our lease expired and another worker has the message now; its record wins.
			w.Logger.Warn("delivery worker: lease lost before recording the attempt",
				"message_id", m.ID, "attempt", m.Attempts, "outcome", outcome)
			return
		}
		// The lease will expire and the message be tried again: at least once, never lost.
		w.Logger.Error("delivery worker: recording the attempt failed", "message_id", m.ID,
			"attempt", m.Attempts, "outcome", outcome, "err", err)
	}
}

// sendResult is the outcome of one attempt before it is recorded.
type sendResult struct {
	providerID string
	err        error
	permanent  bool
}

// attempt opens m and sends it with sender. It returns the provider's name ("" when there is
// none).
func (w *Worker) attempt(ctx context.Context, m *store.Message, sender Sender, routeErr error) (string, sendResult) {
	fail := func(err error) sendResult { return sendResult{err: err, permanent: true} }
	if len(m.Body) == 0 {
		return "", fail(errors.New("message has no body"))
	}
	plain, err := w.Keys.Open(m.Body, []byte("messages:"+m.ID))
	if err != nil {
		// Retrying cannot make a wrong key right; and the error of Open is not worth storing.
		return "", fail(errors.New("sealed body does not open (unknown key or damaged data)"))
	}
	var c Content
	if err := json.Unmarshal(plain, &c); err != nil {
		return "", fail(errors.New("message body is not valid content"))
	}
	if sender == nil {
		if routeErr != nil && !errors.Is(routeErr, ErrNoSender) {
			// The tenant's providers could not be read: a database hiccup, worth a retry.
			return "", sendResult{err: fmt.Errorf("providers of channel %q not available: %w", m.Channel, routeErr)}
		}
		return "", fail(fmt.Errorf("no provider for channel %q", m.Channel))
	}
	sendCtx, cancel := context.WithTimeout(ctx, w.SendTimeout)
	defer cancel()
	start := time.Now()
	pid, err := sender.Send(sendCtx, Message{ID: m.ID, TenantID: m.TenantID, Channel: m.Channel, To: m.Recipient,
		Sender: m.Sender, Content: c})
	w.Metrics.SendDuration(m.Channel, sender.Name(), time.Since(start))
	if err != nil {
		return sender.Name(), sendResult{err: err, permanent: IsPermanent(err)}
	}
	return sender.Name(), sendResult{providerID: pid}
}

func (w *Worker) maxAttempts(m *store.Message) int {
	if m.MaxAttempts > 0 && m.MaxAttempts < w.MaxAttempts {
		return m.MaxAttempts
	}
	return w.MaxAttempts
}

// finish records an attempt with record, retrying briefly when the database hiccups (not on a
// lost lease).
func (w *Worker) finish(ctx context.Context, record func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, finishTimeout)
	defer cancel()
	var err error
	for try := 0; try < 3; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			}
		}
		err = record(ctx)
		if err == nil || errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return err
}

// shortError makes the stored description of an error: one line, bounded. Senders keep
// secrets and bodies out of their errors (SPEC rule 8); this keeps provider verbosity out too.
func shortError(err error) string {
	if err == nil {
		return ""
	}
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > maxErrorLen {
		cut := maxErrorLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
