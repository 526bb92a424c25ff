package engine_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/storetest"
	"github.com/otpd/otpd/internal/testiam"
)

// iamFixture is an engine with an application whose IAM settings point at a real
// introspection server, a requestor token the IAM vouches for, and a user.
type iamFixture struct {
	*fixture
	iam  *testiam.Server
	app  *engine.NewApplication
	user *store.User
	req  engine.UserOTPRequest
}

const requestorToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJl"

func setupIAM(t *testing.T, b storetest.Backend) *iamFixture {
	t.Helper()
	f := setup(t, b, engine.Config{})
	ctx := context.Background()
	iam := testiam.New(t, "otpd-client", "s3cret:with/odd&chars")
	iam.SetToken(requestorToken, map[string]any{"active": true, "username": "agent.smith",
		"realm_access": map[string]any{"roles": []any{"offline_access", "otp-issuer"}}})
	app, err := f.eng.CreateApplication(ctx, f.admin, "crm")
	if err != nil {
		t.Fatal(err)
	}
	secret := iam.ClientSecret
	if _, err := f.eng.SetIAMSettings(ctx, f.admin, app.ID, engine.IAMInput{Enabled: true, IntrospectionURL: iam.IntrospectURL(),
		ClientID: iam.ClientID, ClientSecret: &secret, RolePath: "$.realm_access.roles", AllowedRole: "otp-issuer"}); err != nil {
		t.Fatal(err)
	}
	phone := "+61 412 345 678"
	u := f.user(t, "customer", func(in *engine.UserInput) { in.Phone = &phone })
	return &iamFixture{fixture: f, iam: iam, app: app, user: u, req: engine.UserOTPRequest{ApplicationID: app.ID,
		UserID: u.ID, Purpose: "password-reset", RequestorToken: requestorToken, RequestorUsername: "agent.smith"}}
}

func TestUserOTPIssueAndVerifyOnce(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setupIAM(t, b)
		ctx := context.Background()
		otp, err := f.eng.IssueUserOTP(ctx, f.admin, f.req)
		if err != nil {
			t.Fatal(err)
		}
		if len(otp.OTP) != 6 || otp.TTL != 5*time.Minute || !otp.ExpiresAt.Equal(t0.Add(5*time.Minute)) ||
			otp.UserEmail != "customer@example.com" || otp.MobileNumber != "+61412345678" {
			t.Fatalf("otp: %+v", otp)
		}
		// The IAM was asked as RFC 7662 says, with otpd's client credentials.
		reqs := f.iam.Requests()
		if len(reqs) != 1 || reqs[0].Token != requestorToken || reqs[0].TokenTypeHint != "access_token" ||
			reqs[0].ClientID != "otpd-client" || reqs[0].ClientSecret != "s3cret:with/odd&chars" ||
			reqs[0].ContentType != "application/x-www-form-urlencoded" {
			t.Fatalf("introspection requests: %+v", reqs)
		}
		// One valid OTP per user and purpose (AN-UOTP-1004); another purpose is fine.
		if _, err := f.eng.IssueUserOTP(ctx, f.admin, f.req); !errors.Is(err, engine.ErrUserOTPExists) {
			t.Fatalf("second OTP for the purpose: %v", err)
		}
		other := f.req
		other.Purpose = "login"
		otherOTP, err := f.eng.IssueUserOTP(ctx, f.admin, other)
		if err != nil {
			t.Fatal(err)
		}
		// Bound to its purpose: the login OTP does not verify the reset purpose.
		if otherOTP.OTP != otp.OTP {
			r, err := f.eng.VerifyUserOTP(ctx, f.admin, f.user.ID, "password-reset", otherOTP.OTP)
			if err != nil || r.Valid() {
				t.Fatalf("cross-purpose OTP: %+v %v", r, err)
			}
		}
		r, err := f.eng.VerifyUserOTP(ctx, f.admin, f.user.ID, "password-reset", otp.OTP)
		if err != nil || !r.Valid() {
			t.Fatalf("verify: %+v %v", r, err)
		}
		if r, err := f.eng.VerifyUserOTP(ctx, f.admin, f.user.ID, "password-reset", otp.OTP); err != nil || r.Valid() || r.Session.Status != "verified" {
			t.Fatalf("second verify: %+v %v", r, err)
		}
		// Used: a new one may be issued at once.
		if _, err := f.eng.IssueUserOTP(ctx, f.admin, f.req); err != nil {
			t.Fatalf("OTP after the previous one was used: %v", err)
		}
		if _, err := f.eng.VerifyUserOTP(ctx, f.admin, f.user.ID, "unknown-purpose", "123456"); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("no OTP for the purpose: %v", err)
		}
		if _, err := f.eng.VerifyUserOTP(ctx, f.admin, f.user.ID, "password-reset", "12345x"); !errors.Is(err, engine.ErrMalformedCode) {
			t.Errorf("malformed OTP: %v", err)
		}
	})
}

