package engine_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/storetest"
)

func (f *fixture) user(t *testing.T, login string, opts ...func(*engine.UserInput)) *store.User {
	t.Helper()
	email := login + "@example.com"
	in := engine.UserInput{Login: &login, Email: &email}
	for _, o := range opts {
		o(&in)
	}
	u, err := f.eng.CreateUser(context.Background(), f.admin, in)
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	return u
}

func (f *fixture) ott(t *testing.T, r engine.OTTRequest) *engine.IssuedOTT {
	t.Helper()
	tok, err := f.eng.IssueOneTimeToken(context.Background(), f.admin, r)
	if err != nil {
		t.Fatalf("issue one-time token: %v", err)
	}
	return tok
}

// TestOneTimeTokenLifetimeAndSingleUse is SECURITY.md 13: valid 30 s, single use, bound to its
// purpose; a fresh token past 30 s is refused.
func TestOneTimeTokenLifetimeAndSingleUse(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		u := f.user(t, "john")
		tok := f.ott(t, engine.OTTRequest{Purpose: engine.OTTPurposeLogin, Login: "john"})
		if len(tok.Token) < 43 || !tok.ExpiresAt.Equal(t0.Add(30*time.Second)) {
			t.Fatalf("token %d chars, expires %s", len(tok.Token), tok.ExpiresAt)
		}
		// Bound to its purpose: not redeemable as "verify", and that attempt does not spend it.
		if _, err := f.eng.RedeemOneTimeToken(ctx, "", tok.Token, engine.OTTPurposeVerify); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Fatalf("redeemed for another purpose: %v", err)
		}
		f.clk.Advance(29 * time.Second)
		red, err := f.eng.RedeemOneTimeToken(ctx, "", tok.Token, engine.OTTPurposeLogin)
		if err != nil || red.User.ID != u.ID || red.SessionToken == "" || !red.SessionExpiresAt.Equal(t0.Add(29*time.Second+8*time.Hour)) {
			t.Fatalf("redeem at +29s: %+v %v", red, err)
		}
		if got, err := f.eng.SessionUser(ctx, red.SessionToken); err != nil || got.ID != u.ID {
			t.Fatalf("session: %v %v", got, err)
		}
		if _, err := f.eng.RedeemOneTimeToken(ctx, "", tok.Token, engine.OTTPurposeLogin); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Fatalf("second use: %v", err)
		}
		late := f.ott(t, engine.OTTRequest{Purpose: engine.OTTPurposeVerify, UserID: u.ID})
		f.clk.Advance(31 * time.Second)
		if _, err := f.eng.RedeemOneTimeToken(ctx, "", late.Token, engine.OTTPurposeVerify); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Fatalf("use at +31s: %v", err)
		}
		if _, err := f.eng.RedeemOneTimeToken(ctx, "", "not-a-token", engine.OTTPurposeLogin); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Fatalf("unknown token: %v", err)
		}
		if _, err := f.eng.RedeemOneTimeToken(ctx, "", strings.Repeat("x", 10000), engine.OTTPurposeLogin); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Fatalf("huge token: %v", err)
		}
		// A verify token proves the user once and opens no session; it is no login token.
		v := f.ott(t, engine.OTTRequest{Purpose: engine.OTTPurposeVerify, Login: "john"})
		if _, err := f.eng.RedeemOneTimeToken(ctx, "", v.Token, engine.OTTPurposeLogin); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Fatalf("verify token redeemed as a login: %v", err)
		}
		red, err = f.eng.RedeemOneTimeToken(ctx, "", v.Token, engine.OTTPurposeVerify)
		if err != nil || red.User.ID != u.ID || red.SessionToken != "" {
			t.Fatalf("verify token: %+v %v", red, err)
		}
	})
}

