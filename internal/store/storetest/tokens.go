package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// testTokens runs the token surfaces' conformance tests (one-time tokens, login sessions,
// revocations, token settings, IAM settings, user OTP slots, purge).
func testTokens(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"OneTimeTokens", testOneTimeTokens},
		{"RedeemRace", func(t *testing.T, s store.Store) { redeemRace(t, s) }},
		{"RedeemRaceTwoInstances", func(t *testing.T, s store.Store) { redeemRace(t, s, sibling(t, s)) }},
		{"LoginSessions", testLoginSessions},
		{"Revocations", testRevocations},
		{"TokenSettings", testTokenSettings},
		{"IAMSettings", testIAMSettings},
		{"UserOTPSlots", testUserOTPSlots},
		{"UserOTPSlotRace", testUserOTPSlotRace},
		{"PurgeTokens", testPurgeTokens},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func tokenHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func newUser(t *testing.T, s store.Store, tenantID, id string) *store.User {
	t.Helper()
	u := user(tenantID, id, id)
	check(t, s.CreateUser(context.Background(), u))
	return u
}

func ott(tenantID, userID, token string, created time.Time) *store.OneTimeToken {
	return &store.OneTimeToken{Hash: tokenHash(token), TenantID: tenantID, UserID: userID,
		ApplicationID: "app-1", Purpose: "user_login", AuditData: `{"ticket":"T-1"}`,
		CreatedAt: created, ExpiresAt: created.Add(30 * time.Second)}
}

func testOneTimeTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	newUser(t, s, tn.ID, "u-1")

	tok := ott(tn.ID, "u-1", "tok-1", t0.Add(250*time.Microsecond))
	check(t, s.CreateOneTimeToken(ctx, tok))
	got, err := s.GetOneTimeToken(ctx, tokenHash("tok-1"))
	check(t, err)
	diff(t, "GetOneTimeToken", tok, got)
	wantErr(t, s.CreateOneTimeToken(ctx, ott(tn.ID, "u-1", "tok-1", t0)), store.ErrAlreadyExists)
	// The user must be one of the tenant's.
	wantErr(t, s.CreateOneTimeToken(ctx, ott(other.ID, "u-1", "tok-x", t0)), store.ErrNotFound)
	_, err = s.GetOneTimeToken(ctx, tokenHash("nope"))
	wantErr(t, err, store.ErrNotFound)

	// Wrong purpose, or another tenant: not redeemed, and still redeemable for its own purpose
	// by its own tenant ("" stands for a caller that holds only the token).
	_, err = s.RedeemOneTimeToken(ctx, tok.Hash, "", "verify", t0.Add(time.Second))
	wantErr(t, err, store.ErrNotFound)
	_, err = s.RedeemOneTimeToken(ctx, tok.Hash, other.ID, "user_login", t0.Add(time.Second))
	wantErr(t, err, store.ErrNotFound)
	at := t0.Add(29 * time.Second)
	red, err := s.RedeemOneTimeToken(ctx, tok.Hash, tn.ID, "user_login", at)
	check(t, err)
	want := *tok
	want.UsedAt = ptr(at)
	diff(t, "redeemed token", &want, red)
	_, err = s.RedeemOneTimeToken(ctx, tok.Hash, "", "user_login", at)
	wantErr(t, err, store.ErrNotFound)
	got, err = s.GetOneTimeToken(ctx, tok.Hash)
	check(t, err)
	diff(t, "token after redemption", &want, got)

	// Expiry is exclusive: at expires_at the token is dead.
	exp := ott(tn.ID, "u-1", "tok-2", t0)
	check(t, s.CreateOneTimeToken(ctx, exp))
	_, err = s.RedeemOneTimeToken(ctx, exp.Hash, "", "user_login", exp.ExpiresAt)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.RedeemOneTimeToken(ctx, tokenHash("unknown"), "", "user_login", t0)
	wantErr(t, err, store.ErrNotFound)
	// Without a tenant the token's own tenant is taken.
	anyTenant := ott(tn.ID, "u-1", "tok-4", t0)
	check(t, s.CreateOneTimeToken(ctx, anyTenant))
	if red, err := s.RedeemOneTimeToken(ctx, anyTenant.Hash, "", "user_login", t0.Add(time.Second)); err != nil || red.TenantID != tn.ID {
		t.Fatalf("redeem without a tenant: %+v %v", red, err)
	}

	// Deleting the user deletes its tokens.
	live := ott(tn.ID, "u-1", "tok-3", t0)
	check(t, s.CreateOneTimeToken(ctx, live))
	check(t, s.DeleteUser(ctx, tn.ID, "u-1"))
	_, err = s.GetOneTimeToken(ctx, live.Hash)
	wantErr(t, err, store.ErrNotFound)
}