// TestUserOTPTryBudgetAndExpiry: wrong OTPs spend the try budget and the last one kills the
// OTP (the right one then fails); an expired OTP fails and frees the slot.
func TestUserOTPTryBudgetAndExpiry(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setupIAM(t, b)
		ctx := context.Background()
		otp, err := f.eng.IssueUserOTP(ctx, f.admin, f.req)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			r, err := f.eng.VerifyUserOTP(ctx, f.admin, f.user.ID, f.req.Purpose, wrongCode(otp.OTP))
			if err != nil || r.Valid() || r.Session.AttemptsLeft() != 4-i {
				t.Fatalf("wrong try %d: %+v %v", i, r, err)
			}
		}
		if r, _ := f.eng.VerifyUserOTP(ctx, f.admin, f.user.ID, f.req.Purpose, otp.OTP); r.Valid() || r.Session.Status != "failed" {
			t.Fatalf("right OTP after the budget: %+v", r)
		}
		next, err := f.eng.IssueUserOTP(ctx, f.admin, f.req)
		if err != nil {
			t.Fatalf("OTP after a failed one: %v", err)
		}
		f.clk.Advance(5 * time.Minute)
		if r, _ := f.eng.VerifyUserOTP(ctx, f.admin, f.user.ID, f.req.Purpose, next.OTP); r.Valid() || r.Session.Status != "expired" {
			t.Fatalf("expired OTP: %+v", r)
		}
		ttl := f.req
		ttl.TTL = 30 * time.Second
		o, err := f.eng.IssueUserOTP(ctx, f.admin, ttl)
		if err != nil || o.TTL != 30*time.Second || !o.ExpiresAt.Equal(f.clk.Now().Add(30*time.Second)) {
			t.Fatalf("ttl 30s: %+v %v", o, err)
		}
	})
}

// TestUserOTPConcurrentIssue: of concurrent requests for one user and purpose, on two engines
// on one database, exactly one gets an OTP.
func TestUserOTPConcurrentIssue(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setupIAM(t, b)
		second := newEngine(t, storetest.Open(t, f.dsn), f.clk, engine.Config{})
		engines := []*engine.Engine{f.eng, second}
		var issued, exists atomic.Int32
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range 20 {
			wg.Go(func() {
				<-gate
				_, err := engines[i%2].IssueUserOTP(context.Background(), f.admin, f.req)
				switch {
				case err == nil:
					issued.Add(1)
				case errors.Is(err, engine.ErrUserOTPExists):
					exists.Add(1)
				default:
					t.Errorf("issue: %v", err)
				}
			})
		}
		close(gate)
		wg.Wait()
		if issued.Load() != 1 || exists.Load() != 19 {
			t.Fatalf("%d issued, %d refused as existing; want 1 and 19", issued.Load(), exists.Load())
		}
	})
}