func TestOneTimeTokenIssueRules(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		ext := "crm-42"
		u := f.user(t, "ann", func(in *engine.UserInput) { in.ExternalID = &ext })
		for _, r := range []engine.OTTRequest{
			{Purpose: "user_login", Login: "ann"},
			{Purpose: "verify", ExternalID: "crm-42"},
			{Purpose: "user_login", UserID: u.ID, AuditData: []byte(`{"ticket":"T-1"}`)},
		} {
			tok, err := f.eng.IssueOneTimeToken(ctx, f.admin, r)
			if err != nil || tok.UserID != u.ID {
				t.Errorf("%+v: %v %v", r, tok, err)
			}
		}
		var ve engine.ValidationErrors
		for _, r := range []engine.OTTRequest{
			{Purpose: "login", Login: "ann"},
			{Purpose: "user_login"},
			{Purpose: "user_login", Login: "ann", UserID: u.ID},
			{Purpose: "user_login", Login: "ann", AuditData: []byte(`[1]`)},
			{Purpose: "user_login", Login: "ann", AuditData: []byte(`{"a":"` + strings.Repeat("x", 5000) + `"}`)},
		} {
			if _, err := f.eng.IssueOneTimeToken(ctx, f.admin, r); !errors.As(err, &ve) {
				t.Errorf("%+v: err %v, want a validation error", r, err)
			}
		}
		for _, r := range []engine.OTTRequest{{Purpose: "user_login", Login: "nobody"}, {Purpose: "user_login", UserID: "0190b1c2-0000-7000-8000-000000000000"}} {
			if _, err := f.eng.IssueOneTimeToken(ctx, f.admin, r); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("%+v: %v, want not found", r, err)
			}
		}
		off := false
		if _, err := f.eng.UpdateUser(ctx, f.admin, u.ID, engine.UserInput{Enabled: &off}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.eng.IssueOneTimeToken(ctx, f.admin, engine.OTTRequest{Purpose: "user_login", Login: "ann"}); !errors.Is(err, engine.ErrUserDisabled) {
			t.Errorf("disabled user: %v", err)
		}
	})
}

// TestOneTimeTokenRace: 100 concurrent redemptions of one token, spread over two engines on
// one database (two instances on PostgreSQL), open exactly one session.
func TestOneTimeTokenRace(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		second := newEngine(t, storetest.Open(t, f.dsn), f.clk, engine.Config{})
		engines := []*engine.Engine{f.eng, second}
		f.user(t, "racer")
		ctx := context.Background()
		for round := range 3 {
			tok := f.ott(t, engine.OTTRequest{Purpose: engine.OTTPurposeLogin, Login: "racer"})
			var wins, refused atomic.Int32
			var wg sync.WaitGroup
			gate := make(chan struct{})
			for i := range 100 {
				wg.Go(func() {
					<-gate
					_, err := engines[i%2].RedeemOneTimeToken(ctx, "", tok.Token, engine.OTTPurposeLogin)
					switch {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, engine.ErrUnauthenticated):
						refused.Add(1)
					default:
						t.Errorf("redeem: %v", err)
					}
				})
			}
			close(gate)
			wg.Wait()
			if wins.Load() != 1 || refused.Load() != 99 {
				t.Fatalf("round %d: %d sessions, %d refused; want 1 and 99", round, wins.Load(), refused.Load())
			}
		}
	})
}