// redeemRace: 50 goroutines spread over the stores redeem one token at once: exactly one wins.
func redeemRace(t *testing.T, stores ...store.Store) {
	ctx := context.Background()
	tn := newTenant(t, stores[0], "a")
	newUser(t, stores[0], tn.ID, "u-1")
	for round := range 3 {
		tok := ott(tn.ID, "u-1", fmt.Sprintf("race-%d", round), t0)
		check(t, stores[0].CreateOneTimeToken(ctx, tok))
		var wins atomic.Int32
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range 50 {
			st := stores[i%len(stores)]
			wg.Go(func() {
				<-gate
				err := st.InTx(ctx, func(q store.Queries) error {
					_, err := q.RedeemOneTimeToken(ctx, tok.Hash, tn.ID, "user_login", t0.Add(time.Second))
					return err
				})
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, store.ErrNotFound):
					t.Errorf("redeem %d: %v", i, err)
				}
			})
		}
		close(gate)
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d redemptions succeeded, want exactly 1", round, n)
		}
	}
}

func testLoginSessions(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	newUser(t, s, tn.ID, "u-1")
	ls := &store.LoginSession{Hash: tokenHash("sess-1"), TenantID: tn.ID, UserID: "u-1",
		CreatedAt: t0.Add(100 * time.Microsecond), ExpiresAt: t0.Add(8 * time.Hour)}
	check(t, s.CreateLoginSession(ctx, ls))
	got, err := s.GetLoginSession(ctx, ls.Hash)
	check(t, err)
	diff(t, "GetLoginSession", ls, got)
	wantErr(t, s.CreateLoginSession(ctx, &store.LoginSession{Hash: tokenHash("sess-2"), TenantID: other.ID,
		UserID: "u-1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}), store.ErrNotFound)

	ok, err := s.RevokeLoginSession(ctx, ls.Hash, t0.Add(time.Minute))
	check(t, err)
	if !ok {
		t.Fatal("first revocation changed nothing")
	}
	ok, err = s.RevokeLoginSession(ctx, ls.Hash, t0.Add(2*time.Minute))
	check(t, err)
	if ok {
		t.Error("second revocation changed the row again")
	}
	got, err = s.GetLoginSession(ctx, ls.Hash)
	check(t, err)
	if got.RevokedAt == nil || !got.RevokedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("revoked_at = %v, want the first revocation's time", got.RevokedAt)
	}
	ok, err = s.RevokeLoginSession(ctx, tokenHash("nope"), t0)
	check(t, err)
	if ok {
		t.Error("revoking an unknown session changed a row")
	}
	_, err = s.GetLoginSession(ctx, tokenHash("nope"))
	wantErr(t, err, store.ErrNotFound)
}

// testRevocations: a revocation recorded through one instance is seen by another at once.
func testRevocations(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	revoked, err := s.IsTokenRevoked(ctx, "jti-1")
	check(t, err)
	if revoked {
		t.Fatal("unknown jti reads as revoked")
	}
	r := &store.RevokedToken{JTI: "jti-1", TenantID: tn.ID, ExpiresAt: t0.Add(time.Hour), RevokedAt: t0}
	check(t, s.RevokeToken(ctx, r))
	check(t, s.RevokeToken(ctx, r)) // idempotent
	for _, st := range []store.Store{s, siblingOrSelf(t, s)} {
		revoked, err = st.IsTokenRevoked(ctx, "jti-1")
		check(t, err)
		if !revoked {
			t.Error("revoked jti reads as live")
		}
	}
	revoked, err = s.IsTokenRevoked(ctx, "jti-2")
	check(t, err)
	if revoked {
		t.Error("another jti reads as revoked")
	}
}

// siblingOrSelf is a second instance on s's database when there is one, else s.
func siblingOrSelf(t *testing.T, s store.Store) store.Store {
	if _, ok := dsns.Load(s); ok {
		return sibling(t, s)
	}
	return s
}

func testTokenSettings(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := newTenant(t, s, "a")
	b := newTenant(t, s, "b")
	_, err := s.GetTokenSettings(ctx, a.ID)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetTenantIDByHost(ctx, "login.example.com")
	wantErr(t, err, store.ErrNotFound)

	set := &store.TokenSettings{TenantID: a.ID, RedirectTargets: []string{"https://app.example.com/home"},
		SelfServiceRequireKey: true, SelfServiceHosts: []string{"a.example.com", "login.example.com:8443"},
		UpdatedAt: t0.Add(300 * time.Microsecond)}
	check(t, s.InTx(ctx, func(q store.Queries) error { return q.PutTokenSettings(ctx, set) }))
	got, err := s.GetTokenSettings(ctx, a.ID)
	check(t, err)
	diff(t, "GetTokenSettings", set, got)
	id, err := s.GetTenantIDByHost(ctx, "login.example.com:8443")
	check(t, err)
	if id != a.ID {
		t.Errorf("host maps to %q, want %q", id, a.ID)
	}

	// A host of tenant a cannot be given to b; the failed write leaves b without settings.
	err = s.InTx(ctx, func(q store.Queries) error {
		return q.PutTokenSettings(ctx, &store.TokenSettings{TenantID: b.ID, SelfServiceHosts: []string{"a.example.com"}, UpdatedAt: t0})
	})
	wantErr(t, err, store.ErrAlreadyExists)
	_, err = s.GetTokenSettings(ctx, b.ID)
	wantErr(t, err, store.ErrNotFound)

	// Replacing drops the old hosts; an empty list of targets reads back empty.
	set2 := &store.TokenSettings{TenantID: a.ID, SelfServiceHosts: []string{"b.example.com"}, UpdatedAt: t0.Add(time.Hour)}
	check(t, s.InTx(ctx, func(q store.Queries) error { return q.PutTokenSettings(ctx, set2) }))
	got, err = s.GetTokenSettings(ctx, a.ID)
	check(t, err)
	diff(t, "replaced settings", set2, got)
	_, err = s.GetTenantIDByHost(ctx, "a.example.com")
	wantErr(t, err, store.ErrNotFound)
	check(t, s.InTx(ctx, func(q store.Queries) error {
		return q.PutTokenSettings(ctx, &store.TokenSettings{TenantID: b.ID, SelfServiceHosts: []string{"a.example.com"}, UpdatedAt: t0})
	}))
}

func testIAMSettings(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := newTenant(t, s, "a")
	b := newTenant(t, s, "b")
	check(t, s.CreateApplication(ctx, &store.Application{ID: "app-1", TenantID: a.ID, Name: "crm", CreatedAt: t0}))
	_, err := s.GetIAMSettings(ctx, a.ID, "app-1")
	wantErr(t, err, store.ErrNotFound)
	iam := &store.IAMSettings{TenantID: a.ID, ApplicationID: "app-1", Enabled: true,
		IntrospectionURL: "https://iam.example.com/introspect", ClientID: "otpd", ClientSecret: []byte("sealed"),
		RolePath: "realm_access.roles", AllowedRole: "otp-issuer", UpdatedAt: t0.Add(700 * time.Microsecond)}
	check(t, s.PutIAMSettings(ctx, iam))
	got, err := s.GetIAMSettings(ctx, a.ID, "app-1")
	check(t, err)
	diff(t, "GetIAMSettings", iam, got)

	iam2 := &store.IAMSettings{TenantID: a.ID, ApplicationID: "app-1", Enabled: false, UpdatedAt: t0.Add(time.Hour)}
	check(t, s.PutIAMSettings(ctx, iam2))
	got, err = s.GetIAMSettings(ctx, a.ID, "app-1")
	check(t, err)
	diff(t, "replaced IAM settings", iam2, got)

	// Another tenant sees nothing and cannot write them.
	_, err = s.GetIAMSettings(ctx, b.ID, "app-1")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.PutIAMSettings(ctx, &store.IAMSettings{TenantID: b.ID, ApplicationID: "app-1", UpdatedAt: t0}), store.ErrNotFound)
	wantErr(t, s.DeleteIAMSettings(ctx, b.ID, "app-1"), store.ErrNotFound)
	wantErr(t, s.PutIAMSettings(ctx, &store.IAMSettings{TenantID: a.ID, ApplicationID: "no-app", UpdatedAt: t0}), store.ErrNotFound)

	check(t, s.DeleteIAMSettings(ctx, a.ID, "app-1"))
	wantErr(t, s.DeleteIAMSettings(ctx, a.ID, "app-1"), store.ErrNotFound)
	// They go with their application.
	check(t, s.PutIAMSettings(ctx, iam))
	check(t, s.DeleteApplication(ctx, a.ID, "app-1"))
	_, err = s.GetIAMSettings(ctx, a.ID, "app-1")
	wantErr(t, err, store.ErrNotFound)
}

func testUserOTPSlots(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	newUser(t, s, tn.ID, "u-1")
	claim := func(id, purpose string, expires, now time.Time) bool {
		t.Helper()
		ok, err := s.ClaimUserOTPSlot(ctx, &store.UserOTPSlot{TenantID: tn.ID, UserID: "u-1", Purpose: purpose,
			ChallengeID: id, ExpiresAt: expires}, now)
		check(t, err)
		return ok
	}
	_, err := s.GetUserOTPSlot(ctx, tn.ID, "u-1", "login")
	wantErr(t, err, store.ErrNotFound)

	exp := t0.Add(5*time.Minute + 300*time.Microsecond)
	if !claim("ch-1", "login", exp, t0) {
		t.Fatal("claim of an empty slot refused")
	}
	got, err := s.GetUserOTPSlot(ctx, tn.ID, "u-1", "login")
	check(t, err)
	diff(t, "slot", &store.UserOTPSlot{TenantID: tn.ID, UserID: "u-1", Purpose: "login", ChallengeID: "ch-1",
		ExpiresAt: t0.Add(5 * time.Minute)}, got)
	if claim("ch-2", "login", t0.Add(6*time.Minute), t0.Add(time.Minute)) {
		t.Error("a held slot was taken over")
	}
	if !claim("ch-3", "reset", t0.Add(6*time.Minute), t0.Add(time.Minute)) {
		t.Error("another purpose's slot was refused")
	}
	// Free from its expiry on.
	if !claim("ch-4", "login", t0.Add(10*time.Minute), t0.Add(5*time.Minute)) {
		t.Error("an expired slot was refused")
	}
	// Released only for the session it holds.
	check(t, s.ReleaseUserOTPSlot(ctx, tn.ID, "u-1", "login", "ch-1"))
	if claim("ch-5", "login", t0.Add(11*time.Minute), t0.Add(6*time.Minute)) {
		t.Error("a release for an old session freed the slot")
	}
	check(t, s.ReleaseUserOTPSlot(ctx, tn.ID, "u-1", "login", "ch-4"))
	if !claim("ch-6", "login", t0.Add(11*time.Minute), t0.Add(6*time.Minute)) {
		t.Error("a released slot was refused")
	}
	_, err = s.ClaimUserOTPSlot(ctx, &store.UserOTPSlot{TenantID: tn.ID, UserID: "nobody", Purpose: "login",
		ChallengeID: "x", ExpiresAt: t0.Add(time.Minute)}, t0)
	wantErr(t, err, store.ErrNotFound)
}

// testUserOTPSlotRace: many claims of one free slot at once, each with its own pending session:
// exactly one wins.
func testUserOTPSlotRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	newUser(t, s, tn.ID, "u-1")
	stores := []store.Store{s, siblingOrSelf(t, s)}
	var wins atomic.Int32
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range 20 {
		st := stores[i%2]
		wg.Go(func() {
			<-gate
			won := false
			err := st.InTx(ctx, func(q store.Queries) error {
				c := challenge(tn.ID, fmt.Sprintf("ch-%d", i), t0)
				if err := q.CreateChallenge(ctx, c); err != nil {
					return err
				}
				ok, err := q.ClaimUserOTPSlot(ctx, &store.UserOTPSlot{TenantID: tn.ID, UserID: "u-1", Purpose: "login",
					ChallengeID: c.ID, ExpiresAt: c.ExpiresAt}, t0)
				won = ok
				return err
			})
			if err != nil {
				t.Errorf("claim %d: %v", i, err)
			}
			if won {
				wins.Add(1)
			}
		})
	}
	close(gate)
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Errorf("%d concurrent claims won, want exactly 1", n)
	}
}

func testPurgeTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	newUser(t, s, tn.ID, "u-1")
	for i := range 5 {
		check(t, s.CreateOneTimeToken(ctx, ott(tn.ID, "u-1", fmt.Sprintf("old-%d", i), t0)))
	}
	fresh := ott(tn.ID, "u-1", "fresh", t0.Add(time.Hour))
	check(t, s.CreateOneTimeToken(ctx, fresh))
	check(t, s.CreateLoginSession(ctx, &store.LoginSession{Hash: tokenHash("s-old"), TenantID: tn.ID, UserID: "u-1", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}))
	check(t, s.CreateLoginSession(ctx, &store.LoginSession{Hash: tokenHash("s-new"), TenantID: tn.ID, UserID: "u-1", CreatedAt: t0, ExpiresAt: t0.Add(2 * time.Hour)}))
	check(t, s.RevokeToken(ctx, &store.RevokedToken{JTI: "old", TenantID: tn.ID, ExpiresAt: t0.Add(time.Minute), RevokedAt: t0}))
	check(t, s.RevokeToken(ctx, &store.RevokedToken{JTI: "new", TenantID: tn.ID, ExpiresAt: t0.Add(2 * time.Hour), RevokedAt: t0}))

	n, err := s.PurgeTokens(ctx, store.TokenPurge{Before: t0.Add(time.Hour), Batch: 2})
	check(t, err)
	if n != 7 {
		t.Errorf("purged %d rows, want 7 (5 tokens, 1 session, 1 revocation)", n)
	}
	if _, err := s.GetOneTimeToken(ctx, fresh.Hash); err != nil {
		t.Errorf("live token purged: %v", err)
	}
	if _, err := s.GetOneTimeToken(ctx, tokenHash("old-3")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired token kept: %v", err)
	}
	if _, err := s.GetLoginSession(ctx, tokenHash("s-new")); err != nil {
		t.Errorf("live session purged: %v", err)
	}
	if _, err := s.GetLoginSession(ctx, tokenHash("s-old")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired session kept: %v", err)
	}
	if r, _ := s.IsTokenRevoked(ctx, "new"); !r {
		t.Error("a revocation of a still valid token was purged")
	}
}