// TestUserOTPIntrospection: the requestor's token at the IAM decides — inactive, missing role,
// another user's token, unreachable IAM, bad answers: no OTP in every case.
func TestUserOTPIntrospection(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setupIAM(t, b)
		ctx := context.Background()
		try := func(name, token string, want error) {
			t.Helper()
			r := f.req
			r.RequestorToken = token
			if _, err := f.eng.IssueUserOTP(ctx, f.admin, r); !errors.Is(err, want) {
				t.Errorf("%s: %v, want %v", name, err, want)
			}
		}
		f.iam.SetToken("inactive.t.k", map[string]any{"active": false})
		f.iam.SetToken("norole.t.k", map[string]any{"active": true, "username": "agent.smith",
			"realm_access": map[string]any{"roles": []any{"viewer"}}})
		f.iam.SetToken("nopath.t.k", map[string]any{"active": true, "username": "agent.smith"})
		f.iam.SetToken("otheruser.t.k", map[string]any{"active": true, "username": "someone.else",
			"realm_access": map[string]any{"roles": []any{"otp-issuer"}}})
		f.iam.SetToken("norolestring.t.k", map[string]any{"active": true, "realm_access": map[string]any{"roles": "otp-issuer-x"}})
		f.iam.SetToken("noactive.t.k", map[string]any{"username": "agent.smith"})
		try("inactive token", "inactive.t.k", engine.ErrRequestorNotAllowed)
		try("unknown token", "unknown.t.k", engine.ErrRequestorNotAllowed)
		try("missing role", "norole.t.k", engine.ErrRequestorNotAllowed)
		try("no value at the role path", "nopath.t.k", engine.ErrRequestorNotAllowed)
		try("another user's token", "otheruser.t.k", engine.ErrRequestorNotAllowed)
		try("role as a non-matching string", "norolestring.t.k", engine.ErrRequestorNotAllowed)
		try("answer without active", "noactive.t.k", engine.ErrIAMUnavailable)
		f.iam.Force(500, `{"error":"boom"}`)
		try("IAM answers 500", requestorToken, engine.ErrIAMUnavailable)
		f.iam.Force(200, `<html>not json</html>`)
		try("IAM answers HTML", requestorToken, engine.ErrIAMUnavailable)
		f.iam.Force(200, `{"active":true,"x":"`+strings.Repeat("a", 70<<10)+`"}`)
		try("IAM answers too much", requestorToken, engine.ErrIAMUnavailable)
		f.iam.Force(0, "")

		// Wrong client credentials at the IAM: it refuses otpd (401), otpd says it could not ask.
		wrong := "not-the-secret"
		if _, err := f.eng.SetIAMSettings(ctx, f.admin, f.app.ID, engine.IAMInput{Enabled: true, IntrospectionURL: f.iam.IntrospectURL(),
			ClientID: f.iam.ClientID, ClientSecret: &wrong, RolePath: "$.realm_access.roles", AllowedRole: "otp-issuer"}); err != nil {
			t.Fatal(err)
		}
		try("IAM refuses otpd's credentials", requestorToken, engine.ErrIAMUnavailable)

		// Unreachable and slow IAMs: a clear error, no OTP, nothing left behind.
		right := f.iam.ClientSecret
		for _, url := range []string{"http://127.0.0.1:1/introspect", f.iam.IntrospectURL()} {
			if _, err := f.eng.SetIAMSettings(ctx, f.admin, f.app.ID, engine.IAMInput{Enabled: true, IntrospectionURL: url,
				ClientID: f.iam.ClientID, ClientSecret: &right, RolePath: "$.realm_access.roles", AllowedRole: "otp-issuer"}); err != nil {
				t.Fatal(err)
			}
		}
		f.iam.Close()
		try("IAM unreachable", requestorToken, engine.ErrIAMUnavailable)
		sessions, err := f.eng.List(ctx, f.admin, engine.ListFilter{})
		if err != nil || len(sessions) != 0 {
			t.Fatalf("refused requests left sessions behind: %d %v", len(sessions), err)
		}
	})
}

func TestUserOTPSlowIAMTimesOut(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{Tokens: engine.TokenPolicy{IntrospectionTimeout: time.Second}})
		ctx := context.Background()
		iam := testiam.New(t, "c", "s")
		iam.Delay(5 * time.Second)
		app, _ := f.eng.CreateApplication(ctx, f.admin, "crm")
		s := "s"
		if _, err := f.eng.SetIAMSettings(ctx, f.admin, app.ID, engine.IAMInput{Enabled: true, IntrospectionURL: iam.IntrospectURL(),
			ClientID: "c", ClientSecret: &s, RolePath: "roles", AllowedRole: "r"}); err != nil {
			t.Fatal(err)
		}
		u := f.user(t, "slow")
		began := time.Now()
		_, err := f.eng.IssueUserOTP(ctx, f.admin, engine.UserOTPRequest{ApplicationID: app.ID, UserID: u.ID,
			Purpose: "p", RequestorToken: requestorToken, RequestorUsername: "a"})
		if !errors.Is(err, engine.ErrIAMUnavailable) || time.Since(began) > 4*time.Second {
			t.Fatalf("slow IAM: %v after %s", err, time.Since(began))
		}
	})
}