// TestAccessTokenRevocationOnEveryInstance: a token revoked through one engine is refused by
// another engine on the same database from the next request on; deleting the application
// kills its tokens too; the id token is not an access token.
func TestAccessTokenRevocationOnEveryInstance(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		a := f.eng
		bEng := newEngine(t, storetest.Open(t, f.dsn), f.clk, engine.Config{})
		ctx := context.Background()
		app, err := a.CreateApplication(ctx, f.admin, "shop")
		if err != nil {
			t.Fatal(err)
		}
		p, err := bEng.AuthenticateClient(ctx, app.ClientID, app.ClientSecret)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := bEng.IssueAccessToken(ctx, p)
		if err != nil || tok.ExpiresIn != 2*time.Hour || tok.TokenType != "bearer" {
			t.Fatalf("issue: %+v %v", tok, err)
		}
		for _, e := range []*engine.Engine{a, bEng} {
			got, err := e.VerifyAccessToken(ctx, tok.AccessToken)
			if err != nil || got.ApplicationID != app.ID || got.TenantID != f.admin.TenantID {
				t.Fatalf("verify before revocation: %+v %v", got, err)
			}
		}
		if _, err := a.VerifyAccessToken(ctx, tok.IDToken); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Errorf("the id token was accepted as an access token: %v", err)
		}
		in, err := bEng.IntrospectToken(ctx, p, tok.AccessToken)
		if err != nil || !in.Active || in.ClientID != app.ClientID || in.Subject != app.ID {
			t.Fatalf("introspect: %+v %v", in, err)
		}
		// Another tenant's client sees the token as inactive.
		otherID, _, err := a.CreateTenant(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		if in, _ := bEng.IntrospectToken(ctx, engine.Principal{TenantID: otherID, ApplicationID: "x"}, tok.AccessToken); in.Active {
			t.Error("a token is active for another tenant's client")
		}

		if err := a.RevokeToken(ctx, &p, tok.AccessToken); err != nil {
			t.Fatal(err)
		}
		if _, err := bEng.VerifyAccessToken(ctx, tok.AccessToken); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Fatalf("instance B accepts a token revoked on A: %v", err)
		}
		if in, _ := bEng.IntrospectToken(ctx, p, tok.AccessToken); in.Active {
			t.Error("a revoked token introspects as active")
		}
		// Revoking again, or revoking garbage, is fine.
		for _, tk := range []string{tok.AccessToken, "garbage", "a.b.c"} {
			if err := bEng.RevokeToken(ctx, &p, tk); err != nil {
				t.Errorf("revoke %q: %v", tk, err)
			}
		}
		// Another application of the tenant cannot revoke this app's token.
		tok2, _ := a.IssueAccessToken(ctx, p)
		app2, _ := a.CreateApplication(ctx, f.admin, "other app")
		p2, _ := a.AuthenticateClient(ctx, app2.ClientID, app2.ClientSecret)
		if err := a.RevokeToken(ctx, &p2, tok2.AccessToken); err != nil {
			t.Fatal(err)
		}
		if _, err := bEng.VerifyAccessToken(ctx, tok2.AccessToken); err != nil {
			t.Errorf("another application revoked the token: %v", err)
		}
		// Deleting the application kills its tokens on every instance.
		if err := a.DeleteApplication(ctx, f.admin, app.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := bEng.VerifyAccessToken(ctx, tok2.AccessToken); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Errorf("token of a deleted application accepted: %v", err)
		}
		// Expiry, also of a token whose signature check is remembered.
		tok3, err := a.IssueAccessToken(ctx, p2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bEng.VerifyAccessToken(ctx, tok3.AccessToken); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(2*time.Hour - time.Second)
		if _, err := bEng.VerifyAccessToken(ctx, tok3.AccessToken); err != nil {
			t.Fatalf("token before its expiry: %v", err)
		}
		f.clk.Advance(2 * time.Second)
		if _, err := bEng.VerifyAccessToken(ctx, tok3.AccessToken); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Errorf("expired token accepted: %v", err)
		}
	})
}

// TestSessionRevocation: an IdP session ended by its holder (no client credentials, as
// OpenIAM's logout) is dead on every instance.
func TestSessionRevocation(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		other := newEngine(t, storetest.Open(t, f.dsn), f.clk, engine.Config{})
		ctx := context.Background()
		f.user(t, "sam")
		red, err := f.eng.RedeemOneTimeToken(ctx, "", f.ott(t, engine.OTTRequest{Purpose: "user_login", Login: "sam"}).Token, "user_login")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.SessionUser(ctx, red.SessionToken); err != nil {
			t.Fatal(err)
		}
		if err := f.eng.RevokeToken(ctx, nil, red.SessionToken); err != nil {
			t.Fatal(err)
		}
		if _, err := other.SessionUser(ctx, red.SessionToken); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Fatalf("ended session still works on the other instance: %v", err)
		}
		// Sessions expire.
		red2, _ := f.eng.RedeemOneTimeToken(ctx, "", f.ott(t, engine.OTTRequest{Purpose: "user_login", Login: "sam"}).Token, "user_login")
		f.clk.Advance(8 * time.Hour)
		if _, err := other.SessionUser(ctx, red2.SessionToken); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Fatalf("expired session works: %v", err)
		}
	})
}

