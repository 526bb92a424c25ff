package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/otpd/otpd/internal/store"
)

// t0 is the suite's "now". Times carry sub-millisecond parts on purpose: the store keeps
// milliseconds and must round the caller's struct the same way.
var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// ms is a duration of n milliseconds.
func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// Run runs the conformance suite. newStore must return a fresh, migrated, empty store for t
// (closed when t ends). The multi-instance tests open a second instance on the same database when
// the store came from Open, and are skipped otherwise.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Basics", testBasics},
		{"Tenants", testTenants},
		{"Applications", testApplications},
		{"APIKeys", testAPIKeys},
		{"Users", testUsers},
		{"UsersIsolation", testUsersIsolation},
		{"Challenges", testChallenges},
		{"ChallengeCAS", testChallengeCAS},
		{"ChallengeIsolation", testChallengeIsolation},
		{"ExpireChallenges", testExpireChallenges},
		{"ListChallenges", testListChallenges},
		{"ListChallengesLimits", testListChallengesLimits},
		{"TakeRate", testTakeRate},
		{"TakeRateConcurrent", testTakeRateConcurrent},
		{"Idempotency", testIdempotency},
		{"Outbox", testOutbox},
		{"OutboxClaimOrder", testOutboxClaimOrder},
		{"OutboxConcurrentClaim", testOutboxConcurrentClaim},
		{"DevMessages", testDevMessages},
		{"Audit", testAudit},
		{"Meta", testMeta},
		{"Lookups", testLookups},
		{"SurfaceColumns", testSurfaceColumns},
		{"SigningKeys", testSigningKeys},
		{"Purge", testPurge},
		{"InTxCommit", testInTxCommit},
		{"InTxRollback", testInTxRollback},
		{"InTxPanic", testInTxPanic},
		{"CheckRace", testCheckRace},
		{"CheckRaceTwoInstances", testCheckRaceTwoInstances},
		{"CASWithoutLock", testCASWithoutLock},
		{"Tokens", func(t *testing.T, _ store.Store) { testTokens(t, newStore) }},       // tokens.go
		{"Devices", func(t *testing.T, _ store.Store) { testDevices(t, newStore) }},     // devices.go
		{"Messaging", func(t *testing.T, _ store.Store) { testMessaging(t, newStore) }}, // messaging.go
		{"Providers", func(t *testing.T, _ store.Store) { testProviderSuite(t, newStore) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// Helpers.

var cmpOpts = cmp.Options{cmpopts.EquateEmpty()}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpOpts); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

func ptr[T any](v T) *T { return &v }

func newTenant(t *testing.T, s store.Store, name string) *store.Tenant {
	t.Helper()
	tn := &store.Tenant{ID: "tn-" + name, Name: name, Settings: `{"moderation":false}`, CreatedAt: t0}
	check(t, s.CreateTenant(context.Background(), tn))
	return tn
}

func challenge(tenantID, id string, created time.Time) *store.Challenge {
	return &store.Challenge{
		ID:            id,
		TenantID:      tenantID,
		ApplicationID: "app-1",
		Channel:       "sms",
		Recipient:     "+15550100001",
		Purpose:       "login",
		CodeHash:      []byte{0x01, 0xfe, 0x00, 0x42},
		CodeLength:    6,
		Status:        store.StatusPending,
		MaxAttempts:   5,
		Sends:         1,
		MaxSends:      5,
		LastSentAt:    created,
		TTL:           5 * time.Minute,
		Delivery:      store.DeliveryQueued,
		UserID:        "user-1",
		ClientIP:      "198.51.100.7",
		Metadata:      `{"bsg_id":42}`,
		CreatedAt:     created,
		ExpiresAt:     created.Add(5 * time.Minute),
	}
}

func newChallenge(t *testing.T, q store.Queries, tenantID, id string, created time.Time) *store.Challenge {
	t.Helper()
	c := challenge(tenantID, id, created)
	check(t, q.CreateChallenge(context.Background(), c))
	return c
}

func message(tenantID, id, challengeID string, due time.Time) *store.Message {
	return &store.Message{
		ID:            id,
		TenantID:      tenantID,
		ChallengeID:   challengeID,
		Channel:       "sms",
		Recipient:     "+15550100001",
		Body:          []byte("sealed body"),
		Provider:      "log",
		Status:        store.MsgQueued,
		MaxAttempts:   3,
		NextAttemptAt: due,
		CreatedAt:     due,
		UpdatedAt:     due,
	}
}

func newMessage(t *testing.T, s store.Store, tenantID, id, challengeID string, due time.Time) *store.Message {
	t.Helper()
	m := message(tenantID, id, challengeID, due)
	check(t, s.CreateMessage(context.Background(), m))
	return m
}

// Tests.

func testBasics(t *testing.T, s store.Store) {
	ctx := context.Background()
	check(t, s.Ping(ctx))
	if d := s.Dialect(); d != "sqlite" && d != "postgres" {
		t.Errorf("Dialect() = %q", d)
	}
}

func testTenants(t *testing.T, s store.Store) {
	ctx := context.Background()
	n, err := s.CountTenants(ctx)
	check(t, err)
	if n != 0 {
		t.Fatalf("CountTenants on an empty store = %d", n)
	}
	a := &store.Tenant{ID: "tn-a", Name: "alpha", Settings: `{"x":1}`, CreatedAt: t0.Add(1500 * time.Microsecond)}
	check(t, s.CreateTenant(ctx, a))
	if want := t0.Add(time.Millisecond); !a.CreatedAt.Equal(want) {
		t.Errorf("CreatedAt not rounded to milliseconds: %v", a.CreatedAt)
	}
	b := &store.Tenant{Name: "beta", CreatedAt: t0}
	check(t, s.CreateTenant(ctx, b))
	if b.ID == "" || b.Settings != "{}" {
		t.Errorf("CreateTenant did not fill ID / Settings: %+v", b)
	}

	got, err := s.GetTenant(ctx, "tn-a")
	check(t, err)
	diff(t, "GetTenant", a, got)
	got, err = s.GetTenantByName(ctx, "beta")
	check(t, err)
	diff(t, "GetTenantByName", b, got)

	_, err = s.GetTenant(ctx, "nope")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetTenantByName(ctx, "nope")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.CreateTenant(ctx, &store.Tenant{ID: "tn-a", Name: "other", CreatedAt: t0}), store.ErrAlreadyExists)
	wantErr(t, s.CreateTenant(ctx, &store.Tenant{ID: "tn-c", Name: "alpha", CreatedAt: t0}), store.ErrAlreadyExists)

	list, err := s.ListTenants(ctx)
	check(t, err)
	if len(list) != 2 {
		t.Fatalf("ListTenants = %d tenants, want 2", len(list))
	}
	n, err = s.CountTenants(ctx)
	check(t, err)
	if n != 2 {
		t.Errorf("CountTenants = %d, want 2", n)
	}
}

func testApplications(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	app := &store.Application{ID: "app-1", TenantID: tn.ID, Name: "web", ClientID: "client-1",
		ClientSecretHash: []byte{9, 8, 7}, Settings: `{"iam":{}}`, CreatedAt: t0}
	check(t, s.CreateApplication(ctx, app))
	got, err := s.GetApplication(ctx, tn.ID, "app-1")
	check(t, err)
	diff(t, "GetApplication", app, got)

	_, err = s.GetApplication(ctx, other.ID, "app-1")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetApplication(ctx, tn.ID, "nope")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.CreateApplication(ctx, &store.Application{ID: "app-1", TenantID: tn.ID, Name: "dup", CreatedAt: t0}), store.ErrAlreadyExists)
	// Client ids are unique across tenants; empty ones may repeat.
	wantErr(t, s.CreateApplication(ctx, &store.Application{ID: "app-x", TenantID: other.ID, Name: "x", ClientID: "client-1", CreatedAt: t0}), store.ErrAlreadyExists)
	check(t, s.CreateApplication(ctx, &store.Application{ID: "app-2", TenantID: tn.ID, Name: "cli", CreatedAt: t0}))
	check(t, s.CreateApplication(ctx, &store.Application{ID: "app-3", TenantID: other.ID, Name: "other", CreatedAt: t0}))
	wantErr(t, s.CreateApplication(ctx, &store.Application{ID: "app-4", TenantID: "no-such-tenant", Name: "x", CreatedAt: t0}), store.ErrNotFound)

	list, err := s.ListApplications(ctx, tn.ID)
	check(t, err)
	if ids := appIDs(list); !slices.Equal(ids, []string{"app-1", "app-2"}) {
		t.Errorf("ListApplications = %v", ids)
	}

	// Deleting an application deletes its keys, not other keys.
	check(t, s.CreateAPIKey(ctx, &store.APIKey{ID: "k-app", TenantID: tn.ID, ApplicationID: "app-1", Role: store.RoleApp, SecretHash: []byte{1}, CreatedAt: t0}))
	check(t, s.CreateAPIKey(ctx, &store.APIKey{ID: "k-admin", TenantID: tn.ID, Role: store.RoleAdmin, SecretHash: []byte{2}, CreatedAt: t0}))
	wantErr(t, s.DeleteApplication(ctx, other.ID, "app-1"), store.ErrNotFound)
	check(t, s.DeleteApplication(ctx, tn.ID, "app-1"))
	wantErr(t, s.DeleteApplication(ctx, tn.ID, "app-1"), store.ErrNotFound)
	_, err = s.GetApplication(ctx, tn.ID, "app-1")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetAPIKey(ctx, "k-app")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetAPIKey(ctx, "k-admin")
	check(t, err)
}