// TestUserOTPMisconfigurations: every incomplete or malformed IAM setting is refused with its
// own error, in the documented order, before the IAM is asked.
func TestUserOTPMisconfigurations(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setupIAM(t, b)
		ctx := context.Background()
		secret := "x"
		empty := ""
		full := engine.IAMInput{Enabled: true, IntrospectionURL: f.iam.IntrospectURL(), ClientID: "otpd-client",
			ClientSecret: &secret, RolePath: "roles", AllowedRole: "otp-issuer"}
		cases := []struct {
			name   string
			change func(*engine.IAMInput)
			want   error
		}{
			{"disabled", func(in *engine.IAMInput) { in.Enabled = false }, engine.ErrIAMNotEnabled},
			{"no client id", func(in *engine.IAMInput) { in.ClientID = "" }, engine.ErrIAMClientIDMissing},
			{"no client secret", func(in *engine.IAMInput) { in.ClientSecret = &empty }, engine.ErrIAMClientSecretMissing},
			{"no url", func(in *engine.IAMInput) { in.IntrospectionURL = "" }, engine.ErrIAMURLMissing},
			{"no role path", func(in *engine.IAMInput) { in.RolePath = "" }, engine.ErrIAMRolePathMissing},
			{"no role", func(in *engine.IAMInput) { in.AllowedRole = "" }, engine.ErrIAMRoleMissing},
			{"malformed role path", func(in *engine.IAMInput) { in.RolePath = "$..roles[" }, engine.ErrIAMRolePathFormat},
		}
		before := len(f.iam.Requests())
		for _, c := range cases {
			in := full
			c.change(&in)
			v, err := f.eng.SetIAMSettings(ctx, f.admin, f.app.ID, in)
			if err != nil {
				t.Fatalf("%s: save: %v", c.name, err)
			}
			if len(v.Problems) == 0 || !errors.Is(v.Problems[0], c.want) {
				t.Errorf("%s: problems %v, want %v first", c.name, v.Problems, c.want)
			}
			if _, err := f.eng.IssueUserOTP(ctx, f.admin, f.req); !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
		}
		if err := f.eng.DeleteIAMSettings(ctx, f.admin, f.app.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.eng.IssueUserOTP(ctx, f.admin, f.req); !errors.Is(err, engine.ErrIAMNotEnabled) {
			t.Errorf("no settings at all: %v", err)
		}
		if n := len(f.iam.Requests()); n != before {
			t.Errorf("the IAM was asked %d times with a broken configuration", n-before)
		}
		// Settings that cannot be stored: plain http to a remote host, control characters.
		var ve engine.ValidationErrors
		for _, in := range []engine.IAMInput{
			{IntrospectionURL: "http://iam.example.com/introspect"},
			{IntrospectionURL: "https://user:pw@iam.example.com/"},
			{IntrospectionURL: "ftp://iam.example.com/"},
			{ClientID: "a\nb"},
			{RolePath: strings.Repeat("a", 300)},
		} {
			if _, err := f.eng.SetIAMSettings(ctx, f.admin, f.app.ID, in); !errors.As(err, &ve) {
				t.Errorf("%+v stored: %v", in, err)
			}
		}
		// Secrets are never read back; a nil secret keeps the stored one.
		s1 := "first-secret"
		in := full
		in.ClientSecret = &s1
		if _, err := f.eng.SetIAMSettings(ctx, f.admin, f.app.ID, in); err != nil {
			t.Fatal(err)
		}
		in.ClientSecret = nil
		v, err := f.eng.SetIAMSettings(ctx, f.admin, f.app.ID, in)
		if err != nil || !v.ClientSecretSet || len(v.Problems) != 0 {
			t.Fatalf("keep secret: %+v %v", v, err)
		}
		// App keys may not read or change IAM settings.
		appP := engine.Principal{TenantID: f.admin.TenantID, ApplicationID: f.app.ID, Role: store.RoleApp}
		if _, err := f.eng.GetIAMSettings(ctx, appP, f.app.ID); !errors.Is(err, engine.ErrForbidden) {
			t.Errorf("app key read IAM settings: %v", err)
		}
	})
}