// TestNoTokenAtRest: one-time tokens, session ids and IAM client secrets are not stored in clear.
func TestNoTokenAtRest(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		f.user(t, "dora")
		var secrets []string
		for range 3 {
			tok := f.ott(t, engine.OTTRequest{Purpose: "user_login", Login: "dora"})
			secrets = append(secrets, tok.Token)
		}
		red, err := f.eng.RedeemOneTimeToken(ctx, "", secrets[0], "user_login")
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, red.SessionToken)
		app, err := f.eng.CreateApplication(ctx, f.admin, "crm")
		if err != nil {
			t.Fatal(err)
		}
		iamSecret := "iam-client-secret-" + hex.EncodeToString([]byte(red.SessionToken[:6]))
		if _, err := f.eng.SetIAMSettings(ctx, f.admin, app.ID, engine.IAMInput{Enabled: true, ClientID: "otpd-probe",
			ClientSecret: &iamSecret, IntrospectionURL: "https://iam.example.com/introspect", RolePath: "roles", AllowedRole: "x"}); err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, iamSecret)
		dump := storetest.Dump(t, f.st, f.dsn)
		if !bytes.Contains(dump, []byte("otpd-probe")) {
			t.Fatal("the dump does not hold the IAM client id: it did not read the data")
		}
		for _, s := range secrets {
			if bytes.Contains(dump, []byte(s)) || bytes.Contains(dump, []byte(hex.EncodeToString([]byte(s)))) {
				t.Errorf("secret %q is stored in clear", s[:8]+"…")
			}
		}
	})
}

// TestPurgeTokens: expired tokens and sessions go; live ones stay and still work; a purged
// token stays dead.
func TestPurgeTokens(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		f.user(t, "pat")
		old := f.ott(t, engine.OTTRequest{Purpose: "user_login", Login: "pat"})
		f.clk.Advance(2 * time.Minute)
		fresh := f.ott(t, engine.OTTRequest{Purpose: "user_login", Login: "pat"})
		n, err := f.eng.PurgeTokens(ctx)
		if err != nil || n != 1 {
			t.Fatalf("purge: %d %v, want 1", n, err)
		}
		if _, err := f.eng.RedeemOneTimeToken(ctx, "", old.Token, "user_login"); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Errorf("purged token: %v", err)
		}
		if _, err := f.eng.RedeemOneTimeToken(ctx, "", fresh.Token, "user_login"); err != nil {
			t.Errorf("live token after purge: %v", err)
		}
		// The janitor's Purge includes the tokens: after it, nothing is left for PurgeTokens.
		f.ott(t, engine.OTTRequest{Purpose: "user_login", Login: "pat"})
		f.clk.Advance(2 * time.Minute)
		if _, err := f.eng.Purge(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := f.eng.PurgeTokens(ctx); err != nil || n != 0 {
			t.Errorf("after Purge, PurgeTokens found %d (%v): Purge did not purge tokens", n, err)
		}
	})
}

