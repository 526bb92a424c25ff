package api

import (
	"net/url"
	"strings"
)

func init() { oapiSurfaces = append(oapiSurfaces, driveAudit) }

// driveAudit provokes every documented response of GET /v1/audit against the document (see
// TestOpenAPIResponsesMatchServer) and checks paging, the action filter, and that the log shows
// no secret.
func driveAudit(e *oapiEnv) {
	t := e.t
	A := e.admin
	app := e.do(oapiCall{method: "POST", path: "/v1/applications", key: A, status: 201, body: `{"name":"audit reader"}`})
	appKey, appSecret := str(app["api_key"]), str(app["client_secret"])
	u := e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 201, body: `{"login":"audited","email":"audited@example.com"}`})
	e.do(oapiCall{method: "PATCH", path: "/v1/users/" + str(u["id"]), key: A, status: 200, body: `{"first_name":"Audrey"}`})

	all := e.do(oapiCall{method: "GET", path: "/v1/audit?limit=500", key: A, status: 200})
	items, _ := all["items"].([]any)
	if len(items) < 3 {
		t.Fatalf("audit log: %v", all)
	}
	newest := items[0].(map[string]any)
	if newest["action"] != "user.update" || newest["target"] != u["id"] || newest["result"] != "ok" || !strings.HasPrefix(str(newest["actor"]), "key:") {
		t.Errorf("newest event: %v", newest)
	}
	raw := strings.ToLower(strings.Join(strings.Fields(strings.ReplaceAll(str(all), "\n", " ")), " "))
	for _, secret := range []string{appKey, appSecret, A} {
		if secret != "" && strings.Contains(raw, strings.ToLower(secret)) {
			t.Errorf("the audit log shows a secret")
		}
	}

	// Pages of one: newest first, no event twice, the whole log in the end.
	seen := map[string]bool{}
	cursor := ""
	for range len(items) + 1 {
		path := "/v1/audit?limit=1"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		page := e.do(oapiCall{method: "GET", path: path, key: A, status: 200})
		for _, it := range page["items"].([]any) {
			id := str(it.(map[string]any)["id"])
			if seen[id] {
				t.Fatalf("event %s on two pages", id)
			}
			seen[id] = true
		}
		if cursor = str(page["next_cursor"]); cursor == "" {
			break
		}
	}
	if len(seen) != len(items) {
		t.Errorf("paging saw %d events, the log has %d", len(seen), len(items))
	}

	created := e.do(oapiCall{method: "GET", path: "/v1/audit?action=user.create", key: A, status: 200})
	for _, it := range created["items"].([]any) {
		if it.(map[string]any)["action"] != "user.create" {
			t.Errorf("action filter let through %v", it)
		}
	}
	if len(created["items"].([]any)) == 0 {
		t.Errorf("no user.create events")
	}

	for _, q := range []string{"limit=0", "limit=501", "limit=all"} {
		e.do(oapiCall{method: "GET", path: "/v1/audit?" + q, key: A, status: 400, code: "invalid_request", req: reqInvalid})
	}
	for _, q := range []string{"cursor=%21%21", "cursor=" + url.QueryEscape(encodeCursor("no-time")), "action=" + url.QueryEscape("user create")} {
		e.do(oapiCall{method: "GET", path: "/v1/audit?" + q, key: A, status: 400, code: "invalid_request", req: reqSkip})
	}
	e.do(oapiCall{method: "GET", path: "/v1/audit", key: appKey, status: 403, code: "forbidden"})
	e.do(oapiCall{method: "GET", path: "/v1/audit", status: 401, code: "unauthorized"})
}