// TestUserOTPRequestChecks: the checks before the IAM, each with its own outcome.
func TestUserOTPRequestChecks(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setupIAM(t, b)
		ctx := context.Background()
		var ve engine.ValidationErrors
		field := func(err error) string {
			if errors.As(err, &ve) {
				return ve[0].Field
			}
			return ""
		}
		for _, c := range []struct {
			change func(*engine.UserOTPRequest)
			field  string
		}{
			{func(r *engine.UserOTPRequest) { r.Purpose = "" }, "purpose"},
			{func(r *engine.UserOTPRequest) { r.Purpose = "bad purpose!" }, "purpose"},
			{func(r *engine.UserOTPRequest) { r.RequestorUsername = " " }, "requestor_username"},
			{func(r *engine.UserOTPRequest) { r.TTL = 10 * time.Second }, "ttl"},
			{func(r *engine.UserOTPRequest) { r.TTL = 11 * time.Minute }, "ttl"},
			{func(r *engine.UserOTPRequest) { r.RequestorToken = "" }, "requestor_token"},
		} {
			r := f.req
			c.change(&r)
			if _, err := f.eng.IssueUserOTP(ctx, f.admin, r); field(err) != c.field {
				t.Errorf("%+v: %v, want a %s error", r, err, c.field)
			}
		}
		r := f.req
		r.ApplicationID = "0190b1c2-0000-7000-8000-000000000000"
		if _, err := f.eng.IssueUserOTP(ctx, f.admin, r); !errors.Is(err, engine.ErrUnknownApplication) {
			t.Errorf("unknown application: %v", err)
		}
		// An application key may only act for its own application.
		other, _ := f.eng.CreateApplication(ctx, f.admin, "other")
		otherP := engine.Principal{TenantID: f.admin.TenantID, ApplicationID: other.ID, Role: store.RoleApp}
		if _, err := f.eng.IssueUserOTP(ctx, otherP, f.req); !errors.Is(err, engine.ErrUnknownApplication) {
			t.Errorf("another application's uuid: %v", err)
		}
		r = f.req
		r.UserID = "0190b1c2-0000-7000-8000-000000000000"
		if _, err := f.eng.IssueUserOTP(ctx, f.admin, r); !errors.Is(err, engine.ErrUnknownUser) {
			t.Errorf("unknown user: %v", err)
		}
		adminRole := "admin"
		boss := f.fixture.user(t, "boss", func(in *engine.UserInput) { in.Role = &adminRole })
		r = f.req
		r.UserID = boss.ID
		if _, err := f.eng.IssueUserOTP(ctx, f.admin, r); !errors.Is(err, engine.ErrUserNotEligible) {
			t.Errorf("admin user: %v", err)
		}
		off := false
		if _, err := f.eng.UpdateUser(ctx, f.admin, f.user.ID, engine.UserInput{Enabled: &off}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.eng.IssueUserOTP(ctx, f.admin, f.req); !errors.Is(err, engine.ErrUserNotEligible) {
			t.Errorf("disabled user: %v", err)
		}
		if n := len(f.iam.Requests()); n != 0 {
			t.Errorf("the IAM was asked %d times for requests refused before it", n)
		}
	})
}

// TestDisabledUserFactorsStop: disabling a user stops their OTP for a purpose and their devices
// at once, and enabling them again restores both (SECURITY.md 38).
func TestDisabledUserFactorsStop(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setupIAM(t, b)
		ctx := context.Background()
		otp, err := f.eng.IssueUserOTP(ctx, f.admin, f.req)
		if err != nil {
			t.Fatal(err)
		}
		dev, err := f.eng.EnrollDevice(ctx, f.admin, engine.EnrollRequest{User: engine.UserRef{ID: f.user.ID}, Type: "TOTP"})
		if err != nil {
			t.Fatal(err)
		}
		off, on := false, true
		if _, err := f.eng.UpdateUser(ctx, f.admin, f.user.ID, engine.UserInput{Enabled: &off}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.eng.VerifyUserOTP(ctx, f.admin, f.user.ID, "password-reset", otp.OTP); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("a disabled user's OTP: %v", err)
		}
		code := totpCode(t, dev.URI, f.clk.Now())
		r, err := f.eng.VerifyDevice(ctx, f.admin, engine.DeviceRef{ID: dev.Device.ID}, code)
		if err != nil || r.Success {
			t.Errorf("a disabled user's TOTP device: %+v %v", r, err)
		}
		if _, err := f.eng.UpdateUser(ctx, f.admin, f.user.ID, engine.UserInput{Enabled: &on}); err != nil {
			t.Fatal(err)
		}
		if r, err := f.eng.VerifyUserOTP(ctx, f.admin, f.user.ID, "password-reset", otp.OTP); err != nil || !r.Valid() {
			t.Errorf("re-enabled user's OTP: %+v %v", r, err)
		}
		if r, err := f.eng.VerifyDevice(ctx, f.admin, engine.DeviceRef{ID: dev.Device.ID}, code); err != nil || !r.Success {
			t.Errorf("re-enabled user's device: %+v %v", r, err)
		}
	})
}