// TestRedirectAllowList: open-redirect attempts against a tenant that allows
// https://app.example.com/portal are refused; targets under it pass, re-serialised.
func TestRedirectAllowList(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		got, err := f.eng.SetTokenSettings(ctx, f.admin, engine.TokenSettings{
			RedirectTargets: []string{"HTTPS://App.Example.com:443/portal", "http://127.0.0.1:8081/"}})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"https://app.example.com/portal", "http://127.0.0.1:8081/"}; strings.Join(got.RedirectTargets, " ") != strings.Join(want, " ") {
			t.Errorf("normalised targets %v, want %v", got.RedirectTargets, want)
		}
		tid := f.admin.TenantID
		for _, ok := range []string{
			"https://app.example.com/portal",
			"https://app.example.com/portal/",
			"https://app.example.com/portal/home?tab=1#top",
			"https://APP.example.com:443/portal/x",
			"http://127.0.0.1:8081/anything",
		} {
			if _, err := f.eng.CheckRedirectTarget(ctx, tid, ok); err != nil {
				t.Errorf("%s refused: %v", ok, err)
			}
		}
		for _, bad := range []string{
			"//evil.example/portal",
			"/portal",
			"javascript:alert(1)",
			"JavaScript://app.example.com/portal/%0aalert(1)",
			"data:text/html,hi",
			"https://evil.example/portal",
			"https://app.example.com.evil.example/portal",
			"https://app.example.com@evil.example/portal",
			"https://evil.example@app.example.com/portal",
			"https://app.example.com:8443/portal",
			"http://app.example.com/portal",
			"https://app.example.com/portalx",
			"https://app.example.com/other",
			"https://app.example.com/portal/../admin",
			"https://app.example.com/portal/%2e%2e/admin",
			"https://app.example.com/portal/..%2fadmin",
			"https://app.example.com\\@evil.example/portal",
			"https:\\\\evil.example/portal",
			"https://app.example.com/portal\t/x",
			"https://app.example.com/portal\n",
			"https:/app.example.com/portal",
			"https:app.example.com/portal",
			" https://app.example.com/portal",
			"https://app.example.com//evil.example/",
			"http://127.0.0.1:8082/",
			"https://app.exam%70le.com/portal",
			"",
		} {
			if u, err := f.eng.CheckRedirectTarget(ctx, tid, bad); !errors.Is(err, engine.ErrRedirectNotAllowed) {
				t.Errorf("%q allowed (→ %q, %v)", bad, u, err)
			}
		}
		// Another tenant's allow-list does not apply.
		otherID, _, err := f.eng.CreateTenant(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.eng.CheckRedirectTarget(ctx, otherID, "https://app.example.com/portal"); !errors.Is(err, engine.ErrRedirectNotAllowed) {
			t.Errorf("another tenant's list applied: %v", err)
		}
		// Allow-list entries are validated.
		var ve engine.ValidationErrors
		for _, bad := range []string{"javascript:x", "https://a.example/?q=1", "https://u:p@a.example/", "//a.example/", "https://a.example/#f", "ftp://a.example/"} {
			if _, err := f.eng.SetTokenSettings(ctx, f.admin, engine.TokenSettings{RedirectTargets: []string{bad}}); !errors.As(err, &ve) {
				t.Errorf("allow-list entry %q accepted: %v", bad, err)
			}
		}
	})
}

