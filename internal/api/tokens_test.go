package api

import (
	"context"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/store"
)

func init() { oapiSurfaces = append(oapiSurfaces, driveTokenEndpoints) }

// driveTokenEndpoints provokes every documented response of the token endpoints against the
// document (see TestOpenAPIResponsesMatchServer).
func driveTokenEndpoints(e *oapiEnv) {
	t := e.t
	ctx := context.Background()
	A := e.admin
	big := `{"login":"` + strings.Repeat("x", maxBody) + `"}`
	textPlain := map[string]string{"Content-Type": "text/plain"}
	app := e.do(oapiCall{method: "POST", path: "/v1/applications", key: A, status: 201, body: `{"name":"token surfaces"}`})
	appKey, appID := str(app["api_key"]), str(app["id"])
	u := e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 201, body: `{"login":"tok-user","email":"tok@example.com"}`})
	uID := str(u["id"])

	// ---- login tokens ----
	lt := e.do(oapiCall{method: "POST", path: "/v1/login-tokens", key: A, status: 201, body: `{"login":"tok-user"}`})
	if lt["purpose"] != "user_login" || len(str(lt["token"])) < 43 || lt["user_id"] != uID {
		t.Errorf("login token: %v", lt)
	}
	vt := e.do(oapiCall{method: "POST", path: "/v1/login-tokens", key: A, status: 201,
		body: `{"purpose":"verify","user_id":"` + uID + `","audit_data":{"ticket":"T-9"}}`})
	e.do(oapiCall{method: "POST", path: "/v1/login-tokens", key: A, status: 400, code: "invalid_request", body: `{"purpose":"nope","login":"tok-user"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/login-tokens", key: A, status: 400, code: "invalid_request", body: `{}`, req: reqSkip})
	e.do(oapiCall{method: "POST", path: "/v1/login-tokens", key: A, status: 400, code: "invalid_json", body: `{"login":"tok-user","scope":"all"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/login-tokens", key: A, status: 404, code: "not_found", body: `{"login":"nobody"}`})
	e.do(oapiCall{method: "POST", path: "/v1/login-tokens", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: "/v1/login-tokens", key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{"login":"tok-user"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 201, body: `{"login":"tok-off","enabled":false}`})
	e.do(oapiCall{method: "POST", path: "/v1/login-tokens", key: A, status: 409, code: "conflict", body: `{"login":"tok-off"}`})

	red := "/v1/login-tokens/redeem"
	if r := e.do(oapiCall{method: "POST", path: red, key: A, status: 200, body: `{"token":"` + str(vt["token"]) + `"}`}); r["session"] != nil {
		t.Errorf("a verify token opened a session: %v", r)
	}
	if r := e.do(oapiCall{method: "POST", path: red, key: A, status: 200, body: `{"token":"` + str(lt["token"]) + `","purpose":"user_login"}`}); str(r["session"]) == "" {
		t.Errorf("a login token opened no session: %v", r)
	}
	e.do(oapiCall{method: "POST", path: red, key: A, status: 400, code: "invalid_request", body: `{"token":"` + str(lt["token"]) + `","purpose":"user_login"}`})
	e.do(oapiCall{method: "POST", path: red, key: A, status: 400, code: "invalid_json", body: `{"token":"x","user":"y"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: red, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: red, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{"token":"x"}`, req: reqInvalid})

	// ---- token settings ----
	ts := "/v1/token-settings"
	if r := e.do(oapiCall{method: "GET", path: ts, key: A, status: 200}); len(r["redirect_targets"].([]any)) != 0 {
		t.Errorf("fresh settings: %v", r)
	}
	r := e.do(oapiCall{method: "PUT", path: ts, key: A, status: 200,
		body: `{"redirect_targets":["HTTPS://App.Example.com/portal"],"self_service":{"require_api_key":false,"hosts":["Login.Example.com"]}}`})
	if r["redirect_targets"].([]any)[0] != "https://app.example.com/portal" {
		t.Errorf("stored settings: %v", r)
	}
	e.do(oapiCall{method: "GET", path: ts, key: A, status: 200})
	e.do(oapiCall{method: "PUT", path: ts, key: A, status: 400, code: "invalid_request", body: `{"redirect_targets":["javascript:alert(1)"]}`})
	e.do(oapiCall{method: "PUT", path: ts, key: A, status: 400, code: "invalid_json", body: `{"targets":[]}`, req: reqInvalid})
	e.do(oapiCall{method: "PUT", path: ts, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "PUT", path: ts, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})
	e.do(oapiCall{method: "GET", path: ts, key: appKey, status: 403, code: "forbidden"})
	e.do(oapiCall{method: "PUT", path: ts, key: appKey, status: 403, code: "forbidden", body: `{}`})
	// A host another tenant claims.
	other := &store.Tenant{Name: "other", CreatedAt: e.clk.Now()}
	if err := e.st.CreateTenant(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := e.st.InTx(ctx, func(q store.Queries) error {
		return q.PutTokenSettings(ctx, &store.TokenSettings{TenantID: other.ID, SelfServiceHosts: []string{"taken.example.com"}, UpdatedAt: e.clk.Now()})
	}); err != nil {
		t.Fatal(err)
	}
	e.do(oapiCall{method: "PUT", path: ts, key: A, status: 409, code: "conflict", body: `{"self_service":{"hosts":["taken.example.com"]}}`})

	// ---- IAM settings ----
	iam := "/v1/applications/" + appID + "/iam"
	if r := e.do(oapiCall{method: "GET", path: iam, key: A, status: 200}); r["ready"] != false || len(r["problems"].([]any)) == 0 {
		t.Errorf("fresh IAM settings: %v", r)
	}
	full := `{"enabled":true,"introspection_url":"https://iam.example.com/oauth2/introspect","client_id":"otpd","client_secret":"iam-secret-value","role_path":"$.realm_access.roles","allowed_role":"otp-issuer"}`
	if r := e.do(oapiCall{method: "PUT", path: iam, key: A, status: 200, body: full}); r["client_secret"] != maskedSecret || r["ready"] != true {
		t.Errorf("stored IAM settings: %v", r)
	}
	if r := e.do(oapiCall{method: "GET", path: iam, key: A, status: 200}); r["client_secret"] != maskedSecret || strings.Contains(strings.Join(keysOf(r), ","), "iam-secret-value") {
		t.Errorf("read back IAM settings: %v", r)
	}
	// The masked value sent back keeps the secret.
	if r := e.do(oapiCall{method: "PUT", path: iam, key: A, status: 200, body: strings.Replace(full, "iam-secret-value", maskedSecret, 1)}); r["client_secret"] != maskedSecret {
		t.Errorf("masked secret round trip: %v", r)
	}
	e.do(oapiCall{method: "PUT", path: iam, key: A, status: 400, code: "invalid_request", body: `{"enabled":true,"introspection_url":"http://iam.example.com/introspect"}`})
	e.do(oapiCall{method: "PUT", path: iam, key: A, status: 400, code: "invalid_json", body: `{"secret":"x"}`, req: reqInvalid})
	e.do(oapiCall{method: "PUT", path: iam, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "PUT", path: iam, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})
	e.do(oapiCall{method: "GET", path: iam, key: appKey, status: 403, code: "forbidden"})
	e.do(oapiCall{method: "PUT", path: iam, key: appKey, status: 403, code: "forbidden", body: `{}`})
	e.do(oapiCall{method: "DELETE", path: iam, key: appKey, status: 403, code: "forbidden"})
	nope := "/v1/applications/0190b1c2-0000-7000-8000-000000000000/iam"
	e.do(oapiCall{method: "GET", path: nope, key: A, status: 404, code: "not_found"})
	e.do(oapiCall{method: "PUT", path: nope, key: A, status: 404, code: "not_found", body: `{}`})
	e.do(oapiCall{method: "DELETE", path: nope, key: A, status: 404, code: "not_found"})
	e.do(oapiCall{method: "DELETE", path: iam, key: A, status: 204})
	e.do(oapiCall{method: "DELETE", path: iam, key: A, status: 404, code: "not_found"})

	// ---- user OTP verification: a user OTP session put in place through the store ----
	tn, err := e.st.GetTenantByName(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	now := e.clk.Now()
	ch := &store.Challenge{TenantID: tn.ID, Channel: "none", Recipient: "user:" + uID, Purpose: "reset",
		CodeHash: []byte("not a hash of anything"), CodeLength: 6, Status: store.StatusPending, MaxAttempts: 3,
		Sends: 1, MaxSends: 1, LastSentAt: now, TTL: 5 * time.Minute, UserID: uID, Surface: "user_otp", CreatedAt: now, ExpiresAt: now.Add(5 * time.Minute)}
	if err := e.st.InTx(ctx, func(q store.Queries) error {
		if err := q.CreateChallenge(ctx, ch); err != nil {
			return err
		}
		_, err := q.ClaimUserOTPSlot(ctx, &store.UserOTPSlot{TenantID: tn.ID, UserID: uID, Purpose: "reset", ChallengeID: ch.ID, ExpiresAt: ch.ExpiresAt}, now)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	vp := "/v1/users/" + uID + "/otp/verify"
	if r := e.do(oapiCall{method: "POST", path: vp, key: A, status: 200, body: `{"purpose":"reset","otp":"123456"}`}); r["valid"] != false || num(r["attempts_left"]) != 2 {
		t.Errorf("wrong OTP: %v", r)
	}
	e.do(oapiCall{method: "POST", path: vp, key: A, status: 400, code: "malformed_code", body: `{"purpose":"reset","otp":"12ab56"}`, req: reqSkip})
	e.do(oapiCall{method: "POST", path: vp, key: A, status: 400, code: "invalid_request", body: `{"purpose":"bad purpose!","otp":"123456"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: vp, key: A, status: 400, code: "invalid_json", body: `{"purpose":"reset","otp":"123456","user":"x"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: vp, key: A, status: 404, code: "not_found", body: `{"purpose":"login","otp":"123456"}`})
	e.do(oapiCall{method: "POST", path: vp, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: vp, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{"purpose":"reset","otp":"123456"}`, req: reqInvalid})
}

func keysOf(m map[string]any) []string {
	var out []string
	for k, v := range m {
		out = append(out, k, str(v))
	}
	return out
}