func appIDs(as []store.Application) []string {
	var ids []string
	for _, a := range as {
		ids = append(ids, a.ID)
	}
	return ids
}

func testAPIKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	check(t, s.CreateApplication(ctx, &store.Application{ID: "app-1", TenantID: tn.ID, Name: "web", CreatedAt: t0}))

	admin := &store.APIKey{ID: "kid-admin", TenantID: tn.ID, Role: store.RoleAdmin, SecretHash: []byte("h1"), CreatedAt: t0}
	app := &store.APIKey{ID: "kid-app", TenantID: tn.ID, ApplicationID: "app-1", Role: store.RoleApp,
		SecretHash: []byte("h2"), CreatedAt: t0, RevokedAt: ptr(t0.Add(time.Hour + 250*time.Microsecond))}
	check(t, s.CreateAPIKey(ctx, admin))
	check(t, s.CreateAPIKey(ctx, app))
	for _, want := range []*store.APIKey{admin, app} {
		got, err := s.GetAPIKey(ctx, want.ID)
		check(t, err)
		diff(t, "GetAPIKey", want, got)
	}
	_, err := s.GetAPIKey(ctx, "nope")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.CreateAPIKey(ctx, &store.APIKey{ID: "kid-admin", TenantID: tn.ID, Role: store.RoleAdmin, SecretHash: []byte("x"), CreatedAt: t0}), store.ErrAlreadyExists)
	// A key cannot point at another tenant's application.
	wantErr(t, s.CreateAPIKey(ctx, &store.APIKey{ID: "kid-x", TenantID: other.ID, ApplicationID: "app-1", Role: store.RoleApp, SecretHash: []byte("x"), CreatedAt: t0}), store.ErrNotFound)
}

func user(tenantID, id, login string) *store.User {
	return &store.User{ID: id, TenantID: tenantID, Login: login, Email: login + "@example.com",
		Phone: "+15550100002", FirstName: "Ada", LastName: "Lovelace", Language: "en", Enabled: true,
		Role: "user", CreatedAt: t0, UpdatedAt: t0}
}

func testUsers(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	u := user(tn.ID, "u-1", "ada")
	u.ExternalID = "ext-1"
	check(t, s.CreateUser(ctx, u))
	if u.Version != 1 {
		t.Errorf("Version after create = %d, want 1", u.Version)
	}
	got, err := s.GetUser(ctx, tn.ID, "u-1")
	check(t, err)
	diff(t, "GetUser", u, got)

	wantErr(t, s.CreateUser(ctx, user(tn.ID, "u-1", "other")), store.ErrAlreadyExists)
	wantErr(t, s.CreateUser(ctx, user(tn.ID, "u-2", "ada")), store.ErrAlreadyExists)
	dupExt := user(tn.ID, "u-2", "bob")
	dupExt.ExternalID = "ext-1"
	wantErr(t, s.CreateUser(ctx, dupExt), store.ErrAlreadyExists)
	// Empty external ids and logins repeat; the same login in another tenant is fine.
	check(t, s.CreateUser(ctx, user(tn.ID, "u-2", "bob")))
	check(t, s.CreateUser(ctx, user(tn.ID, "u-3", "")))
	check(t, s.CreateUser(ctx, user(tn.ID, "u-4", "")))
	check(t, s.CreateUser(ctx, user(other.ID, "u-9", "ada")))

	// Update: the version moves, a stale version conflicts.
	stale := *got
	got.Email = "ada@lovelace.example"
	got.Enabled = false
	got.UpdatedAt = t0.Add(time.Minute)
	check(t, s.UpdateUser(ctx, got))
	if got.Version != 2 {
		t.Errorf("Version after update = %d, want 2", got.Version)
	}
	again, err := s.GetUser(ctx, tn.ID, "u-1")
	check(t, err)
	diff(t, "user after update", got, again)
	stale.Email = "lost@example.com"
	wantErr(t, s.UpdateUser(ctx, &stale), store.ErrConflict)
	if stale.Version != 1 {
		t.Errorf("a failed update changed Version to %d", stale.Version)
	}
	taken := *again
	taken.Login = "bob"
	wantErr(t, s.UpdateUser(ctx, &taken), store.ErrAlreadyExists)

	// Paging by id.
	page, err := s.ListUsers(ctx, tn.ID, "", 2)
	check(t, err)
	if ids := userIDs(page); !slices.Equal(ids, []string{"u-1", "u-2"}) {
		t.Errorf("ListUsers page 1 = %v", ids)
	}
	page, err = s.ListUsers(ctx, tn.ID, "u-2", 2)
	check(t, err)
	if ids := userIDs(page); !slices.Equal(ids, []string{"u-3", "u-4"}) {
		t.Errorf("ListUsers page 2 = %v", ids)
	}
	page, err = s.ListUsers(ctx, tn.ID, "u-4", 0)
	check(t, err)
	if len(page) != 0 {
		t.Errorf("ListUsers after the last = %v", userIDs(page))
	}

	check(t, s.DeleteUser(ctx, tn.ID, "u-2"))
	_, err = s.GetUser(ctx, tn.ID, "u-2")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.DeleteUser(ctx, tn.ID, "u-2"), store.ErrNotFound)
	gone := user(tn.ID, "u-2", "bob")
	gone.Version = 1
	wantErr(t, s.UpdateUser(ctx, gone), store.ErrNotFound)
}

func userIDs(us []store.User) []string {
	var ids []string
	for _, u := range us {
		ids = append(ids, u.ID)
	}
	return ids
}

func testUsersIsolation(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	u := user(tn.ID, "u-1", "ada")
	check(t, s.CreateUser(ctx, u))

	_, err := s.GetUser(ctx, other.ID, "u-1")
	wantErr(t, err, store.ErrNotFound)
	list, err := s.ListUsers(ctx, other.ID, "", 0)
	check(t, err)
	if len(list) != 0 {
		t.Errorf("other tenant lists %v", userIDs(list))
	}
	foreign := *u
	foreign.TenantID = other.ID
	foreign.Email = "hijack@example.com"
	wantErr(t, s.UpdateUser(ctx, &foreign), store.ErrNotFound)
	wantErr(t, s.DeleteUser(ctx, other.ID, "u-1"), store.ErrNotFound)
	got, err := s.GetUser(ctx, tn.ID, "u-1")
	check(t, err)
	diff(t, "user after foreign attempts", u, got)
}

