package haventec_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/app"
	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/dialect/haventec"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store/storetest"
	"github.com/otpd/otpd/internal/testiam"
	"github.com/otpd/otpd/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// A requestor token as a customer's IAM (Keycloak here) issues it: a JWT.
const agentToken = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZ2VudCIsInByZWZlcnJlZF91c2VybmFtZSI6ImFnZW50In0.c2lnbmF0dXJlLWJ5dGVz"

type env struct {
	t      *testing.T
	a      *app.App
	srv    *httptest.Server
	clk    *clock.Fake
	admin  string
	iam    *testiam.Server
	appID  string
	appKey string
	userID string
}

func newEnv(t *testing.T, b storetest.Backend) *env {
	t.Helper()
	c := config.Default()
	c.DataDir = t.TempDir()
	if b.Name == "postgres" {
		c.DatabaseURL = b.NewDSN(t)
	}
	k, _ := keys.GenerateMasterKey()
	c.MasterKey = keys.EncodeMasterKey(k)
	clk := clock.NewFake(t0)
	a, err := app.Open(context.Background(), c, slog.New(slog.DiscardHandler), app.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	srv := httptest.NewServer(a.API)
	t.Cleanup(srv.Close)
	e := &env{t: t, a: a, srv: srv, clk: clk, admin: a.AdminKey}
	e.iam = testiam.New(t, "haventec-connect", "iam-client-secret")
	e.iam.SetToken(agentToken, map[string]any{"active": true, "username": "agent",
		"realm_access": map[string]any{"roles": []any{"crm-agent", "otp-requestor"}}})
	app := e.native("POST", "/v1/applications", e.admin, map[string]string{"name": "crm"})
	e.appID, e.appKey = app.body["id"].(string), app.body["api_key"].(string)
	e.configure(map[string]any{"enabled": true, "introspection_url": e.iam.IntrospectURL(), "client_id": "haventec-connect",
		"client_secret": "iam-client-secret", "role_path": "$.realm_access.roles", "allowed_role": "otp-requestor"})
	u := e.native("POST", "/v1/users", e.admin, map[string]string{"login": "customer", "email": "customer@example.com", "phone": "+61412345678"})
	e.userID = u.body["id"].(string)
	return e
}

type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (e *env) do(method, path string, body []byte, headers ...string) resp {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (e *env) native(method, path, key string, body any) resp {
	e.t.Helper()
	b, _ := json.Marshal(body)
	r := e.do(method, path, b, "Content-Type", "application/json", "Authorization", "Bearer "+key)
	if r.status >= 300 {
		e.t.Fatalf("%s %s: %d %s", method, path, r.status, r.raw)
	}
	return r
}

func (e *env) configure(iam map[string]any) {
	e.t.Helper()
	e.native("PUT", "/v1/applications/"+e.appID+"/iam", e.admin, iam)
}

// create is the seed's contract: POST …/iam/user/{userUuid}/otp with x-api-key.
func (e *env) create(userUUID string, body map[string]any) resp {
	e.t.Helper()
	b, _ := json.Marshal(body)
	if body == nil {
		b = nil
	}
	return e.do("POST", "/authenticate/v1-2/iam/user/"+userUUID+"/otp", b, "Content-Type", "application/json", "x-api-key", e.appKey)
}

func (e *env) request() map[string]any {
	return map[string]any{"applicationUuid": e.appID, "purpose": "password-reset", "requestorToken": agentToken, "requestorUsername": "agent"}
}

// fails asserts a Haventec error answer.
func (r resp) fails(t *testing.T, want haventec.Error) {
	t.Helper()
	rs, _ := r.body["responseStatus"].(map[string]any)
	if r.status != want.Status || rs == nil || rs["status"] != "ERROR" || rs["code"] != want.Code || rs["message"] != want.Message || len(r.body) != 1 {
		t.Fatalf("want %d %s %q, got %d %s", want.Status, want.Code, want.Message, r.status, r.raw)
	}
}

// TestContract is the seed's API contract: the request, the answer's fields and types, the IAM
// asked by RFC 7662, and the OTP consumed once through the native API.
func TestContract(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b)
		body := e.request()
		body["ttl"] = 120
		r := e.create(e.userID, body)
		if r.status != 200 {
			t.Fatalf("create: %d %s", r.status, r.raw)
		}
		var keysGot []string
		for k := range r.body {
			keysGot = append(keysGot, k)
		}
		slices.Sort(keysGot)
		if !slices.Equal(keysGot, []string{"dateCreated", "dateExpired", "mobileNumber", "otp", "responseStatus", "ttl", "userEmail"}) {
			t.Errorf("answer members %v", keysGot)
		}
		otp, _ := r.body["otp"].(string)
		if len(otp) != 6 || r.body["dateCreated"] != float64(t0.UnixMilli()) || r.body["dateExpired"] != float64(t0.Add(2*time.Minute).UnixMilli()) ||
			r.body["ttl"] != float64(120) || r.body["userEmail"] != "customer@example.com" || r.body["mobileNumber"] != "+61412345678" ||
			r.body["responseStatus"].(map[string]any)["status"] != "SUCCESS" {
			t.Fatalf("answer: %s", r.raw)
		}
		reqs := e.iam.Requests()
		if len(reqs) != 1 || reqs[0].Token != agentToken || reqs[0].ClientID != "haventec-connect" || reqs[0].ClientSecret != "iam-client-secret" {
			t.Fatalf("introspection: %+v", reqs)
		}
		// Without ttl: the default 300 s.
		other := e.request()
		other["purpose"] = "login"
		if r := e.create(e.userID, other); r.body["ttl"] != float64(300) {
			t.Errorf("default ttl: %s", r.raw)
		}
		// AN-UOTP-1004 while it is valid.
		e.create(e.userID, body).fails(t, haventec.ErrOTPExists)
		// Consumed once, through the native API, for its purpose only.
		verify := func(purpose, otp string) resp {
			b, _ := json.Marshal(map[string]string{"purpose": purpose, "otp": otp})
			return e.do("POST", "/v1/users/"+e.userID+"/otp/verify", b, "Content-Type", "application/json", "Authorization", "Bearer "+e.appKey)
		}
		if r := verify("password-reset", otp); r.status != 200 || r.body["valid"] != true || r.body["status"] != "verified" {
			t.Fatalf("verify: %d %s", r.status, r.raw)
		}
		if r := verify("password-reset", otp); r.status != 200 || r.body["valid"] != false {
			t.Fatalf("second verify: %d %s", r.status, r.raw)
		}
		if r := verify("other-purpose", otp); r.status != 404 {
			t.Errorf("verify for another purpose: %d %s", r.status, r.raw)
		}
		// Used: the next one may be generated; it expires after its ttl.
		r = e.create(e.userID, body)
		if r.status != 200 {
			t.Fatalf("create after use: %d %s", r.status, r.raw)
		}
		e.clk.Advance(2 * time.Minute)
		if r := verify("password-reset", r.body["otp"].(string)); r.body["valid"] != false || r.body["status"] != "expired" {
			t.Errorf("expired OTP: %s", r.raw)
		}
		if r := e.create(e.userID, body); r.status != 200 {
			t.Errorf("create after expiry: %d %s", r.status, r.raw)
		}
	})
}

