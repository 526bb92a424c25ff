package api

import (
	"encoding/base64"
	"log/slog"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/otp"
	"github.com/otpd/otpd/internal/otpauth"
)

func init() { oapiSurfaces = append(oapiSurfaces, driveDevices) }

// driveDevices provokes every documented response of the device endpoints and validates them
// against the document (see TestOpenAPIResponsesMatchServer).
func driveDevices(e *oapiEnv) {
	t := e.t
	A := e.admin
	big := `{"name":"` + strings.Repeat("x", maxBody) + `"}`
	textPlain := map[string]string{"Content-Type": "text/plain"}
	app := e.do(oapiCall{method: "POST", path: "/v1/applications", key: A, status: 201, body: `{"name":"devices"}`})
	appKey := str(app["api_key"])
	u := e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 201, body: `{"login":"dev-user","email":"dev@example.com"}`})
	base := "/v1/users/" + str(u["id"]) + "/devices"
	nobody := "/v1/users/0190b1c2-0000-7000-8000-000000000000/devices"

	// enrol
	totp := e.do(oapiCall{method: "POST", path: base, key: A, status: 201,
		body: `{"type":"totp","name":"Phone","algorithm":"SHA256","digits":8,"period_seconds":30}`})
	png, err := base64.StdEncoding.DecodeString(str(totp["qr_png"]))
	if !strings.HasPrefix(str(totp["uri"]), "otpauth://totp/otpd:dev-user?") || err != nil || len(png) < 100 || totp["status"] != "created" {
		t.Errorf("enrol TOTP: %v", totp)
	}
	dev := base + "/" + str(totp["id"])
	imported := e.do(oapiCall{method: "POST", path: "/v1/users/login:dev-user/devices", key: A, status: 201,
		body: `{"type":"HOTP","secret":"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"}`})
	if imported["uri"] != nil || imported["qr_png"] != nil {
		t.Errorf("an imported seed was shown: %v", imported)
	}
	mail := e.do(oapiCall{method: "POST", path: base, key: appKey, status: 201, body: `{"type":"EMAIL","email":"Dev.Work@Example.com"}`})
	sms := e.do(oapiCall{method: "POST", path: base, key: A, status: 201, body: `{"type":"SMS","phone":"+34 666 555 444"}`})
	pin := e.do(oapiCall{method: "POST", path: base, key: A, status: 201, body: `{"type":"PIN","pin":"2468013579"}`})
	for _, b := range []string{`{"type":"FAX"}`, `{"type":"TOTP","digits":9}`, `{"type":"PIN","pin":"123"}`} {
		e.do(oapiCall{method: "POST", path: base, key: A, status: 400, code: "invalid_request", body: b, req: reqInvalid})
	}
	for _, b := range []string{`{"type":"SMS"}`, `{"type":"EMAIL","email":"nope"}`, `{"type":"TOTP","secret":"AAAA"}`, `{"type":"TOTP","secret":"!!"}`, `{"type":"SMS","phone":"12"}`} {
		e.do(oapiCall{method: "POST", path: base, key: A, status: 400, code: "invalid_request", body: b, req: reqSkip})
	}
	e.do(oapiCall{method: "POST", path: base, key: A, status: 400, code: "invalid_json", body: `{"type":"TOTP","colour":"red"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: nobody, key: A, status: 404, code: "not_found", body: `{"type":"TOTP"}`})
	e.do(oapiCall{method: "POST", path: base, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: base, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{"type":"TOTP"}`, req: reqInvalid})

	// list, get
	if l := e.do(oapiCall{method: "GET", path: base, key: A, status: 200}); len(l["items"].([]any)) != 5 {
		t.Errorf("list: %v", l)
	}
	e.do(oapiCall{method: "GET", path: nobody, key: A, status: 404, code: "not_found"})
	e.do(oapiCall{method: "GET", path: dev, key: A, status: 200})
	e.do(oapiCall{method: "GET", path: base + "/0190b1c2-0000-7000-8000-000000000000", key: A, status: 404, code: "not_found"})
	e.do(oapiCall{method: "GET", path: "/v1/users/login:nobody/devices/" + str(totp["id"]), key: A, status: 404, code: "not_found"})

	// verify: the right code once, then a replay; a wrong one; a malformed one
	k, _ := otpauth.Parse(str(totp["uri"]))
	code, _, _ := otp.TOTP(k.Secret, e.clk.Now(), 30*time.Second, 8, otp.SHA256)
	if r := e.do(oapiCall{method: "POST", path: dev + "/verify", key: A, status: 200, body: `{"code":"` + code + `"}`}); r["success"] != true || r["locked"] != false || num(r["attempts_left"]) != 5 {
		t.Errorf("right code: %v", r)
	}
	if r := e.do(oapiCall{method: "POST", path: dev + "/verify", key: A, status: 200, body: `{"code":"` + code + `"}`}); r["success"] != false {
		t.Errorf("replay: %v", r)
	}
	if r := e.do(oapiCall{method: "POST", path: dev + "/verify", key: A, status: 200, body: `{"code":"` + otherCode(code) + `"}`}); r["success"] != false || num(r["attempts_left"]) != 4 {
		t.Errorf("wrong code: %v", r)
	}
	e.do(oapiCall{method: "POST", path: dev + "/verify", key: A, status: 400, code: "malformed_code", body: `{"code":"123456"}`, req: reqSkip})
	e.do(oapiCall{method: "POST", path: dev + "/verify", key: A, status: 400, code: "invalid_json", body: `{"code":12345678}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: base + "/0190b1c2-0000-7000-8000-000000000000/verify", key: A, status: 404, code: "not_found", body: `{"code":"123456"}`})
	e.do(oapiCall{method: "POST", path: dev + "/verify", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: dev + "/verify", key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{"code":"1"}`, req: reqInvalid})

	// resync (HOTP, RFC 4226 Appendix D codes 20 and 21 of the imported seed)
	hdev := base + "/" + str(imported["id"])
	c20, _ := otp.HOTP([]byte("12345678901234567890"), 20, 6, otp.SHA1)
	c21, _ := otp.HOTP([]byte("12345678901234567890"), 21, 6, otp.SHA1)
	if r := e.do(oapiCall{method: "POST", path: hdev + "/resync", key: A, status: 200, body: `{"code1":"` + c20 + `","code2":"` + c21 + `"}`}); r["success"] != true {
		t.Errorf("resync: %v", r)
	}
	e.do(oapiCall{method: "POST", path: dev + "/resync", key: A, status: 400, code: "invalid_request", body: `{"code1":"12345678","code2":"12345678"}`})
	e.do(oapiCall{method: "POST", path: hdev + "/resync", key: A, status: 400, code: "malformed_code", body: `{"code1":"1","code2":"2"}`})
	e.do(oapiCall{method: "POST", path: hdev + "/resync", key: A, status: 400, code: "invalid_json", body: `{"code1":"1"} []`, req: reqSkip})
	e.do(oapiCall{method: "POST", path: base + "/0190b1c2-0000-7000-8000-000000000000/resync", key: A, status: 404, code: "not_found", body: `{"code1":"123456","code2":"123456"}`})
	e.do(oapiCall{method: "POST", path: hdev + "/resync", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: hdev + "/resync", key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})

	// challenge: EMAIL sends, a second one within the cooldown is refused, PIN sends nothing
	mdev := base + "/" + str(mail["id"])
	if r := e.do(oapiCall{method: "POST", path: mdev + "/challenge", key: A, status: 200, body: `{"client_ip":"198.51.100.7"}`}); r["sent"] != true || r["target"] != "Email message to de*****@ex*****.co*" || r["expires_at"] == nil {
		t.Errorf("email challenge: %v", r)
	}
	e.do(oapiCall{method: "POST", path: mdev + "/challenge", key: A, status: 429, code: "rate_limited"})
	if r := e.do(oapiCall{method: "POST", path: base + "/" + str(pin["id"]) + "/challenge", key: A, status: 200}); r["sent"] != false {
		t.Errorf("pin challenge: %v", r)
	}
	e.do(oapiCall{method: "POST", path: mdev + "/challenge", key: A, status: 400, code: "invalid_json", body: `{"to":"x"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: base + "/0190b1c2-0000-7000-8000-000000000000/challenge", key: A, status: 404, code: "not_found"})
	e.do(oapiCall{method: "POST", path: mdev + "/challenge", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: mdev + "/challenge", key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})
	// No SMS provider on a second server over the same database: channel_unavailable.
	kr, _ := keys.NewKeyring(make([]byte, keys.MasterKeySize))
	bare, err := engine.New(engine.Options{Store: e.st, Keys: kr, Clock: e.clk})
	if err != nil {
		t.Fatal(err)
	}
	srv, other := e.srv, httptest.NewServer(New(Options{Engine: bare, Logger: slog.New(slog.DiscardHandler)}))
	e.srv = other
	e.do(oapiCall{method: "POST", path: base + "/" + str(sms["id"]) + "/challenge", key: A, status: 422, code: "channel_unavailable"})
	e.srv = srv
	other.Close()

	// patch, lock, unlock
	e.do(oapiCall{method: "PATCH", path: dev, key: A, status: 200, body: `{"name":"Work phone","status":"locked"}`})
	if r := e.do(oapiCall{method: "POST", path: dev + "/verify", key: A, status: 200, body: `{"code":"` + code + `"}`}); r["locked"] != true || num(r["attempts_left"]) != 0 {
		t.Errorf("verify while locked: %v", r)
	}
	e.do(oapiCall{method: "POST", path: dev + "/challenge", key: A, status: 409, code: "conflict"})
	e.do(oapiCall{method: "PATCH", path: dev, key: appKey, status: 403, code: "forbidden", body: `{"status":"validated"}`})
	e.do(oapiCall{method: "POST", path: dev + "/unlock", key: appKey, status: 403, code: "forbidden"})
	if r := e.do(oapiCall{method: "POST", path: dev + "/unlock", key: A, status: 200, body: `{}`}); r["status"] != "validated" || num(r["fails"]) != 0 {
		t.Errorf("unlock: %v", r)
	}
	e.do(oapiCall{method: "POST", path: dev + "/unlock", key: A, status: 400, code: "invalid_json", body: `{"force":true}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: base + "/0190b1c2-0000-7000-8000-000000000000/unlock", key: A, status: 404, code: "not_found"})
	e.do(oapiCall{method: "POST", path: dev + "/unlock", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: dev + "/unlock", key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})
	e.do(oapiCall{method: "PATCH", path: dev, key: A, status: 400, code: "invalid_request", body: `{"status":"gone"}`, req: reqInvalid})
	e.do(oapiCall{method: "PATCH", path: dev, key: A, status: 400, code: "invalid_request", body: `{"phone":"+34666555444"}`, req: reqSkip})
	e.do(oapiCall{method: "PATCH", path: dev, key: A, status: 400, code: "invalid_json", body: `{"type":"SMS"}`, req: reqInvalid})
	e.do(oapiCall{method: "PATCH", path: base + "/0190b1c2-0000-7000-8000-000000000000", key: A, status: 404, code: "not_found", body: `{"name":"x"}`})
	e.do(oapiCall{method: "PATCH", path: dev, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "PATCH", path: dev, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})

	// delete
	e.do(oapiCall{method: "DELETE", path: dev, key: A, status: 204})
	e.do(oapiCall{method: "DELETE", path: dev, key: A, status: 404, code: "not_found"})

}