func testChallenges(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	created := t0.Add(123456789 * time.Nanosecond)
	c := challenge(tn.ID, "ch-1", created)
	c.TTL = 5*time.Minute + 1500*time.Microsecond
	check(t, s.CreateChallenge(ctx, c))
	if c.Version != 1 || !c.CreatedAt.Equal(t0.Add(ms(123))) || c.TTL != 5*time.Minute+ms(1) {
		t.Errorf("CreateChallenge did not normalise: version %d, created %v, ttl %v", c.Version, c.CreatedAt, c.TTL)
	}
	got, err := s.GetChallenge(ctx, tn.ID, "ch-1")
	check(t, err)
	diff(t, "GetChallenge (pending)", c, got)
	if got.FinishedAt != nil {
		t.Errorf("FinishedAt = %v, want nil", got.FinishedAt)
	}

	// Every field survives an update, FinishedAt included.
	got.ApplicationID = "app-2"
	got.Channel = "viber"
	got.Recipient = "+15550100009"
	got.Purpose = "verify"
	got.CodeHash = []byte{7, 7, 7}
	got.CodeLength = 8
	got.Status = store.StatusVerified
	got.Attempts = 2
	got.MaxAttempts = 4
	got.Sends = 3
	got.MaxSends = 6
	got.LastSentAt = t0.Add(time.Minute)
	got.TTL = 10 * time.Minute
	got.Delivery = store.DeliverySent
	got.UserID = "user-2"
	got.ClientIP = "2001:db8::1"
	got.Metadata = `{"moving_factor":1730462400000}`
	got.ExpiresAt = t0.Add(11 * time.Minute)
	got.FinishedAt = ptr(t0.Add(2*time.Minute + 999*time.Microsecond))
	check(t, s.UpdateChallenge(ctx, got))
	if got.Version != 2 {
		t.Errorf("Version after update = %d, want 2", got.Version)
	}
	again, err := s.GetChallenge(ctx, tn.ID, "ch-1")
	check(t, err)
	diff(t, "GetChallenge (finished)", got, again)
	if again.FinishedAt == nil || !again.FinishedAt.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("FinishedAt = %v", again.FinishedAt)
	}
	if !again.CreatedAt.Equal(c.CreatedAt) {
		t.Errorf("update changed CreatedAt")
	}

	// Inside a transaction, GetChallengeForUpdate reads the same row.
	check(t, s.InTx(ctx, func(q store.Queries) error {
		locked, err := q.GetChallengeForUpdate(ctx, tn.ID, "ch-1")
		if err != nil {
			return err
		}
		diff(t, "GetChallengeForUpdate", again, locked)
		_, err = q.GetChallengeForUpdate(ctx, tn.ID, "nope")
		wantErr(t, err, store.ErrNotFound)
		return nil
	}))

	_, err = s.GetChallenge(ctx, tn.ID, "nope")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.CreateChallenge(ctx, challenge(tn.ID, "ch-1", t0)), store.ErrAlreadyExists)
	wantErr(t, s.CreateChallenge(ctx, challenge("no-such-tenant", "ch-2", t0)), store.ErrNotFound)
	// A challenge without a code hash (none yet) reads back as nil.
	bare := challenge(tn.ID, "ch-3", t0)
	bare.CodeHash = nil
	bare.Metadata = ""
	check(t, s.CreateChallenge(ctx, bare))
	got, err = s.GetChallenge(ctx, tn.ID, "ch-3")
	check(t, err)
	if got.CodeHash != nil || got.Metadata != "{}" {
		t.Errorf("bare challenge: code hash %v, metadata %q", got.CodeHash, got.Metadata)
	}
}

func testChallengeCAS(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	newChallenge(t, s, tn.ID, "ch-1", t0)
	a, err := s.GetChallenge(ctx, tn.ID, "ch-1")
	check(t, err)
	b := *a
	a.Attempts = 1
	check(t, s.UpdateChallenge(ctx, a))
	b.Status = store.StatusVerified
	wantErr(t, s.UpdateChallenge(ctx, &b), store.ErrConflict)
	if b.Version != 1 {
		t.Errorf("failed update changed Version to %d", b.Version)
	}
	got, err := s.GetChallenge(ctx, tn.ID, "ch-1")
	check(t, err)
	if got.Status != store.StatusPending || got.Attempts != 1 || got.Version != 2 {
		t.Errorf("after a lost CAS: status %s attempts %d version %d", got.Status, got.Attempts, got.Version)
	}
	missing := challenge(tn.ID, "ch-gone", t0)
	missing.Version = 1
	wantErr(t, s.UpdateChallenge(ctx, missing), store.ErrNotFound)
	wantErr(t, s.SetChallengeOutcome(ctx, missing), store.ErrNotFound)

	// SetChallengeOutcome: the narrow CAS writes status, attempts and finished_at only.
	c, err := s.GetChallenge(ctx, tn.ID, "ch-1")
	check(t, err)
	stale := *c
	done := t0.Add(time.Minute)
	c.Status, c.Attempts, c.FinishedAt = store.StatusVerified, 2, &done
	c.Purpose = "ignored by the narrow update"
	check(t, s.SetChallengeOutcome(ctx, c))
	if c.Version != 3 {
		t.Errorf("version after SetChallengeOutcome: %d, want 3", c.Version)
	}
	stale.Status = store.StatusFailed
	wantErr(t, s.SetChallengeOutcome(ctx, &stale), store.ErrConflict)
	got, err = s.GetChallenge(ctx, tn.ID, "ch-1")
	check(t, err)
	if got.Status != store.StatusVerified || got.Attempts != 2 || got.FinishedAt == nil ||
		!got.FinishedAt.Equal(done) || got.Version != 3 || got.Purpose == c.Purpose {
		t.Errorf("after SetChallengeOutcome: %+v", got)
	}
	foreign := *got
	foreign.TenantID = other(t, s)
	wantErr(t, s.SetChallengeOutcome(ctx, &foreign), store.ErrNotFound)
}

// other creates a second tenant and returns its id.
func other(t *testing.T, s store.Store) string { return newTenant(t, s, "other").ID }

func testChallengeIsolation(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	c := newChallenge(t, s, tn.ID, "ch-1", t0)

	_, err := s.GetChallenge(ctx, other.ID, "ch-1")
	wantErr(t, err, store.ErrNotFound)
	check(t, s.InTx(ctx, func(q store.Queries) error {
		_, err := q.GetChallengeForUpdate(ctx, other.ID, "ch-1")
		wantErr(t, err, store.ErrNotFound)
		return nil
	}))
	foreign := *c
	foreign.TenantID = other.ID
	foreign.Status = store.StatusVerified
	wantErr(t, s.UpdateChallenge(ctx, &foreign), store.ErrNotFound)
	list, err := s.ListChallenges(ctx, other.ID, store.ChallengeFilter{})
	check(t, err)
	if len(list) != 0 {
		t.Errorf("other tenant lists %d challenges", len(list))
	}
	n, err := s.ExpireChallenges(ctx, other.ID, t0.Add(time.Hour))
	check(t, err)
	if n != 0 {
		t.Errorf("ExpireChallenges for another tenant changed %d rows", n)
	}
	got, err := s.GetChallenge(ctx, tn.ID, "ch-1")
	check(t, err)
	diff(t, "challenge after foreign attempts", c, got)
}

func testExpireChallenges(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	now := t0.Add(10 * time.Minute)
	old := newChallenge(t, s, tn.ID, "ch-old", t0)                      // expires t0+5m
	edge := newChallenge(t, s, tn.ID, "ch-edge", t0.Add(5*time.Minute)) // expires exactly now
	fresh := newChallenge(t, s, tn.ID, "ch-fresh", t0.Add(9*time.Minute))
	done := challenge(tn.ID, "ch-done", t0)
	done.Status = store.StatusVerified
	done.FinishedAt = ptr(t0.Add(time.Minute))
	check(t, s.CreateChallenge(ctx, done))
	newChallenge(t, s, other.ID, "ch-other", t0)

	n, err := s.ExpireChallenges(ctx, tn.ID, now)
	check(t, err)
	if n != 2 {
		t.Errorf("ExpireChallenges = %d, want 2", n)
	}
	for _, want := range []*store.Challenge{old, edge} {
		got, err := s.GetChallenge(ctx, tn.ID, want.ID)
		check(t, err)
		if got.Status != store.StatusExpired || got.FinishedAt == nil || !got.FinishedAt.Equal(want.ExpiresAt) || got.Version != 2 {
			t.Errorf("%s: status %s finished %v version %d", want.ID, got.Status, got.FinishedAt, got.Version)
		}
	}
	for _, id := range []string{fresh.ID, done.ID} {
		got, err := s.GetChallenge(ctx, tn.ID, id)
		check(t, err)
		if got.Version != 1 {
			t.Errorf("%s changed (status %s)", id, got.Status)
		}
	}
	got, err := s.GetChallenge(ctx, other.ID, "ch-other")
	check(t, err)
	if got.Status != store.StatusPending {
		t.Errorf("another tenant's challenge expired")
	}
	n, err = s.ExpireChallenges(ctx, tn.ID, now)
	check(t, err)
	if n != 0 {
		t.Errorf("second ExpireChallenges = %d, want 0", n)
	}
}