func TestSelfServicePrincipal(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		acmeID, acmeKey, err := f.eng.CreateTenant(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		acme := engine.Principal{TenantID: acmeID, Role: store.RoleAdmin}
		if _, err := f.eng.SetTokenSettings(ctx, acme, engine.TokenSettings{SelfServiceHosts: []string{"Login.Acme.example:8443"}}); err != nil {
			t.Fatal(err)
		}
		// A host another tenant claims is a conflict.
		if _, err := f.eng.SetTokenSettings(ctx, f.admin, engine.TokenSettings{SelfServiceHosts: []string{"login.acme.example:8443"}}); !errors.Is(err, engine.ErrConflict) {
			t.Errorf("second claim of a host: %v", err)
		}
		for host, want := range map[string]string{"login.acme.example:8443": acmeID, "LOGIN.ACME.EXAMPLE:8443": acmeID,
			"localhost:8080": f.admin.TenantID, "": f.admin.TenantID, "bad host!": f.admin.TenantID} {
			p, err := f.eng.SelfServicePrincipal(ctx, "", host)
			if err != nil || p.TenantID != want || p.IsAdmin() {
				t.Errorf("host %q: %+v %v, want tenant %s", host, p, err, want)
			}
		}
		if p, err := f.eng.SelfServicePrincipal(ctx, acmeKey, "other.example"); err != nil || p.TenantID != acmeID {
			t.Errorf("with acme's key: %+v %v", p, err)
		}
		if _, err := f.eng.SelfServicePrincipal(ctx, "otpd_0000000000000000_nope", ""); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Errorf("bad key: %v", err)
		}
		if _, err := f.eng.SetTokenSettings(ctx, acme, engine.TokenSettings{SelfServiceRequireKey: true, SelfServiceHosts: []string{"login.acme.example:8443"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.eng.SelfServicePrincipal(ctx, "", "login.acme.example:8443"); !errors.Is(err, engine.ErrAPIKeyRequired) {
			t.Errorf("tenant requiring a key served without one: %v", err)
		}
		if p, err := f.eng.SelfServicePrincipal(ctx, acmeKey, "login.acme.example:8443"); err != nil || p.TenantID != acmeID {
			t.Errorf("with the key: %+v %v", p, err)
		}
	})
}

// TestSelfServiceMovingFactors: moving factors are epoch milliseconds, unique per tenant even
// when sends share a millisecond, and bound to their channel.
func TestSelfServiceMovingFactors(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{}) // channels: none, email
		ctx := context.Background()
		p, err := f.eng.SelfServicePrincipal(ctx, "", "")
		if err != nil {
			t.Fatal(err)
		}
		var mfs []int64
		for _, to := range []string{"a@example.com", "b@example.com", "c@example.com"} {
			c, err := f.eng.SendSelfServiceCode(ctx, p, engine.ChannelEmail, to, "203.0.113.5")
			if err != nil {
				t.Fatal(err)
			}
			mfs = append(mfs, c.MovingFactor)
		}
		if base := t0.UnixMilli(); mfs[0] != base || mfs[1] != base+1 || mfs[2] != base+2 {
			t.Errorf("moving factors %v, want %d, +1, +2", mfs, base)
		}
		// Another tenant may use the same millisecond.
		oid, _, _ := f.eng.CreateTenant(ctx, "other")
		oc, err := f.eng.SendSelfServiceCode(ctx, engine.Principal{TenantID: oid, Role: store.RoleApp}, engine.ChannelEmail, "a@example.com", "")
		if err != nil || oc.MovingFactor != t0.UnixMilli() {
			t.Errorf("other tenant: %+v %v", oc, err)
		}
		if _, err := f.eng.CheckSelfServiceCode(ctx, p, engine.ChannelSMS, mfs[0], "123456", "203.0.113.5"); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("email moving factor checked as sms: %v", err)
		}
		if _, err := f.eng.CheckSelfServiceCode(ctx, p, engine.ChannelEmail, 42, "123456", "203.0.113.5"); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("unknown moving factor: %v", err)
		}
		if _, err := f.eng.SendSelfServiceCode(ctx, p, engine.ChannelSMS, "+14155550100", ""); !errors.Is(err, engine.ErrChannelUnavailable) {
			t.Errorf("sms without a provider: %v", err)
		}
	})
}

func TestTokenPolicyValidate(t *testing.T) {
	for _, bad := range []engine.TokenPolicy{
		{OTTTTL: 31 * time.Second},
		{OTTTTL: time.Second},
		{SessionTTL: time.Minute},
		{AccessTokenTTL: 25 * time.Hour},
		{UserOTPTTL: 11 * time.Minute},
		{IntrospectionTimeout: time.Minute},
		{Issuer: "a\nb"},
	} {
		if err := (engine.Config{Tokens: bad}).Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := (engine.Config{Tokens: engine.TokenPolicy{OTTTTL: 10 * time.Second, Issuer: "https://idp.example.com"}}).Validate(); err != nil {
		t.Errorf("valid policy refused: %v", err)
	}
}
