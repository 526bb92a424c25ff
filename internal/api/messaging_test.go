package api

import (
	"fmt"
	"strings"
)

// The messaging endpoints in TestOpenAPIResponsesMatchServer: every documented response of
// /v1/settings/messaging, /v1/prices and /v1/templates, validated against the document.
func init() { oapiSurfaces = append(oapiSurfaces, driveMessaging) }

func driveMessaging(e *oapiEnv) {
	t := e.t
	A := e.admin
	big := `{"name":"` + strings.Repeat("x", maxBody) + `"}`
	textPlain := map[string]string{"Content-Type": "text/plain"}
	app := e.do(oapiCall{method: "POST", path: "/v1/applications", key: A, status: 201, body: `{"name":"messaging test"}`})
	K := str(app["api_key"])

	// ---- settings ----
	const settings = "/v1/settings/messaging"
	s := e.do(oapiCall{method: "GET", path: settings, key: A, status: 200})
	if fmt.Sprint(s["allowed_countries"]) != "[]" || s["min_code_length"] != 6.0 || s["currency"] != "EUR" ||
		s["pending_limit"] != 1.0 || s["daily_spend_cap"] != "100" || fmt.Sprint(s["overrides"]) != "[]" {
		t.Errorf("default settings: %v", s)
	}
	e.do(oapiCall{method: "GET", path: settings, key: K, status: 403, code: "forbidden"})
	s = e.do(oapiCall{method: "PATCH", path: settings, key: A, status: 200,
		body: `{"allowed_countries":["au"," fr","AU"],"moderation":true,"pending_limit":2,"prefix_limit":{"count":5,"window_seconds":600},"dial_code_daily_caps":{"44":10},"daily_spend_cap":"12.5","currency":"USD"}`})
	if fmt.Sprint(s["allowed_countries"]) != "[AU FR]" || s["moderation"] != true || s["currency"] != "USD" ||
		fmt.Sprint(s["prefix_limit"]) != "map[count:5 window_seconds:600]" || fmt.Sprint(s["dial_code_daily_caps"]) != "map[44:10]" {
		t.Errorf("patched settings: %v", s)
	}
	s = e.do(oapiCall{method: "PATCH", path: settings, key: A, status: 200, body: `{"currency":null,"pending_limit":null}`})
	if s["currency"] != "EUR" || s["pending_limit"] != 1.0 || s["moderation"] != true || strings.Contains(fmt.Sprint(s["overrides"]), "currency") {
		t.Errorf("settings after null: %v", s)
	}
	for _, b := range []string{`{"unknown":1}`, `{"moderation":"yes"}`, `{"prefix_limit":{"count":-1,"window_seconds":10}}`} {
		e.do(oapiCall{method: "PATCH", path: settings, key: A, status: 400, code: "invalid_request", body: b, req: reqInvalid})
	}
	for _, b := range []string{`{"min_code_length":2}`, `{"allowed_countries":["XX"]}`, `{"daily_spend_cap":"-1"}`, `{"currency":"euro"}`, `{"dial_code_daily_caps":{"999":1}}`} {
		e.do(oapiCall{method: "PATCH", path: settings, key: A, status: 400, code: "invalid_request", body: b, req: reqSkip})
	}
	e.do(oapiCall{method: "PATCH", path: settings, key: A, status: 400, code: "invalid_json", body: `[]`, req: reqInvalid})
	e.do(oapiCall{method: "PATCH", path: settings, key: K, status: 403, code: "forbidden", body: `{"moderation":false}`})
	e.do(oapiCall{method: "PATCH", path: settings, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "PATCH", path: settings, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})

	// ---- prices ----
	p := e.do(oapiCall{method: "PUT", path: "/v1/prices/sms/au", key: A, status: 200, body: `{"price":"0.0642900"}`})
	if p["country"] != "AU" || p["price"] != "0.06429" {
		t.Errorf("price: %v", p)
	}
	e.do(oapiCall{method: "PUT", path: "/v1/prices/viber/FR", key: A, status: 200, body: `{"price":"1"}`})
	if l := e.do(oapiCall{method: "GET", path: "/v1/prices", key: A, status: 200}); fmt.Sprint(l["currency"]) != "EUR" || len(l["items"].([]any)) != 2 {
		t.Errorf("price list: %v", l)
	}
	e.do(oapiCall{method: "GET", path: "/v1/prices", key: K, status: 403, code: "forbidden"})
	e.do(oapiCall{method: "PUT", path: "/v1/prices/sms/AU", key: A, status: 400, code: "invalid_request", body: `{"price":"1,5"}`, req: reqInvalid})
	e.do(oapiCall{method: "PUT", path: "/v1/prices/fax/AU", key: A, status: 400, code: "invalid_request", body: `{"price":"1"}`, req: reqInvalid})
	e.do(oapiCall{method: "PUT", path: "/v1/prices/sms/XX", key: A, status: 400, code: "invalid_request", body: `{"price":"1"}`, req: reqSkip})
	e.do(oapiCall{method: "PUT", path: "/v1/prices/sms/AU", key: A, status: 400, code: "invalid_json", body: `{"price":0.5}`, req: reqInvalid})
	e.do(oapiCall{method: "PUT", path: "/v1/prices/sms/AU", key: K, status: 403, code: "forbidden", body: `{"price":"1"}`})
	e.do(oapiCall{method: "PUT", path: "/v1/prices/sms/AU", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "PUT", path: "/v1/prices/sms/AU", key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{"price":"1"}`, req: reqInvalid})
	e.do(oapiCall{method: "DELETE", path: "/v1/prices/viber/fr", key: A, status: 204})
	e.do(oapiCall{method: "DELETE", path: "/v1/prices/viber/FR", key: A, status: 404, code: "not_found"})
	e.do(oapiCall{method: "DELETE", path: "/v1/prices/fax/FR", key: A, status: 400, code: "invalid_request", req: reqInvalid})
	e.do(oapiCall{method: "DELETE", path: "/v1/prices/sms/AU", key: K, status: 403, code: "forbidden"})

	// ---- templates (moderation is on from above) ----
	tp := e.do(oapiCall{method: "POST", path: "/v1/templates", key: K, status: 201,
		body: `{"name":"login","text":"Your login code: {code2fa}","countries":["au"]}`})
	tpPath := fmt.Sprintf("/v1/templates/%d", num(tp["id"]))
	if tp["status"] != "requested" || fmt.Sprint(tp["countries"]) != "[AU]" || tp["default"] != false {
		t.Errorf("created template: %v", tp)
	}
	for _, b := range []string{`{"name":"x2","text":"no code"}`, `{"name":"x3","text":"{code2fa} {code2fa}"}`,
		`{"name":"x4","text":"{code2fa}","countries":["XX"]}`, `{"name":"no","text":"{code2fa}"}`} {
		e.do(oapiCall{method: "POST", path: "/v1/templates", key: A, status: 400, code: "invalid_request", body: b, req: reqSkip})
	}
	e.do(oapiCall{method: "POST", path: "/v1/templates", key: A, status: 400, code: "invalid_request", body: `{"text":"{code2fa}"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/templates", key: A, status: 400, code: "invalid_json", body: `{"name":"x","text":"{code2fa}","channel":"sms"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/templates", key: A, status: 409, code: "conflict", body: `{"name":"login","text":"{code2fa}"}`})
	e.do(oapiCall{method: "POST", path: "/v1/templates", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: "/v1/templates", key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})

	list := e.do(oapiCall{method: "GET", path: "/v1/templates", key: K, status: 200})
	var defPath string
	for _, it := range list["items"].([]any) {
		if m := it.(map[string]any); m["default"] == true {
			defPath = fmt.Sprintf("/v1/templates/%d", num(m["id"]))
			if m["text"] != "Your code is {code2fa}" || m["status"] != "approved" {
				t.Errorf("default template: %v", m)
			}
		}
	}
	if defPath == "" || num(list["total"]) != 2 {
		t.Fatalf("template list: %v", list)
	}
	if l := e.do(oapiCall{method: "GET", path: "/v1/templates?status=requested&limit=1&offset=0", key: A, status: 200}); num(l["total"]) != 1 {
		t.Errorf("requested templates: %v", l)
	}
	for _, q := range []string{"status=x", "limit=0", "limit=501", "offset=-1"} {
		e.do(oapiCall{method: "GET", path: "/v1/templates?" + q, key: A, status: 400, code: "invalid_request", req: reqInvalid})
	}
	e.do(oapiCall{method: "GET", path: tpPath, key: K, status: 200})
	e.do(oapiCall{method: "GET", path: "/v1/templates/999999", key: A, status: 404, code: "not_found"})

	if v := e.do(oapiCall{method: "POST", path: tpPath + "/approve", key: A, status: 200}); v["status"] != "approved" {
		t.Errorf("approved: %v", v)
	}
	e.do(oapiCall{method: "POST", path: tpPath + "/approve", key: K, status: 403, code: "forbidden"})
	e.do(oapiCall{method: "POST", path: tpPath + "/approve", key: A, status: 400, code: "invalid_json", body: `{"x":1}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: tpPath + "/approve", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: tpPath + "/approve", key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/templates/999999/approve", key: A, status: 404, code: "not_found"})
	// With moderation on, a changed text goes back to requested.
	if v := e.do(oapiCall{method: "PATCH", path: tpPath, key: A, status: 200, body: `{"text":"Code {code2fa}","name":null}`}); v["status"] != "requested" || v["name"] != "login" {
		t.Errorf("patched: %v", v)
	}
	e.do(oapiCall{method: "PATCH", path: tpPath, key: A, status: 400, code: "invalid_request", body: `{"text":"no code"}`, req: reqSkip})
	e.do(oapiCall{method: "PATCH", path: tpPath, key: A, status: 400, code: "invalid_json", body: `{"status":"approved"}`, req: reqInvalid})
	e.do(oapiCall{method: "PATCH", path: tpPath, key: K, status: 403, code: "forbidden", body: `{}`})
	e.do(oapiCall{method: "PATCH", path: "/v1/templates/999999", key: A, status: 404, code: "not_found", body: `{}`})
	e.do(oapiCall{method: "PATCH", path: defPath, key: A, status: 409, code: "conflict", body: `{"text":"Hi {code2fa}"}`})
	e.do(oapiCall{method: "PATCH", path: tpPath, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "PATCH", path: tpPath, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})

	if v := e.do(oapiCall{method: "POST", path: tpPath + "/reject", key: A, status: 200, body: `{}`}); v["status"] != "rejected" {
		t.Errorf("rejected: %v", v)
	}
	e.do(oapiCall{method: "POST", path: defPath + "/reject", key: A, status: 409, code: "conflict"})
	e.do(oapiCall{method: "POST", path: tpPath + "/reject", key: K, status: 403, code: "forbidden"})
	e.do(oapiCall{method: "POST", path: tpPath + "/reject", key: A, status: 400, code: "invalid_json", body: `[]`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: tpPath + "/reject", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: tpPath + "/reject", key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/templates/x/reject", key: A, status: 404, code: "not_found", req: reqInvalid})

	e.do(oapiCall{method: "DELETE", path: defPath, key: A, status: 409, code: "conflict"})
	e.do(oapiCall{method: "DELETE", path: tpPath, key: K, status: 204})
	e.do(oapiCall{method: "DELETE", path: tpPath, key: A, status: 404, code: "not_found"})
	if v := e.do(oapiCall{method: "GET", path: tpPath, key: A, status: 200}); v["status"] != "deleted" {
		t.Errorf("deleted template: %v", v)
	}
	// The settings back to the deployment's defaults, for whatever runs next.
	e.do(oapiCall{method: "PATCH", path: settings, key: A, status: 200,
		body: `{"allowed_countries":null,"moderation":null,"prefix_limit":null,"dial_code_daily_caps":null,"daily_spend_cap":null}`})
}