func testListChallenges(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	// 12 challenges: ids ch-00…ch-11 created a minute apart; recipients alternate between two,
	// channels cycle sms/email/viber, every fourth is verified.
	check(t, s.InTx(ctx, func(q store.Queries) error {
		for i := range 12 {
			c := challenge(tn.ID, fmt.Sprintf("ch-%02d", i), t0.Add(time.Duration(i)*time.Minute))
			c.Recipient = []string{"+15550100001", "ada@example.com"}[i%2]
			c.Channel = []string{"sms", "email", "viber"}[i%3]
			if i%4 == 0 {
				c.Status = store.StatusVerified
				c.FinishedAt = ptr(c.CreatedAt)
			}
			if err := q.CreateChallenge(ctx, c); err != nil {
				return err
			}
		}
		return q.CreateChallenge(ctx, challenge(other.ID, "ch-99", t0))
	}))
	ids := func(f store.ChallengeFilter) []string {
		t.Helper()
		list, err := s.ListChallenges(ctx, tn.ID, f)
		check(t, err)
		var out []string
		for _, c := range list {
			out = append(out, c.ID)
		}
		return out
	}
	seq := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, fmt.Sprintf("ch-%02d", i))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    store.ChallengeFilter
		want []string
	}{
		{"all", store.ChallengeFilter{}, seq(11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)},
		{"status", store.ChallengeFilter{Status: store.StatusVerified}, seq(8, 4, 0)},
		{"recipient", store.ChallengeFilter{Recipient: "ada@example.com"}, seq(11, 9, 7, 5, 3, 1)},
		{"channel", store.ChallengeFilter{Channel: "viber"}, seq(11, 8, 5, 2)},
		{"from", store.ChallengeFilter{From: t0.Add(9 * time.Minute)}, seq(11, 10, 9)},
		{"to", store.ChallengeFilter{To: t0.Add(2 * time.Minute)}, seq(1, 0)},
		{"from-to", store.ChallengeFilter{From: t0.Add(3 * time.Minute), To: t0.Add(6 * time.Minute)}, seq(5, 4, 3)},
		{"after", store.ChallengeFilter{AfterID: "ch-03"}, seq(2, 1, 0)},
		{"limit", store.ChallengeFilter{Limit: 2}, seq(11, 10)},
		{"combined", store.ChallengeFilter{Recipient: "+15550100001", Channel: "sms", Status: store.StatusPending}, seq(6)},
		{"no match", store.ChallengeFilter{Recipient: "nobody"}, nil},
		{"injection is a value", store.ChallengeFilter{Recipient: "' OR 1=1 --"}, nil},
	} {
		if got := ids(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}

	// Keyset paging walks every row exactly once.
	var all []string
	f := store.ChallengeFilter{Limit: 5, Recipient: "ada@example.com"}
	for {
		page := ids(f)
		all = append(all, page...)
		if len(page) < f.Limit {
			break
		}
		f.AfterID = page[len(page)-1]
	}
	if want := seq(11, 9, 7, 5, 3, 1); !slices.Equal(all, want) {
		t.Errorf("paged: %v, want %v", all, want)
	}
	// Rows round-trip through the list too.
	list, err := s.ListChallenges(ctx, tn.ID, store.ChallengeFilter{Limit: 1})
	check(t, err)
	got, err := s.GetChallenge(ctx, tn.ID, "ch-11")
	check(t, err)
	diff(t, "listed challenge", []store.Challenge{*got}, list)
}

func testListChallengesLimits(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	check(t, s.InTx(ctx, func(q store.Queries) error {
		for i := range 510 {
			if err := q.CreateChallenge(ctx, challenge(tn.ID, fmt.Sprintf("ch-%04d", i), t0)); err != nil {
				return err
			}
		}
		return nil
	}))
	for _, tc := range []struct{ limit, want int }{{0, 50}, {-1, 50}, {7, 7}, {500, 500}, {10000, 500}} {
		list, err := s.ListChallenges(ctx, tn.ID, store.ChallengeFilter{Limit: tc.limit})
		check(t, err)
		if len(list) != tc.want {
			t.Errorf("Limit %d: %d rows, want %d", tc.limit, len(list), tc.want)
		}
	}
}

func testTakeRate(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	l := store.RateLimit{Scope: "recipient", Key: "+15550100001", Limit: 3, Window: time.Minute}
	take := func(tenantID string, l store.RateLimit, at time.Duration) (bool, time.Duration) {
		t.Helper()
		ok, retry, err := s.TakeRate(ctx, tenantID, l, t0.Add(at))
		check(t, err)
		return ok, retry
	}
	for i, at := range []time.Duration{0, 10 * time.Second, 20 * time.Second} {
		if ok, _ := take(tn.ID, l, at); !ok {
			t.Fatalf("take %d refused", i+1)
		}
	}
	if ok, retry := take(tn.ID, l, 30*time.Second); ok || retry != 30*time.Second {
		t.Errorf("over the limit: ok %v retry %v, want false 30s", ok, retry)
	}
	// A refused take records nothing; the window is (now-1m, now].
	if ok, retry := take(tn.ID, l, 59999*time.Millisecond); ok || retry != time.Millisecond {
		t.Errorf("1ms before the first event leaves: ok %v retry %v, want false 1ms", ok, retry)
	}
	if ok, _ := take(tn.ID, l, time.Minute); !ok {
		t.Errorf("the window did not slide past the first event")
	}
	if ok, retry := take(tn.ID, l, 61*time.Second); ok || retry != 9*time.Second {
		t.Errorf("after sliding: ok %v retry %v, want false 9s", ok, retry)
	}
	// With a lower limit, one more fits when enough events have left: 3 counted (10s, 20s, 60s),
	// limit 1 → the third oldest must leave, at 60s+1m.
	low := l
	low.Limit = 1
	if ok, retry := take(tn.ID, low, 61*time.Second); ok || retry != 59*time.Second {
		t.Errorf("lowered limit: ok %v retry %v, want false 59s", ok, retry)
	}
	// Keys, scopes and tenants are independent.
	for _, alt := range []struct {
		tenant string
		l      store.RateLimit
	}{
		{tn.ID, store.RateLimit{Scope: "recipient", Key: "+15550100002", Limit: 3, Window: time.Minute}},
		{tn.ID, store.RateLimit{Scope: "ip", Key: "+15550100001", Limit: 3, Window: time.Minute}},
		{other.ID, l},
	} {
		if ok, _ := take(alt.tenant, alt.l, 61*time.Second); !ok {
			t.Errorf("%s/%s/%s shares a budget", alt.tenant, alt.l.Scope, alt.l.Key)
		}
	}
	// An event stamped a moment after now (another instance read its clock later, then took the
	// lock first) counts: otherwise two instances could each let one more through.
	ahead := store.RateLimit{Scope: "prefix", Key: "+61401629", Limit: 1, Window: time.Hour}
	if ok, _ := take(tn.ID, ahead, 5*time.Millisecond); !ok {
		t.Fatalf("first take of the prefix refused")
	}
	if ok, retry := take(tn.ID, ahead, 0); ok || retry != time.Hour+5*time.Millisecond {
		t.Errorf("an event stamped after now does not count: ok %v retry %v", ok, retry)
	}
	// A zero limit refuses everything.
	if ok, retry := take(tn.ID, store.RateLimit{Scope: "tenant", Key: "x", Limit: 0, Window: time.Hour}, 0); ok || retry != time.Hour {
		t.Errorf("limit 0: ok %v retry %v", ok, retry)
	}
	// Inside a transaction the event commits with it, or not at all.
	one := store.RateLimit{Scope: "application", Key: "app-1", Limit: 1, Window: time.Hour}
	boom := errors.New("boom")
	err := s.InTx(ctx, func(q store.Queries) error {
		ok, _, err := q.TakeRate(ctx, tn.ID, one, t0)
		if err != nil || !ok {
			t.Errorf("take in tx: %v %v", ok, err)
		}
		return boom
	})
	wantErr(t, err, boom)
	if ok, _ := take(tn.ID, one, 0); !ok {
		t.Errorf("a rolled-back event still counts")
	}
	if ok, retry := take(tn.ID, one, time.Second); ok || retry != time.Hour-time.Second {
		t.Errorf("after the committed take: ok %v retry %v", ok, retry)
	}
}

func testTakeRateConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	s2 := sibling(t, s)
	tn := newTenant(t, s, "a")
	l := store.RateLimit{Scope: "recipient", Key: "+15550100001", Limit: 5, Window: time.Hour}
	var okCount atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 20 {
		st := []store.Store{s, s2}[i%2]
		wg.Go(func() {
			<-start
			var ok bool
			var err error
			if i%4 < 2 {
				ok, _, err = st.TakeRate(ctx, tn.ID, l, t0)
			} else {
				err = st.InTx(ctx, func(q store.Queries) error {
					ok, _, err = q.TakeRate(ctx, tn.ID, l, t0)
					return err
				})
			}
			if err != nil {
				t.Errorf("take %d: %v", i, err)
			}
			if ok {
				okCount.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := okCount.Load(); n != 5 {
		t.Errorf("%d of 20 racing takes succeeded, want exactly 5", n)
	}
}

func testIdempotency(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	r := &store.Idempotency{TenantID: tn.ID, Key: "key-1", Fingerprint: []byte("fp-1"), ResourceID: "ch-1", CreatedAt: t0}
	got, err := s.PutIdempotency(ctx, r)
	check(t, err)
	diff(t, "PutIdempotency (new)", r, got)

	again := &store.Idempotency{TenantID: tn.ID, Key: "key-1", Fingerprint: []byte("fp-2"), ResourceID: "ch-2", CreatedAt: t0.Add(time.Minute)}
	got, err = s.PutIdempotency(ctx, again)
	wantErr(t, err, store.ErrAlreadyExists)
	diff(t, "PutIdempotency (taken) returns the stored record", r, got)

	_, err = s.PutIdempotency(ctx, &store.Idempotency{TenantID: other.ID, Key: "key-1", Fingerprint: []byte("fp-3"), ResourceID: "ch-3", CreatedAt: t0})
	check(t, err)

	// A taken key inside a transaction leaves the transaction usable (PostgreSQL aborts a
	// transaction on a failed statement).
	check(t, s.InTx(ctx, func(q store.Queries) error {
		got, err := q.PutIdempotency(ctx, again)
		wantErr(t, err, store.ErrAlreadyExists)
		diff(t, "PutIdempotency in tx", r, got)
		return q.CreateAuditEvent(ctx, &store.AuditEvent{TenantID: tn.ID, At: t0, Action: "after"})
	}))
}

func testOutbox(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	ch := newChallenge(t, s, tn.ID, "ch-1", t0)
	m := newMessage(t, s, tn.ID, "m-1", ch.ID, t0)
	newMessage(t, s, tn.ID, "m-later", ch.ID, t0.Add(time.Hour))

	got, err := s.GetMessage(ctx, tn.ID, "m-1")
	check(t, err)
	diff(t, "GetMessage", m, got)
	_, err = s.GetMessage(ctx, other.ID, "m-1")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.CreateMessage(ctx, message(tn.ID, "m-1", ch.ID, t0)), store.ErrAlreadyExists)
	wantErr(t, s.CreateMessage(ctx, message(other.ID, "m-x", ch.ID, t0)), store.ErrNotFound) // another tenant's challenge
	list, err := s.ListMessagesByChallenge(ctx, tn.ID, ch.ID)
	check(t, err)
	if len(list) != 2 || list[0].ID != "m-1" {
		t.Errorf("ListMessagesByChallenge = %d messages", len(list))
	}
	list, err = s.ListMessagesByChallenge(ctx, other.ID, ch.ID)
	check(t, err)
	if len(list) != 0 {
		t.Errorf("another tenant lists %d messages", len(list))
	}

	claim := func(owner string, at time.Duration) []store.Message {
		t.Helper()
		ms, err := s.ClaimMessages(ctx, owner, t0.Add(at), 30*time.Second, 10)
		check(t, err)
		return ms
	}
	// w1 leases m-1 (m-later is not due).
	claimed := claim("w1", 0)
	want := *m
	want.Status = store.MsgSending
	want.Attempts = 1
	want.LeaseOwner = "w1"
	want.LeaseUntil = ptr(t0.Add(30 * time.Second))
	want.NextAttemptAt = t0.Add(30 * time.Second)
	want.UpdatedAt = t0
	diff(t, "claimed", []store.Message{want}, claimed)
	if got := claim("w2", time.Second); len(got) != 0 {
		t.Fatalf("a leased message was claimed again: %v", got)
	}
	attempts, err := s.ListAttempts(ctx, "m-1")
	check(t, err)
	diff(t, "attempts after claim", []store.MessageAttempt{{MessageID: "m-1", Attempt: 1, Provider: "log", StartedAt: t0, Outcome: "started"}}, attempts)

	// The lease runs out (w1 died); w2 takes over and w1 can no longer finish.
	claimed = claim("w2", 31*time.Second)
	if len(claimed) != 1 || claimed[0].Attempts != 2 || claimed[0].LeaseOwner != "w2" {
		t.Fatalf("reclaim after lease expiry = %+v", claimed)
	}
	wantErr(t, s.FinishAttempt(ctx, "w1", store.AttemptResult{MessageID: "m-1", Attempt: 1, Now: t0.Add(32 * time.Second), Status: store.MsgSent}), store.ErrConflict)
	wantErr(t, s.FinishAttempt(ctx, "w2", store.AttemptResult{MessageID: "m-1", Attempt: 1, Now: t0.Add(32 * time.Second), Status: store.MsgSent}), store.ErrConflict)

	// w2 fails softly: back to queued for a retry, body kept.
	check(t, s.FinishAttempt(ctx, "w2", store.AttemptResult{MessageID: "m-1", Attempt: 2, Now: t0.Add(32 * time.Second),
		Status: store.MsgQueued, NextAttemptAt: t0.Add(time.Minute), Error: "provider timeout"}))
	got, err = s.GetMessage(ctx, tn.ID, "m-1")
	check(t, err)
	if got.Status != store.MsgQueued || got.LeaseOwner != "" || got.LeaseUntil != nil || string(got.Body) != "sealed body" ||
		got.LastError != "provider timeout" || !got.NextAttemptAt.Equal(t0.Add(time.Minute)) || got.SentAt != nil || got.Attempts != 2 {
		t.Errorf("after a retryable failure: %+v", got)
	}
	if got := claim("w3", 40*time.Second); len(got) != 0 {
		t.Errorf("claimed before its next attempt time: %v", got)
	}

	// w3 sends it: body wiped, sent_at set, challenge delivery updated.
	claimed = claim("w3", time.Minute)
	if len(claimed) != 1 || claimed[0].Attempts != 3 {
		t.Fatalf("third claim = %+v", claimed)
	}
	check(t, s.FinishAttempt(ctx, "w3", store.AttemptResult{MessageID: "m-1", Attempt: 3, Now: t0.Add(61 * time.Second),
		Status: store.MsgSent, ProviderMessageID: "prov-123", ChallengeDelivery: store.DeliverySent}))
	got, err = s.GetMessage(ctx, tn.ID, "m-1")
	check(t, err)
	want = *m
	want.Body = nil
	want.Status = store.MsgSent
	want.Attempts = 3
	want.NextAttemptAt = t0.Add(61 * time.Second)
	want.ProviderMessageID = "prov-123"
	want.UpdatedAt = t0.Add(61 * time.Second)
	want.SentAt = ptr(t0.Add(61 * time.Second))
	diff(t, "sent message", &want, got)
	if got.Body != nil {
		t.Errorf("final message keeps its body")
	}
	attempts, err = s.ListAttempts(ctx, "m-1")
	check(t, err)
	diff(t, "attempts", []store.MessageAttempt{
		{MessageID: "m-1", Attempt: 1, Provider: "log", StartedAt: t0, Outcome: "started"},
		{MessageID: "m-1", Attempt: 2, Provider: "log", StartedAt: t0.Add(31 * time.Second), FinishedAt: ptr(t0.Add(32 * time.Second)), Outcome: "error", Error: "provider timeout"},
		{MessageID: "m-1", Attempt: 3, Provider: "log", StartedAt: t0.Add(time.Minute), FinishedAt: ptr(t0.Add(61 * time.Second)), Outcome: "ok"},
	}, attempts)
	c, err := s.GetChallenge(ctx, tn.ID, ch.ID)
	check(t, err)
	if c.Delivery != store.DeliverySent || c.Version != 2 {
		t.Errorf("challenge delivery %q version %d, want sent 2", c.Delivery, c.Version)
	}
	// Finished: nothing more to finish.
	wantErr(t, s.FinishAttempt(ctx, "w3", store.AttemptResult{MessageID: "m-1", Attempt: 3, Now: t0.Add(62 * time.Second), Status: store.MsgDelivered}), store.ErrConflict)
	wantErr(t, s.FinishAttempt(ctx, "w3", store.AttemptResult{MessageID: "m-none", Now: t0, Status: store.MsgSent}), store.ErrNotFound)
	if err := s.FinishAttempt(ctx, "w3", store.AttemptResult{MessageID: "m-1", Now: t0, Status: store.MsgSending}); err == nil {
		t.Errorf("FinishAttempt accepted status sending")
	}

	// A hard failure (attempt 0 = the current one) wipes the body and keeps sent_at empty.
	claimed = claim("w4", time.Hour)
	if len(claimed) != 1 || claimed[0].ID != "m-later" {
		t.Fatalf("claim m-later = %+v", claimed)
	}
	check(t, s.FinishAttempt(ctx, "w4", store.AttemptResult{MessageID: "m-later", Now: t0.Add(time.Hour), Status: store.MsgFailed,
		Error: "invalid number", ChallengeDelivery: store.DeliveryFailed}))
	got, err = s.GetMessage(ctx, tn.ID, "m-later")
	check(t, err)
	if got.Status != store.MsgFailed || got.Body != nil || got.SentAt != nil || got.LastError != "invalid number" {
		t.Errorf("failed message: %+v", got)
	}
	c, err = s.GetChallenge(ctx, tn.ID, ch.ID)
	check(t, err)
	if c.Delivery != store.DeliveryFailed {
		t.Errorf("challenge delivery %q, want failed", c.Delivery)
	}
	if got := claim("w5", 24*time.Hour); len(got) != 0 {
		t.Errorf("final messages claimed: %v", got)
	}
}

func testOutboxClaimOrder(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	// A message without a challenge, and five due at different times.
	for i, due := range []int{40, 10, 30, 0, 20} {
		newMessage(t, s, tn.ID, fmt.Sprintf("m-%d", i), "", t0.Add(time.Duration(due)*time.Second))
	}
	claimed, err := s.ClaimMessages(ctx, "w", t0.Add(time.Minute), time.Minute, 2)
	check(t, err)
	var ids []string
	for _, m := range claimed {
		ids = append(ids, m.ID)
		if m.ChallengeID != "" {
			t.Errorf("ChallengeID = %q, want empty", m.ChallengeID)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"m-1", "m-3"}) {
		t.Errorf("claimed %v, want the two due first (m-1, m-3)", ids)
	}
	none, err := s.ClaimMessages(ctx, "w", t0, time.Minute, 0)
	check(t, err)
	if len(none) != 0 {
		t.Errorf("limit 0 claimed %d", len(none))
	}
}

func testOutboxConcurrentClaim(t *testing.T, s store.Store) {
	ctx := context.Background()
	s2 := sibling(t, s)
	tn := newTenant(t, s, "a")
	const total = 60
	check(t, s.InTx(ctx, func(q store.Queries) error {
		for i := range total {
			if err := q.CreateMessage(ctx, message(tn.ID, fmt.Sprintf("m-%02d", i), "", t0.Add(time.Duration(i)*time.Millisecond))); err != nil {
				return err
			}
		}
		return nil
	}))
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range 8 {
		st := []store.Store{s, s2}[w%2]
		owner := fmt.Sprintf("worker-%d", w)
		wg.Go(func() {
			<-start
			for {
				got, err := st.ClaimMessages(ctx, owner, t0.Add(time.Second), time.Minute, 3)
				if err != nil {
					t.Errorf("%s: %v", owner, err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, m := range got {
					if prev, dup := seen[m.ID]; dup {
						t.Errorf("%s claimed by %s and %s", m.ID, prev, owner)
					}
					seen[m.ID] = owner
				}
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if len(seen) != total {
		t.Errorf("%d of %d messages claimed", len(seen), total)
	}
}

func testDevMessages(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	var made []store.DevMessage
	for i := range 4 {
		m := &store.DevMessage{TenantID: tn.ID, Channel: "sms", Recipient: []string{"+15550100001", "ada@example.com"}[i%2],
			Body: []byte(fmt.Sprintf("sealed-%d", i)), CreatedAt: t0.Add(time.Duration(i) * time.Second)}
		check(t, s.CreateDevMessage(ctx, m))
		made = append(made, *m)
	}
	check(t, s.CreateDevMessage(ctx, &store.DevMessage{TenantID: other.ID, Channel: "sms", Recipient: "+15550100001", CreatedAt: t0}))

	all, err := s.ListDevMessages(ctx, tn.ID, "", 0)
	check(t, err)
	diff(t, "ListDevMessages", []store.DevMessage{made[3], made[2], made[1], made[0]}, all)
	to, err := s.ListDevMessages(ctx, tn.ID, "ada@example.com", 0)
	check(t, err)
	diff(t, "ListDevMessages to", []store.DevMessage{made[3], made[1]}, to)
	two, err := s.ListDevMessages(ctx, tn.ID, "", 2)
	check(t, err)
	diff(t, "ListDevMessages limit", []store.DevMessage{made[3], made[2]}, two)
	theirs, err := s.ListDevMessages(ctx, other.ID, "", 0)
	check(t, err)
	if len(theirs) != 1 {
		t.Errorf("other tenant sees %d dev messages", len(theirs))
	}
}

func testAudit(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	var made []store.AuditEvent
	for i := range 3 {
		e := &store.AuditEvent{TenantID: tn.ID, At: t0.Add(time.Duration(i) * time.Second), Actor: "key:kid-1",
			Action: "challenge.verify", Target: fmt.Sprintf("ch-%d", i), Result: "ok", IP: "198.51.100.7", Details: `{"n":1}`}
		check(t, s.CreateAuditEvent(ctx, e))
		made = append(made, *e)
	}
	bare := &store.AuditEvent{TenantID: other.ID, At: t0, Action: "login.failed"}
	check(t, s.CreateAuditEvent(ctx, bare))
	if bare.ID == "" || bare.Details != "{}" {
		t.Errorf("CreateAuditEvent did not fill ID / Details: %+v", bare)
	}
	wantErr(t, s.CreateAuditEvent(ctx, &store.AuditEvent{ID: bare.ID, TenantID: other.ID, At: t0, Action: "dup"}), store.ErrAlreadyExists)

	got, err := s.ListAuditEvents(ctx, tn.ID, 0)
	check(t, err)
	diff(t, "ListAuditEvents", []store.AuditEvent{made[2], made[1], made[0]}, got)
	got, err = s.ListAuditEvents(ctx, tn.ID, 1)
	check(t, err)
	diff(t, "ListAuditEvents limit", []store.AuditEvent{made[2]}, got)
	got, err = s.ListAuditEvents(ctx, other.ID, 0)
	check(t, err)
	diff(t, "other tenant's audit", []store.AuditEvent{*bare}, got)

	// Pages: newest first, continuing after the last event of the previous page; events of one
	// millisecond are told apart by id; the action filter; another tenant's events never show.
	same := &store.AuditEvent{TenantID: tn.ID, At: made[2].At, Actor: "operator", Action: "device.locked", Target: "dev-1", Result: "refused"}
	check(t, s.CreateAuditEvent(ctx, same))
	page := func(f store.AuditFilter) []store.AuditEvent {
		t.Helper()
		got, err := s.PageAuditEvents(ctx, tn.ID, f)
		check(t, err)
		return got
	}
	all := page(store.AuditFilter{})
	if len(all) != 4 || !all[0].At.Equal(made[2].At) || !all[1].At.Equal(made[2].At) || all[0].ID < all[1].ID {
		t.Fatalf("PageAuditEvents: %+v", all)
	}
	var walked []store.AuditEvent
	for f := (store.AuditFilter{Limit: 1}); ; {
		p := page(f)
		if len(p) == 0 {
			break
		}
		walked = append(walked, p...)
		f.BeforeAt, f.BeforeID = p[0].At, p[0].ID
		if len(walked) > len(all) {
			t.Fatalf("paging does not end: %+v", walked)
		}
	}
	diff(t, "PageAuditEvents pages of one", all, walked)
	diff(t, "PageAuditEvents action", []store.AuditEvent{*same}, page(store.AuditFilter{Action: "device.locked"}))
	if got := page(store.AuditFilter{Action: "login.failed"}); len(got) != 0 {
		t.Errorf("another tenant's event on this tenant's page: %+v", got)
	}
}

func testPurge(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	now := t0
	old := now.Add(-48 * time.Hour)
	cutoff := now.Add(-24 * time.Hour)

	finished := func(id string, at time.Time) *store.Challenge {
		c := challenge(tn.ID, id, at.Add(-time.Minute))
		c.Status = store.StatusVerified
		c.FinishedAt = ptr(at)
		check(t, s.CreateChallenge(ctx, c))
		return c
	}
	// Six old finished challenges (one with a sent message and its attempt), one fresh, and one
	// old but still pending (never purged, however old).
	oldCh := finished("ch-old-0", old)
	for i := 1; i < 6; i++ {
		finished(fmt.Sprintf("ch-old-%d", i), old.Add(time.Duration(i)*time.Minute))
	}
	newMessage(t, s, tn.ID, "m-of-old", oldCh.ID, old.Add(-time.Minute))
	claimed, err := s.ClaimMessages(ctx, "w", old.Add(-time.Minute), time.Minute, 1)
	check(t, err)
	if len(claimed) != 1 {
		t.Fatalf("claim: %v", claimed)
	}
	check(t, s.FinishAttempt(ctx, "w", store.AttemptResult{MessageID: "m-of-old", Now: old.Add(-time.Minute), Status: store.MsgSent}))
	finished("ch-fresh", now.Add(-time.Hour))
	pending := challenge(tn.ID, "ch-pending", now.Add(-72*time.Hour))
	check(t, s.CreateChallenge(ctx, pending))

	// Messages without a challenge: old final (purged), old queued and fresh final (kept).
	oldFinal := message(tn.ID, "m-old-final", "", old)
	oldFinal.Status = store.MsgFailed
	oldFinal.Body = nil
	check(t, s.CreateMessage(ctx, oldFinal))
	newMessage(t, s, tn.ID, "m-old-queued", "", old.Add(48*time.Hour)) // due later, created now
	oldQueued := message(tn.ID, "m-old-queued-2", "", old)
	oldQueued.NextAttemptAt = now.Add(time.Hour)
	check(t, s.CreateMessage(ctx, oldQueued))
	freshFinal := message(tn.ID, "m-fresh-final", "", now)
	freshFinal.Status = store.MsgDelivered
	check(t, s.CreateMessage(ctx, freshFinal))

	rl := func(key string) store.RateLimit {
		return store.RateLimit{Scope: "recipient", Key: key, Limit: 10, Window: 72 * time.Hour}
	}
	for _, at := range []time.Time{old, old.Add(time.Second), old.Add(2 * time.Second)} {
		if ok, _, err := s.TakeRate(ctx, tn.ID, rl("a"), at); err != nil || !ok {
			t.Fatalf("take: %v %v", ok, err)
		}
	}
	if ok, _, err := s.TakeRate(ctx, tn.ID, rl("a"), now); err != nil || !ok {
		t.Fatalf("take: %v %v", ok, err)
	}
	for key, at := range map[string]time.Time{"idem-old": old, "idem-new": now} {
		_, err := s.PutIdempotency(ctx, &store.Idempotency{TenantID: tn.ID, Key: key, ResourceID: "x", CreatedAt: at})
		check(t, err)
	}
	for i, at := range []time.Time{old, now} {
		check(t, s.CreateDevMessage(ctx, &store.DevMessage{ID: fmt.Sprintf("dev-%d", i), TenantID: tn.ID, Channel: "sms", Recipient: "r", CreatedAt: at}))
	}

	policy := store.PurgePolicy{
		ChallengesFinishedBefore: cutoff,
		MessagesFinalBefore:      cutoff,
		RateEventsBefore:         cutoff,
		IdempotencyBefore:        cutoff,
		DevMessagesBefore:        cutoff,
		Batch:                    2,
	}
	res, err := s.Purge(ctx, policy)
	check(t, err)
	diff(t, "PurgeResult", store.PurgeResult{Challenges: 6, Messages: 2, RateEvents: 3, Idempotency: 1, DevMessages: 1}, res)

	for _, id := range []string{"ch-old-0", "ch-old-5"} {
		_, err = s.GetChallenge(ctx, tn.ID, id)
		wantErr(t, err, store.ErrNotFound)
	}
	for _, id := range []string{"ch-fresh", "ch-pending"} {
		_, err = s.GetChallenge(ctx, tn.ID, id)
		check(t, err)
	}
	for _, id := range []string{"m-of-old", "m-old-final"} {
		_, err = s.GetMessage(ctx, tn.ID, id)
		wantErr(t, err, store.ErrNotFound)
	}
	for _, id := range []string{"m-old-queued", "m-old-queued-2", "m-fresh-final"} {
		_, err = s.GetMessage(ctx, tn.ID, id)
		check(t, err)
	}
	attempts, err := s.ListAttempts(ctx, "m-of-old")
	check(t, err)
	if len(attempts) != 0 {
		t.Errorf("attempts of a purged message survive: %v", attempts)
	}
	// Only the fresh rate event still counts: 9 more fit in the window.
	l := rl("a")
	l.Limit = 2
	if ok, _, err := s.TakeRate(ctx, tn.ID, l, now); err != nil || !ok {
		t.Errorf("old rate events still count: %v %v", ok, err)
	}
	if _, err := s.PutIdempotency(ctx, &store.Idempotency{TenantID: tn.ID, Key: "idem-old", CreatedAt: now}); err != nil {
		t.Errorf("purged idempotency key still taken: %v", err)
	}
	_, err = s.PutIdempotency(ctx, &store.Idempotency{TenantID: tn.ID, Key: "idem-new", CreatedAt: now})
	wantErr(t, err, store.ErrAlreadyExists)
	devs, err := s.ListDevMessages(ctx, tn.ID, "", 0)
	check(t, err)
	if len(devs) != 1 || devs[0].ID != "dev-1" {
		t.Errorf("dev messages after purge: %v", devs)
	}

	res, err = s.Purge(ctx, policy)
	check(t, err)
	diff(t, "second PurgeResult", store.PurgeResult{}, res)
	// A zero policy deletes nothing.
	res, err = s.Purge(ctx, store.PurgePolicy{})
	check(t, err)
	diff(t, "empty policy", store.PurgeResult{}, res)
}

func testInTxCommit(t *testing.T, s store.Store) {
	ctx := context.Background()
	check(t, s.InTx(ctx, func(q store.Queries) error {
		if err := q.CreateTenant(ctx, &store.Tenant{ID: "tn-a", Name: "a", CreatedAt: t0}); err != nil {
			return err
		}
		_, err := q.GetTenant(ctx, "tn-a") // reads its own writes
		return err
	}))
	_, err := s.GetTenant(ctx, "tn-a")
	check(t, err)
}

// writeEverything writes one row of each kind through q.
func writeEverything(t *testing.T, q store.Queries) {
	ctx := context.Background()
	check(t, q.CreateTenant(ctx, &store.Tenant{ID: "tn-a", Name: "a", CreatedAt: t0}))
	check(t, q.CreateApplication(ctx, &store.Application{ID: "app-1", TenantID: "tn-a", Name: "x", CreatedAt: t0}))
	check(t, q.CreateUser(ctx, user("tn-a", "u-1", "ada")))
	check(t, q.CreateChallenge(ctx, challenge("tn-a", "ch-1", t0)))
	check(t, q.CreateMessage(ctx, message("tn-a", "m-1", "ch-1", t0)))
	if ok, _, err := q.TakeRate(ctx, "tn-a", store.RateLimit{Scope: "s", Key: "k", Limit: 1, Window: time.Hour}, t0); err != nil || !ok {
		t.Fatalf("take: %v %v", ok, err)
	}
	_, err := q.PutIdempotency(ctx, &store.Idempotency{TenantID: "tn-a", Key: "k", CreatedAt: t0})
	check(t, err)
	check(t, q.CreateAuditEvent(ctx, &store.AuditEvent{TenantID: "tn-a", At: t0, Action: "x"}))
	check(t, q.CreateDevMessage(ctx, &store.DevMessage{TenantID: "tn-a", Channel: "sms", Recipient: "r", CreatedAt: t0}))
}

// wantNothingWritten checks that writeEverything left no trace.
func wantNothingWritten(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	n, err := s.CountTenants(ctx)
	check(t, err)
	if n != 0 {
		t.Errorf("%d tenants after rollback", n)
	}
	// Everything can be written again.
	writeEverything(t, s)
}

func testInTxRollback(t *testing.T, s store.Store) {
	boom := errors.New("boom")
	err := s.InTx(context.Background(), func(q store.Queries) error {
		writeEverything(t, q)
		return boom
	})
	if err != boom {
		t.Fatalf("InTx returned %v, want fn's error unchanged", err)
	}
	wantNothingWritten(t, s)
}

func testInTxPanic(t *testing.T, s store.Store) {
	func() {
		defer func() {
			if p := recover(); p != "kaboom" {
				t.Fatalf("recovered %v, want the panic to propagate", p)
			}
		}()
		_ = s.InTx(context.Background(), func(q store.Queries) error {
			writeEverything(t, q)
			panic("kaboom")
		})
	}()
	wantNothingWritten(t, s)
}

// checkRace runs the engine's check path from 50 goroutines spread over stores: in a transaction,
// lock the challenge, move it from pending to verified, compare-and-swap. Exactly one may win.
func checkRace(t *testing.T, stores ...store.Store) {
	ctx := context.Background()
	tn := newTenant(t, stores[0], "a")
	newChallenge(t, stores[0], tn.ID, "ch-1", t0)
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 50 {
		st := stores[i%len(stores)]
		wg.Go(func() {
			<-start
			won := false
			err := st.InTx(ctx, func(q store.Queries) error {
				won = false
				c, err := q.GetChallengeForUpdate(ctx, tn.ID, "ch-1")
				if err != nil {
					return err
				}
				if c.Status != store.StatusPending {
					return nil
				}
				c.Status = store.StatusVerified
				c.Attempts++
				c.FinishedAt = ptr(t0.Add(time.Second))
				if err := q.UpdateChallenge(ctx, c); err != nil {
					return err
				}
				won = true
				return nil
			})
			if err != nil {
				t.Errorf("goroutine %d: %v", i, err)
			}
			if err == nil && won {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Errorf("%d goroutines verified the challenge, want exactly 1", n)
	}
	c, err := stores[0].GetChallenge(ctx, tn.ID, "ch-1")
	check(t, err)
	if c.Status != store.StatusVerified || c.Attempts != 1 || c.Version != 2 {
		t.Errorf("final challenge: status %s attempts %d version %d", c.Status, c.Attempts, c.Version)
	}
}

func testCheckRace(t *testing.T, s store.Store) { checkRace(t, s) }

func testCheckRaceTwoInstances(t *testing.T, s store.Store) { checkRace(t, s, sibling(t, s)) }

// testCASWithoutLock: even without a row lock, of many writers holding the same version exactly
// one update lands; the rest get ErrConflict.
func testCASWithoutLock(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	newChallenge(t, s, tn.ID, "ch-1", t0)
	var reads []*store.Challenge
	for range 20 {
		c, err := s.GetChallenge(ctx, tn.ID, "ch-1")
		check(t, err)
		reads = append(reads, c)
	}
	var ok, conflicts atomic.Int32
	var wg sync.WaitGroup
	for i, c := range reads {
		wg.Go(func() {
			c.Attempts = i + 1
			switch err := s.UpdateChallenge(ctx, c); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrConflict):
				conflicts.Add(1)
			default:
				t.Errorf("update %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || conflicts.Load() != 19 {
		t.Errorf("%d updates landed and %d conflicted, want 1 and 19", ok.Load(), conflicts.Load())
	}
}

func testMeta(t *testing.T, s store.Store) {
	ctx := context.Background()
	got, err := s.PutMetaIfAbsent(ctx, "master_key_id", "aaaa")
	check(t, err)
	if got != "aaaa" {
		t.Fatalf("first put returned %q", got)
	}
	got, err = s.PutMetaIfAbsent(ctx, "master_key_id", "bbbb")
	check(t, err)
	if got != "aaaa" {
		t.Fatalf("second put returned %q, want the first value", got)
	}
	check(t, s.SetMeta(ctx, "master_key_id", "cccc"))
	got, err = s.PutMetaIfAbsent(ctx, "master_key_id", "dddd")
	check(t, err)
	if got != "cccc" {
		t.Fatalf("after SetMeta: %q", got)
	}
	// Concurrent first writers agree on one value.
	var wg sync.WaitGroup
	vals := make([]string, 8)
	for i := range vals {
		wg.Go(func() {
			v, err := s.PutMetaIfAbsent(ctx, "race", fmt.Sprintf("v%d", i))
			if err != nil {
				t.Error(err)
			}
			vals[i] = v
		})
	}
	wg.Wait()
	for _, v := range vals {
		if v != vals[0] {
			t.Fatalf("concurrent first writers disagree: %v", vals)
		}
	}
}

// testLookups: users by login and external id, applications by client id — each isolated by
// tenant where the key is a tenant's, and empty keys never match.
func testLookups(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	u := user(tn.ID, "u-1", "ada")
	u.ExternalID = "ext-1"
	check(t, s.CreateUser(ctx, u))
	blank := user(tn.ID, "u-2", "")
	check(t, s.CreateUser(ctx, blank))
	got, err := s.GetUserByLogin(ctx, tn.ID, "ada")
	check(t, err)
	if got.ID != "u-1" {
		t.Errorf("by login: %s", got.ID)
	}
	got, err = s.GetUserByExternalID(ctx, tn.ID, "ext-1")
	check(t, err)
	if got.ID != "u-1" {
		t.Errorf("by external id: %s", got.ID)
	}
	_, err = s.GetUserByLogin(ctx, other.ID, "ada")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetUserByExternalID(ctx, other.ID, "ext-1")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetUserByLogin(ctx, tn.ID, "")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetUserByExternalID(ctx, tn.ID, "")
	wantErr(t, err, store.ErrNotFound)

	a := &store.Application{ID: "app-1", TenantID: tn.ID, Name: "shop", ClientID: "cl_123", ClientSecretHash: []byte{1}, CreatedAt: t0}
	check(t, s.CreateApplication(ctx, a))
	ga, err := s.GetApplicationByClientID(ctx, "cl_123")
	check(t, err)
	if ga.ID != "app-1" || ga.TenantID != tn.ID {
		t.Errorf("by client id: %+v", ga)
	}
	_, err = s.GetApplicationByClientID(ctx, "cl_nope")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetApplicationByClientID(ctx, "")
	wantErr(t, err, store.ErrNotFound)
}

func testSigningKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i, at := range []time.Time{t0, t0.Add(time.Hour), t0.Add(2 * time.Hour)} {
		check(t, s.CreateSigningKey(ctx, &store.SigningKey{ID: fmt.Sprintf("k%d", i), Algorithm: "ES256",
			PrivateKey: []byte{byte(i)}, CreatedAt: at}))
	}
	wantErr(t, s.CreateSigningKey(ctx, &store.SigningKey{ID: "k0", Algorithm: "ES256", PrivateKey: []byte{9}, CreatedAt: t0}), store.ErrAlreadyExists)
	ks, err := s.ListSigningKeys(ctx, t0.Add(time.Hour))
	check(t, err)
	if len(ks) != 2 || ks[0].ID != "k2" || ks[1].ID != "k1" || !ks[0].CreatedAt.Equal(t0.Add(2*time.Hour)) || ks[0].PrivateKey[0] != 2 {
		t.Fatalf("list: %+v", ks)
	}
	n, err := s.DeleteSigningKeys(ctx, t0.Add(time.Hour))
	check(t, err)
	if n != 1 {
		t.Errorf("deleted %d, want 1", n)
	}
	ks, err = s.ListSigningKeys(ctx, time.Time{})
	check(t, err)
	if len(ks) != 2 {
		t.Errorf("%d keys left, want 2", len(ks))
	}
}

// testSurfaceColumns: a challenge's device and handle, a message's sender, fallback and price
// round-trip; handles are unique per tenant and found by GetChallengeByHandle.
func testSurfaceColumns(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	c := challenge(tn.ID, "ch-h", t0)
	c.DeviceID, c.Handle = "dev-1", "1723562999236"
	check(t, s.CreateChallenge(ctx, c))
	got, err := s.GetChallengeByHandle(ctx, tn.ID, "1723562999236")
	check(t, err)
	if got.ID != "ch-h" || got.DeviceID != "dev-1" || got.Handle != "1723562999236" {
		t.Fatalf("by handle: %+v", got)
	}
	_, err = s.GetChallengeByHandle(ctx, other.ID, "1723562999236")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetChallengeByHandle(ctx, tn.ID, "")
	wantErr(t, err, store.ErrNotFound)
	dup := challenge(tn.ID, "ch-h2", t0)
	dup.Handle = "1723562999236"
	wantErr(t, s.CreateChallenge(ctx, dup), store.ErrAlreadyExists)
	same := challenge(other.ID, "ch-h3", t0)
	same.Handle = "1723562999236"
	check(t, s.CreateChallenge(ctx, same)) // another tenant may use the same handle
	got.Handle = "changed"
	check(t, s.UpdateChallenge(ctx, got))
	if g, err := s.GetChallengeByHandle(ctx, tn.ID, "changed"); err != nil || g.ID != "ch-h" {
		t.Fatalf("handle after update: %v %+v", err, g)
	}

	m := &store.Message{ID: "m-s", TenantID: tn.ID, ChallengeID: "ch-h", Channel: "viber", Recipient: "+15550100",
		Body: []byte{1}, Status: store.MsgQueued, MaxAttempts: 3, NextAttemptAt: t0, CreatedAt: t0, UpdatedAt: t0,
		Sender: "testsms", FallbackChannel: "sms", Price: "0.0642918", Currency: "EUR"}
	check(t, s.CreateMessage(ctx, m))
	gm, err := s.GetMessage(ctx, tn.ID, "m-s")
	check(t, err)
	if gm.Sender != "testsms" || gm.FallbackChannel != "sms" || gm.Price != "0.0642918" || gm.Currency != "EUR" {
		t.Fatalf("message fields: %+v", gm)
	}
}