// TestErrorTable raises every code of the seed's table in its scenario.
func TestErrorTable(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b)
		with := func(k string, v any) map[string]any {
			m := e.request()
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
			return m
		}
		unknownUUID := "9ea02090-0627-42c2-8273-26b7029b62e6"

		e.create("not-a-uuid", e.request()).fails(t, haventec.ErrInvalidUserUUID)
		e.create(e.userID, nil).fails(t, haventec.ErrEmptyRequest)
		e.create(e.userID, map[string]any{}).fails(t, haventec.ErrEmptyRequest)
		e.create(e.userID, with("applicationUuid", "app-1")).fails(t, haventec.ErrInvalidAppUUID)
		e.create(e.userID, with("applicationUuid", nil)).fails(t, haventec.ErrInvalidAppUUID)
		e.create(e.userID, with("requestorUsername", "")).fails(t, haventec.ErrInvalidUsername)
		e.create(e.userID, with("requestorUsername", 42)).fails(t, haventec.ErrInvalidUsername)
		e.create(e.userID, with("purpose", "")).fails(t, haventec.ErrInvalidPurpose)
		e.create(e.userID, with("purpose", "reset my password!")).fails(t, haventec.ErrInvalidPurpose)
		e.create(e.userID, with("ttl", "sixty")).fails(t, haventec.ErrInvalidTTL)
		e.create(e.userID, with("ttl", 1.5)).fails(t, haventec.ErrInvalidTTL)
		e.create(e.userID, with("ttl", -1)).fails(t, haventec.ErrInvalidTTL)
		e.create(e.userID, with("ttl", 5)).fails(t, haventec.ErrInvalidTTL)
		e.create(e.userID, with("ttl", 86400)).fails(t, haventec.ErrInvalidTTL)
		e.create(e.userID, with("requestorToken", "not-a-jwt")).fails(t, haventec.ErrInvalidJWT)
		e.create(e.userID, with("requestorToken", nil)).fails(t, haventec.ErrInvalidJWT)
		e.create(e.userID, with("applicationUuid", unknownUUID)).fails(t, haventec.ErrAppNotFound)
		e.create(unknownUUID, e.request()).fails(t, haventec.ErrUserNotFound)
		// AN-USER-1008: an organisation admin, and a disabled user.
		boss := e.native("POST", "/v1/users", e.admin, map[string]string{"login": "boss", "role": "admin"})
		e.create(boss.body["id"].(string), e.request()).fails(t, haventec.ErrUpdateDenied)
		off := e.native("POST", "/v1/users", e.admin, map[string]any{"login": "left", "enabled": false})
		e.create(off.body["id"].(string), e.request()).fails(t, haventec.ErrUpdateDenied)
		// AN-UOTP-1001: inactive token, missing role, another user's token.
		e.iam.SetToken("eyJ.inactive.t", map[string]any{"active": false})
		e.iam.SetToken("eyJ.norole.t", map[string]any{"active": true, "username": "agent", "realm_access": map[string]any{"roles": []any{"crm-agent"}}})
		e.iam.SetToken("eyJ.other.t", map[string]any{"active": true, "username": "mallory", "realm_access": map[string]any{"roles": []any{"otp-requestor"}}})
		for _, tok := range []string{"eyJ.inactive.t", "eyJ.norole.t", "eyJ.other.t", "eyJ.unknown.t"} {
			e.create(e.userID, with("requestorToken", tok)).fails(t, haventec.ErrNotAllowed)
		}
		if n := len(e.iam.Requests()); n != 4 {
			t.Errorf("the IAM was asked %d times, want 4 (only for requests that passed every other check)", n)
		}
		// AN-OIAM-1001…1007: one misconfiguration at a time.
		full := map[string]any{"enabled": true, "introspection_url": e.iam.IntrospectURL(), "client_id": "haventec-connect",
			"client_secret": "iam-client-secret", "role_path": "$.realm_access.roles", "allowed_role": "otp-requestor"}
		for _, c := range []struct {
			key  string
			val  any
			want haventec.Error
		}{
			{"enabled", false, haventec.ErrIAMNotEnabled},
			{"client_id", "", haventec.ErrIAMClientID},
			{"client_secret", "", haventec.ErrIAMClientSecret},
			{"introspection_url", "", haventec.ErrIAMURL},
			{"role_path", "", haventec.ErrIAMRolePath},
			{"allowed_role", "", haventec.ErrIAMRole},
			{"role_path", "realm_access..roles", haventec.ErrIAMRolePathFormat},
		} {
			cfg := map[string]any{}
			for k, v := range full {
				cfg[k] = v
			}
			cfg[c.key] = c.val
			e.configure(cfg)
			e.create(e.userID, e.request()).fails(t, c.want)
		}
		e.native("DELETE", "/v1/applications/"+e.appID+"/iam", e.admin, nil)
		e.create(e.userID, e.request()).fails(t, haventec.ErrIAMNotEnabled)
		// Authentication (otpd's own code: the seed has none).
		r := e.do("POST", "/authenticate/v1-2/iam/user/"+e.userID+"/otp", []byte(`{}`), "Content-Type", "application/json")
		r.fails(t, haventec.ErrInvalidAPIKey)
		r = e.do("POST", "/authenticate/v1-2/iam/user/"+e.userID+"/otp", []byte(`{}`), "x-api-key", "otpd_0000000000000000_"+strings.Repeat("A", 43))
		r.fails(t, haventec.ErrInvalidAPIKey)
		e.do("POST", "/authenticate/v1-2/iam/user/"+e.userID+"/otp", []byte(`{"purpose":`), "x-api-key", e.appKey).fails(t, haventec.ErrMalformedBody)
		e.do("GET", "/authenticate/v1-2/iam/user/"+e.userID+"/otp", nil, "x-api-key", e.appKey).fails(t, haventec.Error{Code: "OTPD-REQ-1005", Message: "Method not allowed", Status: 405})
		e.do("GET", "/authenticate/v1-2/nothing", nil).fails(t, haventec.ErrNoSuchEndpoint)
		// Another application's key cannot act for this application.
		other := e.native("POST", "/v1/applications", e.admin, map[string]string{"name": "other"})
		b2, _ := json.Marshal(e.request())
		e.do("POST", "/authenticate/v1-2/iam/user/"+e.userID+"/otp", b2, "x-api-key", other.body["api_key"].(string)).fails(t, haventec.ErrAppNotFound)
	})
}

// TestUnreachableIAM: the IAM does not answer (or answers garbage): a clear error, no OTP.
func TestUnreachableIAM(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b)
		e.iam.Force(503, "down for maintenance")
		e.create(e.userID, e.request()).fails(t, haventec.ErrIAMUnavailable)
		e.iam.Force(0, "")
		e.iam.Close()
		e.create(e.userID, e.request()).fails(t, haventec.ErrIAMUnavailable)
		// No OTP was issued: nothing to verify, and the slot is free.
		b2, _ := json.Marshal(map[string]string{"purpose": "password-reset", "otp": "123456"})
		if r := e.do("POST", "/v1/users/"+e.userID+"/otp/verify", b2, "Content-Type", "application/json", "Authorization", "Bearer "+e.admin); r.status != 404 {
			t.Errorf("an OTP exists after a failed introspection: %d %s", r.status, r.raw)
		}
		if r := e.native("GET", "/v1/verifications", e.admin, nil); len(r.body["items"].([]any)) != 0 {
			t.Errorf("sessions after failed introspections: %s", r.raw)
		}
	})
}
