package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// testProviderSuite runs the conformance tests of providers.go: tenants' delivery providers and
// their slots, receipts, and the outbox additions failover and fallback rely on.
func testProviderSuite(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CRUD", testProvidersCRUD},
		{"Slots", testProviderSlots},
		{"SlotRace", testProviderSlotRace},
		{"Receipts", testProviderReceipts},
		{"ParkedReceipts", testParkedReceipts},
		{"AttemptProviders", testAttemptProviders},
		{"FallbackBody", testFallbackBody},
		{"FinishAttemptTx", testFinishAttemptTx},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func provider(tenantID, id, name, role string, channels ...string) *store.Provider {
	return &store.Provider{
		ID: id, TenantID: tenantID, Name: name, Type: "http", Channels: channels, Role: role,
		Settings: `{"url":"https://sms.example/send"}`, Secrets: []byte{0x01, 0x02, 0x03},
		Enabled: true, CreatedAt: t0.Add(1500 * time.Microsecond), UpdatedAt: t0.Add(1500 * time.Microsecond),
	}
}

func testProvidersCRUD(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")

	p := provider(tn.ID, "pr-1", "gateway", store.RolePrimary, "sms", "viber")
	check(t, s.CreateProvider(ctx, p))
	if p.Version != 1 || !p.CreatedAt.Equal(t0.Add(time.Millisecond)) {
		t.Errorf("after create: version %d created %v", p.Version, p.CreatedAt)
	}
	got, err := s.GetProvider(ctx, tn.ID, "pr-1")
	check(t, err)
	diff(t, "GetProvider", p, got)
	got, err = s.LookupProvider(ctx, "pr-1")
	check(t, err)
	diff(t, "LookupProvider", p, got)
	_, err = s.GetProvider(ctx, other.ID, "pr-1")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.LookupProvider(ctx, "nope")
	wantErr(t, err, store.ErrNotFound)

	// Names are unique per tenant; another tenant may reuse one.
	wantErr(t, s.CreateProvider(ctx, provider(tn.ID, "pr-2", "gateway", store.RoleSecondary, "voice")), store.ErrAlreadyExists)
	check(t, s.CreateProvider(ctx, provider(other.ID, "pr-3", "gateway", store.RolePrimary, "sms")))
	// An empty id gets one; no secrets is a nil blob.
	bare := provider(tn.ID, "", "bare", store.RoleSecondary, "sms")
	bare.Secrets, bare.Settings = nil, ""
	check(t, s.CreateProvider(ctx, bare))
	if bare.ID == "" || bare.Settings != "{}" {
		t.Errorf("bare provider: %+v", bare)
	}
	got, err = s.GetProvider(ctx, tn.ID, bare.ID)
	check(t, err)
	if got.Secrets != nil {
		t.Errorf("secrets of a provider without any: %v", got.Secrets)
	}
	// Bad rows never reach the database.
	for _, bad := range []*store.Provider{
		provider(tn.ID, "x1", "x1", "tertiary", "sms"),
		provider(tn.ID, "x2", "x2", store.RolePrimary, "sms,viber"),
		provider(tn.ID, "x3", "", store.RolePrimary, "sms"),
	} {
		if err := s.CreateProvider(ctx, bad); err == nil {
			t.Errorf("created %+v", bad)
		}
	}

	list, err := s.ListProviders(ctx, tn.ID)
	check(t, err)
	if len(list) != 2 || list[0].Name != "bare" || list[1].Name != "gateway" {
		t.Errorf("ListProviders = %+v", list)
	}

	// Update with the current version; a stale version conflicts.
	got, err = s.GetProvider(ctx, tn.ID, "pr-1")
	check(t, err)
	stale := *got
	got.Name, got.Enabled, got.Secrets, got.Settings = "renamed", false, []byte{9}, `{"url":"https://b.example"}`
	got.UpdatedAt = t0.Add(time.Minute)
	check(t, s.UpdateProvider(ctx, got))
	if got.Version != 2 {
		t.Errorf("version after update = %d", got.Version)
	}
	again, err := s.GetProvider(ctx, tn.ID, "pr-1")
	check(t, err)
	diff(t, "after update", got, again)
	wantErr(t, s.UpdateProvider(ctx, &stale), store.ErrConflict)
	missing := *got
	missing.ID = "gone"
	wantErr(t, s.UpdateProvider(ctx, &missing), store.ErrNotFound)
	foreign := *got
	foreign.TenantID = other.ID
	wantErr(t, s.UpdateProvider(ctx, &foreign), store.ErrNotFound)

	wantErr(t, s.DeleteProvider(ctx, other.ID, "pr-1"), store.ErrNotFound)
	check(t, s.DeleteProvider(ctx, tn.ID, "pr-1"))
	wantErr(t, s.DeleteProvider(ctx, tn.ID, "pr-1"), store.ErrNotFound)
	_, err = s.GetProvider(ctx, tn.ID, "pr-1")
	wantErr(t, err, store.ErrNotFound)
}

func testProviderSlots(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")

	check(t, s.CreateProvider(ctx, provider(tn.ID, "p1", "one", store.RolePrimary, "sms", "viber")))
	// A second primary for sms is refused, atomically: the row is not left behind either.
	wantErr(t, s.CreateProvider(ctx, provider(tn.ID, "p2", "two", store.RolePrimary, "voice", "sms")), store.ErrAlreadyExists)
	_, err := s.GetProvider(ctx, tn.ID, "p2")
	wantErr(t, err, store.ErrNotFound)
	check(t, s.CreateProvider(ctx, provider(tn.ID, "p2", "two", store.RoleSecondary, "sms")))
	wantErr(t, s.CreateProvider(ctx, provider(tn.ID, "p3", "three", store.RoleSecondary, "sms")), store.ErrAlreadyExists)
	check(t, s.CreateProvider(ctx, provider(other.ID, "p4", "four", store.RolePrimary, "sms"))) // slots are per tenant

	// Moving p1 to secondary clashes with p2; a failed update leaves everything as it was.
	p1, err := s.GetProvider(ctx, tn.ID, "p1")
	check(t, err)
	p1.Role = store.RoleSecondary
	wantErr(t, s.UpdateProvider(ctx, p1), store.ErrAlreadyExists)
	p1, err = s.GetProvider(ctx, tn.ID, "p1")
	check(t, err)
	if p1.Role != store.RolePrimary || p1.Version != 1 {
		t.Errorf("after a refused update: %+v", p1)
	}
	// Dropping sms from p1 frees its primary sms slot for p3.
	p1.Channels = []string{"viber"}
	check(t, s.UpdateProvider(ctx, p1))
	check(t, s.CreateProvider(ctx, provider(tn.ID, "p3", "three", store.RolePrimary, "sms")))
	// Deleting frees the slots too.
	check(t, s.DeleteProvider(ctx, tn.ID, "p2"))
	check(t, s.CreateProvider(ctx, provider(tn.ID, "p5", "five", store.RoleSecondary, "sms", "voice")))

	chans, err := s.ProviderChannels(ctx)
	check(t, err)
	if !slices.Equal(chans, []string{"sms", "viber", "voice"}) {
		t.Errorf("ProviderChannels = %v", chans)
	}
}

// Two instances racing for the same slot: exactly one wins.
func testProviderSlotRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	s2 := sibling(t, s)
	tn := newTenant(t, s, "a")
	const n = 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, lost := 0, 0
	start := make(chan struct{})
	for i := range n {
		st := []store.Store{s, s2}[i%2]
		wg.Go(func() {
			<-start
			err := st.CreateProvider(ctx, provider(tn.ID, fmt.Sprintf("p-%d", i), fmt.Sprintf("n-%d", i), store.RolePrimary, "sms"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, store.ErrAlreadyExists):
				lost++
			default:
				t.Errorf("create: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if won != 1 || lost != n-1 {
		t.Errorf("won %d, lost %d; want 1 and %d", won, lost, n-1)
	}
	list, err := s.ListProviders(ctx, tn.ID)
	check(t, err)
	if len(list) != 1 {
		t.Errorf("%d providers stored, want 1", len(list))
	}
}

// sentMessage creates a message, claims it and records it as sent by provider with pmid.
func sentMessage(t *testing.T, s store.Store, tenantID, id, challengeID, provider, pmid string) *store.Message {
	t.Helper()
	ctx := context.Background()
	m := message(tenantID, id, challengeID, t0)
	m.Provider = ""
	check(t, s.CreateMessage(ctx, m))
	claimed, err := s.ClaimMessages(ctx, "w-"+id, t0, time.Minute, 100)
	check(t, err)
	found := false
	for _, c := range claimed {
		found = found || c.ID == id
	}
	if !found {
		t.Fatalf("message %s not claimed", id)
	}
	check(t, s.FinishAttempt(ctx, "w-"+id, store.AttemptResult{MessageID: id, Now: t0.Add(time.Second),
		Status: store.MsgSent, ProviderMessageID: pmid, Provider: provider}))
	got, err := s.GetMessage(ctx, tenantID, id)
	check(t, err)
	return got
}

func testProviderReceipts(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	ch := newChallenge(t, s, tn.ID, "ch-1", t0)
	m := sentMessage(t, s, tn.ID, "m-1", ch.ID, "twilio", "SM123")
	sentMessage(t, s, other.ID, "m-2", "", "twilio", "SM999")
	sentMessage(t, s, tn.ID, "m-3", "", "smsc", "SM123") // another provider, the same id

	got, err := s.FindMessageByProviderID(ctx, tn.ID, "twilio", "SM123")
	check(t, err)
	if got.ID != "m-1" || got.Provider != "twilio" || got.ProviderMessageID != "SM123" {
		t.Errorf("found %+v", got)
	}
	got, err = s.FindMessageByProviderID(ctx, "", "smsc", "SM123") // any tenant
	check(t, err)
	if got.ID != "m-3" {
		t.Errorf("found %s, want m-3", got.ID)
	}
	_, err = s.FindMessageByProviderID(ctx, tn.ID, "twilio", "SM999") // another tenant's
	wantErr(t, err, store.ErrNotFound)
	_, err = s.FindMessageByProviderID(ctx, tn.ID, "twilio", "")
	wantErr(t, err, store.ErrNotFound)
	// Queued messages have no provider id yet and are never found by the empty one.
	newMessage(t, s, tn.ID, "m-q", "", t0.Add(time.Hour))
	_, err = s.FindMessageByProviderID(ctx, "", "log", "")
	wantErr(t, err, store.ErrNotFound)

	// Status moves only from the status the caller saw.
	check(t, s.SetMessageStatus(ctx, tn.ID, "m-1", store.MsgSent, store.MsgAccepted, t0.Add(time.Minute), false))
	wantErr(t, s.SetMessageStatus(ctx, tn.ID, "m-1", store.MsgSent, store.MsgDelivered, t0.Add(time.Minute), true), store.ErrConflict)
	wantErr(t, s.SetMessageStatus(ctx, other.ID, "m-1", store.MsgAccepted, store.MsgDelivered, t0, true), store.ErrNotFound)
	check(t, s.SetMessageStatus(ctx, tn.ID, "m-1", store.MsgAccepted, store.MsgDelivered, t0.Add(2*time.Minute), true))
	got, err = s.GetMessage(ctx, tn.ID, "m-1")
	check(t, err)
	if got.Status != store.MsgDelivered || got.Body != nil || !got.UpdatedAt.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("after receipts: status %q body %v updated %v", got.Status, got.Body, got.UpdatedAt)
	}
	_ = m

	before, err := s.GetChallenge(ctx, tn.ID, ch.ID)
	check(t, err)
	check(t, s.SetChallengeDelivery(ctx, tn.ID, ch.ID, store.DeliveryFailed))
	after, err := s.GetChallenge(ctx, tn.ID, ch.ID)
	check(t, err)
	if after.Delivery != store.DeliveryFailed || after.Version != before.Version+1 {
		t.Errorf("delivery %q version %d (was %d)", after.Delivery, after.Version, before.Version)
	}
	wantErr(t, s.SetChallengeDelivery(ctx, other.ID, ch.ID, store.DeliverySent), store.ErrNotFound)
}

func testParkedReceipts(t *testing.T, s store.Store) {
	ctx := context.Background()
	park := func(pmid, status string, at time.Time) {
		t.Helper()
		check(t, s.ParkReceipt(ctx, &store.ParkedReceipt{Provider: "twilio", ProviderMessageID: pmid,
			TenantID: "tn-x", Status: status, Error: "30003", At: at}))
	}
	park("SM1", store.MsgDelivered, t0.Add(2*time.Second))
	park("SM1", store.MsgAccepted, t0.Add(time.Second))
	park("SM2", store.MsgFailed, t0)

	got, err := s.TakeParkedReceipts(ctx, "twilio", "SM1")
	check(t, err)
	diff(t, "taken", []store.ParkedReceipt{
		{Provider: "twilio", ProviderMessageID: "SM1", TenantID: "tn-x", Status: store.MsgAccepted, Error: "30003", At: t0.Add(time.Second)},
		{Provider: "twilio", ProviderMessageID: "SM1", TenantID: "tn-x", Status: store.MsgDelivered, Error: "30003", At: t0.Add(2 * time.Second)},
	}, got)
	got, err = s.TakeParkedReceipts(ctx, "twilio", "SM1")
	check(t, err)
	if len(got) != 0 {
		t.Errorf("taken twice: %v", got)
	}
	got, err = s.TakeParkedReceipts(ctx, "smsc", "SM2")
	check(t, err)
	if len(got) != 0 {
		t.Errorf("another provider's receipt taken: %v", got)
	}
	// Parking after more than an hour forgets the old ones.
	park("SM3", store.MsgDelivered, t0.Add(61*time.Minute))
	got, err = s.TakeParkedReceipts(ctx, "twilio", "SM2")
	check(t, err)
	if len(got) != 0 {
		t.Errorf("a receipt parked over an hour ago survived: %v", got)
	}
	got, err = s.TakeParkedReceipts(ctx, "twilio", "SM3")
	check(t, err)
	if len(got) != 1 {
		t.Errorf("fresh receipt: %v", got)
	}
}

// The worker records the provider of an attempt before sending (StartAttempts) and when it
// finishes; a message claimed again after its lease ran out says its previous attempt is in doubt.
func testAttemptProviders(t *testing.T, s store.Store) {
	ctx := context.Background()
	rec, ok := s.(store.AttemptRecorder)
	if !ok {
		t.Skip("store does not record attempt providers")
	}
	tn := newTenant(t, s, "a")
	m := message(tn.ID, "m-1", "", t0)
	m.Provider = ""
	check(t, s.CreateMessage(ctx, m))

	claimed, err := s.ClaimMessages(ctx, "w1", t0, time.Minute, 10)
	check(t, err)
	if len(claimed) != 1 || claimed[0].LastError != "" {
		t.Fatalf("first claim: %+v", claimed)
	}
	ids, err := rec.StartAttempts(ctx, "w1", []store.AttemptStart{
		{MessageID: "m-1", Attempt: 1, Provider: "primary-gw"},
		{MessageID: "m-1", Attempt: 2, Provider: "wrong-attempt"},
		{MessageID: "m-none", Attempt: 1, Provider: "x"},
	})
	check(t, err)
	if !slices.Equal(ids, []string{"m-1"}) {
		t.Errorf("recorded %v", ids)
	}
	if ids, err := rec.StartAttempts(ctx, "w2", []store.AttemptStart{{MessageID: "m-1", Attempt: 1, Provider: "thief"}}); err != nil || len(ids) != 0 {
		t.Errorf("another owner recorded %v (%v)", ids, err)
	}
	got, err := s.GetMessage(ctx, tn.ID, "m-1")
	check(t, err)
	if got.Provider != "primary-gw" {
		t.Errorf("provider after start = %q", got.Provider)
	}

	// w1 dies mid-send. w2 claims it again after the lease: the previous attempt is in doubt.
	claimed, err = s.ClaimMessages(ctx, "w2", t0.Add(61*time.Second), time.Minute, 10)
	check(t, err)
	if len(claimed) != 1 || claimed[0].LastError != store.AttemptInterrupted || claimed[0].Provider != "primary-gw" || claimed[0].Attempts != 2 {
		t.Fatalf("reclaim: %+v", claimed)
	}
	// It fails at the provider w2 chose; the attempt row names it.
	check(t, s.FinishAttempt(ctx, "w2", store.AttemptResult{MessageID: "m-1", Attempt: 2, Now: t0.Add(62 * time.Second),
		Status: store.MsgQueued, NextAttemptAt: t0.Add(62 * time.Second), Error: "HTTP 503", Provider: "primary-gw"}))
	claimed, err = s.ClaimMessages(ctx, "w2", t0.Add(63*time.Second), time.Minute, 10)
	check(t, err)
	if len(claimed) != 1 || claimed[0].LastError != "HTTP 503" {
		t.Fatalf("claim after a recorded failure: %+v", claimed)
	}
	check(t, s.FinishAttempt(ctx, "w2", store.AttemptResult{MessageID: "m-1", Attempt: 3, Now: t0.Add(64 * time.Second),
		Status: store.MsgSent, ProviderMessageID: "abc", Provider: "secondary-gw"}))
	got, err = s.GetMessage(ctx, tn.ID, "m-1")
	check(t, err)
	if got.Provider != "secondary-gw" || got.Status != store.MsgSent || got.LastError != "" {
		t.Errorf("after failover: %+v", got)
	}
	as, err := s.ListAttempts(ctx, "m-1")
	check(t, err)
	var provs []string
	for _, a := range as {
		provs = append(provs, a.Provider+":"+a.Outcome)
	}
	if want := []string{"primary-gw:started", "primary-gw:error", "secondary-gw:ok"}; !slices.Equal(provs, want) {
		t.Errorf("attempts = %v, want %v", provs, want)
	}
}

// A message with a fallback channel keeps its sealed body while a receipt may still trigger the
// fallback; other final states wipe it as always.
func testFallbackBody(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	for i, tc := range []struct {
		fallback, status string
		keep             bool
	}{
		{"sms", store.MsgSent, true},
		{"sms", store.MsgAccepted, true},
		{"sms", store.MsgFailed, false},
		{"sms", store.MsgDelivered, false},
		{"", store.MsgSent, false},
	} {
		id := fmt.Sprintf("m-%d", i)
		m := message(tn.ID, id, "", t0)
		m.Channel, m.FallbackChannel, m.FallbackSender = "viber", tc.fallback, "SMS_SENDER"
		check(t, s.CreateMessage(ctx, m))
		if _, err := s.ClaimMessages(ctx, "w", t0, time.Minute, 1); err != nil {
			t.Fatal(err)
		}
		check(t, s.FinishAttempt(ctx, "w", store.AttemptResult{MessageID: id, Now: t0, Status: tc.status}))
		got, err := s.GetMessage(ctx, tn.ID, id)
		check(t, err)
		if (got.Body != nil) != tc.keep {
			t.Errorf("fallback %q status %s: body kept = %v, want %v", tc.fallback, tc.status, got.Body != nil, tc.keep)
		}
		if got.FallbackSender != "SMS_SENDER" {
			t.Errorf("fallback sender = %q", got.FallbackSender)
		}
	}
}

// FinishAttemptTx records an attempt together with other writes, and rolls back with them.
func testFinishAttemptTx(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	ch := newChallenge(t, s, tn.ID, "ch-1", t0)
	newMessage(t, s, tn.ID, "m-1", ch.ID, t0)
	if _, err := s.ClaimMessages(ctx, "w", t0, time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	failed := store.AttemptResult{MessageID: "m-1", Now: t0, Status: store.MsgFailed, Error: "undeliverable",
		ChallengeDelivery: store.DeliveryQueued, Provider: "viber-gw"}
	boom := errors.New("boom")
	err := s.InTx(ctx, func(q store.Queries) error {
		if err := q.FinishAttemptTx(ctx, "w", failed); err != nil {
			return err
		}
		if err := q.CreateMessage(ctx, message(tn.ID, "m-fallback", ch.ID, t0)); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, err, boom)
	got, err := s.GetMessage(ctx, tn.ID, "m-1")
	check(t, err)
	if got.Status != store.MsgSending {
		t.Fatalf("rolled back finish left status %q", got.Status)
	}
	check(t, s.InTx(ctx, func(q store.Queries) error {
		if err := q.FinishAttemptTx(ctx, "w", failed); err != nil {
			return err
		}
		return q.CreateMessage(ctx, message(tn.ID, "m-fallback", ch.ID, t0))
	}))
	got, err = s.GetMessage(ctx, tn.ID, "m-1")
	check(t, err)
	if got.Status != store.MsgFailed || got.Provider != "viber-gw" || got.Body != nil {
		t.Errorf("failed original: %+v", got)
	}
	if _, err := s.GetMessage(ctx, tn.ID, "m-fallback"); err != nil {
		t.Errorf("fallback message: %v", err)
	}
	c, err := s.GetChallenge(ctx, tn.ID, ch.ID)
	check(t, err)
	if c.Delivery != store.DeliveryQueued {
		t.Errorf("challenge delivery = %q", c.Delivery)
	}
	wantErr(t, s.InTx(ctx, func(q store.Queries) error { return q.FinishAttemptTx(ctx, "w", failed) }), store.ErrConflict)
	if err := s.InTx(ctx, func(q store.Queries) error {
		return q.FinishAttemptTx(ctx, "w", store.AttemptResult{MessageID: "m-1", Status: store.MsgSending})
	}); err == nil {
		t.Error("FinishAttemptTx accepted status sending")
	}
}
