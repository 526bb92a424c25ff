package scim_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/storetest"
)

// population enrols a known set of devices through SCIM and returns their ids by a short name.
func population(t *testing.T, e *env) map[string]string {
	t.Helper()
	for _, u := range []string{"ana", "ben", "x' OR '1'='1"} {
		if r := e.do("POST", "/Users", map[string]any{"userName": u}); r.status != 201 {
			t.Fatalf("user %s: %d %s", u, r.status, r.raw)
		}
	}
	ids := map[string]string{}
	add := func(key, body string) {
		r := e.do("POST", "/OtpDevice", body)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", key, r.status, r.raw)
		}
		ids[key] = id(r)
		e.clk.Advance(time.Minute)
	}
	add("anaTOTP", `{"type":"TOTP","user":"ana","name":"Phone of Ana"}`)
	add("anaSMS", `{"type":"SMS","user":"ana","phone":"+34666555444"}`)
	add("anaPIN", `{"type":"PIN","user":"ana","pin":"246813579"}`)
	add("benTOTP", `{"type":"TOTP","user":"ben"}`)
	add("benEMAIL", `{"type":"EMAIL","user":"ben","email":"ben@example.org"}`)
	add("benHOTP", `{"type":"HOTP","user":"ben","name":"Token 'quoted' \"double\" 100%"}`)
	add("evil", `{"type":"TOTP","user":"x' OR '1'='1"}`)
	// ben's TOTP: two failures; ana's PIN: locked; ben's EMAIL: disabled.
	for range 2 {
		e.do("POST", "/OtpDevice/"+ids["benTOTP"]+"/responseChallenge", `{"pin":"000000"}`)
	}
	for range 5 {
		e.do("POST", "/OtpDevice/"+ids["anaPIN"]+"/responseChallenge", `{"pin":"999999999"}`)
	}
	e.do("PATCH", "/OtpDevice/"+ids["benEMAIL"], `{"Operations":[{"op":"replace","path":"status","value":"D"}]}`)
	return ids
}

// list returns the ids a filtered list answers, failing on anything but 200.
func (e *env) list(t *testing.T, query string) []string {
	t.Helper()
	r := e.do("GET", "/OtpDevice?"+query, nil)
	if r.status != 200 {
		t.Fatalf("%s: %d %s", query, r.status, r.raw)
	}
	var out []string
	for _, x := range r.body["Resources"].([]any) {
		out = append(out, fmt.Sprint(x.(map[string]any)["id"]))
	}
	if int(r.body["totalResults"].(float64)) < len(out) {
		t.Fatalf("%s: totalResults below the page", query)
	}
	return out
}

func names(ids map[string]string, keys ...string) []string {
	var out []string
	for _, k := range keys {
		out = append(out, ids[k])
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string { slices.Sort(s); return s }

// Filters over HTTP, every operator, precedence, not, grouping and attribute paths, with the
// expected devices spelled out.
func TestFiltersOverHTTP(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, at("2026-11-24 10:00:00"))
		ids := population(t, e)
		f := func(s string) string { return "filter=" + url.QueryEscape(s) }
		cases := []struct {
			filter string
			want   []string
		}{
			{`type eq "TOTP"`, names(ids, "anaTOTP", "benTOTP", "evil")},
			{`type ne "TOTP"`, names(ids, "anaSMS", "anaPIN", "benEMAIL", "benHOTP")},
			{`name co "Ana"`, names(ids, "anaTOTP")},
			{`name co "'quoted'"`, names(ids, "benHOTP")},
			{`name co "%"`, names(ids, "benHOTP")},
			{`name sw "SMS message"`, names(ids, "anaSMS")},
			{`name ew ".or*"`, names(ids, "benEMAIL")},
			{`fails gt 1`, names(ids, "benTOTP", "anaPIN")},
			{`fails ge 5`, names(ids, "anaPIN")},
			{`fails lt 1`, names(ids, "anaTOTP", "anaSMS", "benEMAIL", "benHOTP", "evil")},
			{`fails le 2 and fails ne 0`, names(ids, "benTOTP")},
			{`status eq "L"`, names(ids, "anaPIN")},
			{`status eq "D"`, names(ids, "benEMAIL")},
			{`phone pr`, names(ids, "anaSMS")},
			{`email pr or phone pr`, names(ids, "anaSMS", "benEMAIL")},
			{`user eq "ana" and (type eq "SMS" or type eq "PIN")`, names(ids, "anaSMS", "anaPIN")},
			{`user eq "ana" and type eq "SMS" or type eq "PIN"`, names(ids, "anaSMS", "anaPIN")},
			{`user eq "ben" or user eq "ana" and type eq "PIN"`, names(ids, "benTOTP", "benEMAIL", "benHOTP", "anaPIN")},
			{`(user eq "ben" or user eq "ana") and type eq "PIN"`, names(ids, "anaPIN")},
			{`not (user eq "ana") and not (type eq "TOTP")`, names(ids, "benEMAIL", "benHOTP")},
			{`urn:soffid:com.soffid.iam.addons.otp.common.OtpDevice:user eq "x' OR '1'='1"`, names(ids, "evil")},
			{`meta.created ge "2026-11-24 10:05:00"`, names(ids, "benHOTP", "evil")},
			{`created lt "2026-11-24T10:01:00Z"`, names(ids, "anaTOTP")},
			{`created eq "2026-11-24 10:03:00"`, names(ids, "benTOTP")},
			{`lastUsed pr`, nil},
			{`id eq ` + ids["benHOTP"], names(ids, "benHOTP")},
			{`ID GT ` + ids["benHOTP"], names(ids, "evil")},
		}
		for _, c := range cases {
			if got := sorted(e.list(t, f(c.filter))); !slices.Equal(got, c.want) {
				t.Errorf("%s: got %v, want %v", c.filter, got, c.want)
			}
		}
		// SQL-injection attempts: refused as invalid filters, or they select no extra rows.
		injections := []string{
			`user eq "x' OR '1'='1"`, `user eq "ana' OR 1=1 --"`, `name eq "\") or (1=1"`,
			`name co "' OR ''='"`, `type eq "TOTP') OR ('1'='1"`, `type eq "TOTP" or 1 eq 1`,
			`type eq "TOTP"; DROP TABLE devices`, `type eq "TOTP" -- `, `type eq "TOTP") or (1=1`,
			`type eq "TOTP" ) or ( type pr`, `d.secret pr`, `secret sw "A"`, `1=1`, `name eq ""||"x"`,
		}
		for _, s := range injections {
			r := e.do("GET", "/OtpDevice?"+f(s), nil)
			switch r.status {
			case 400:
				r.scimError(t, 400, "invalidFilter")
			case 200:
				got := r.body["Resources"].([]any)
				if len(got) > 1 {
					t.Errorf("%s selected %d devices", s, len(got))
				}
				for _, x := range got {
					if fmt.Sprint(x.(map[string]any)["id"]) != ids["evil"] {
						t.Errorf("%s selected %v", s, x)
					}
				}
			default:
				t.Errorf("%s: %d %s", s, r.status, r.raw)
			}
		}
		if got := e.list(t, ""); len(got) != 7 {
			t.Fatalf("after the injection attempts the table has %d devices", len(got))
		}
		// Seeds and PINs: never returned, never filterable or sortable (SECURITY.md 35).
		e.do("GET", "/OtpDevice?"+f(`secret sw "A"`), nil).scimError(t, 400, "invalidFilter")
		e.do("GET", "/OtpDevice?"+f(`pin eq "246813579"`), nil).scimError(t, 400, "invalidFilter")
		e.do("GET", "/OtpDevice?sortBy=secret", nil).scimError(t, 400, "invalidFilter")
		e.do("POST", "/OtpDevice/.search", `{"filter":"pin pr"}`).scimError(t, 400, "invalidFilter")
		for _, path := range []string{"/OtpDevice", "/OtpDevice/" + ids["anaPIN"]} {
			if r := e.do("GET", path, nil); strings.Contains(string(r.raw), "246813579") || strings.Contains(string(r.raw), `"pin"`) || strings.Contains(string(r.raw), `"secret"`) {
				t.Errorf("%s shows a secret: %s", path, r.raw)
			}
		}
		// Bounds.
		e.do("GET", "/OtpDevice?"+f(strings.Repeat("(", 20)+`type eq "x"`+strings.Repeat(")", 20)), nil).scimError(t, 400, "invalidFilter")
		e.do("GET", "/OtpDevice?"+f(strings.TrimSuffix(strings.Repeat(`fails eq 1 or `, 80), " or ")), nil).scimError(t, 400, "invalidFilter")
		e.do("GET", "/OtpDevice?"+f(`name eq "`+strings.Repeat("a", 3000)+`"`), nil).scimError(t, 400, "invalidFilter")
		e.do("GET", "/OtpDevice?"+f(`type eq`), nil).scimError(t, 400, "invalidFilter")
		// A NUL (or invalid UTF-8) in a value: no stored text holds one, so it is refused as a
		// filter rather than answered with a guess (it was a 500 on both backends).
		e.do("GET", "/OtpDevice?"+f(`name eq "x\u0000"`), nil).scimError(t, 400, "invalidFilter")
		e.do("GET", "/Users?"+f(`userName ne "a\u0000"`), nil).scimError(t, 400, "invalidFilter")
	})
}

func TestPagingAndSorting(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, at("2026-11-24 10:00:00"))
		ids := population(t, e)
		order := []string{ids["anaTOTP"], ids["anaSMS"], ids["anaPIN"], ids["benTOTP"], ids["benEMAIL"], ids["benHOTP"], ids["evil"]}
		r := e.do("GET", "/OtpDevice?startIndex=3&count=2", nil)
		res := r.body["Resources"].([]any)
		if r.body["totalResults"] != 7.0 || r.body["startIndex"] != 3.0 || r.body["itemsPerPage"] != 2.0 || len(res) != 2 ||
			fmt.Sprint(res[0].(map[string]any)["id"]) != order[2] {
			t.Fatalf("page: %s", r.raw)
		}
		r = e.do("GET", "/OtpDevice?count=0", nil)
		if r.body["totalResults"] != 7.0 || len(r.body["Resources"].([]any)) != 0 {
			t.Fatalf("count=0: %s", r.raw)
		}
		r = e.do("GET", "/OtpDevice?startIndex=-5&count=100000", nil)
		if r.body["startIndex"] != 1.0 || len(r.body["Resources"].([]any)) != 7 || r.body["itemsPerPage"] != nil {
			t.Fatalf("out-of-range paging: %s", r.raw)
		}
		e.do("GET", "/OtpDevice?count=ten", nil).scimError(t, 400, "invalidValue")
		e.do("GET", "/OtpDevice?sortBy=name&sortOrder=sideways", nil).scimError(t, 400, "invalidValue")
		got := e.list(t, "sortBy=fails&sortOrder=descending")
		if got[0] != ids["anaPIN"] || got[1] != ids["benTOTP"] {
			t.Errorf("by fails descending: %v", got)
		}
		rev := slices.Clone(order)
		slices.Reverse(rev)
		if got := e.list(t, "sortBy=meta.created&sortOrder=descending"); !slices.Equal(got, rev) {
			t.Errorf("by created descending: %v", got)
		}
		if got := e.list(t, "sortBy=phone"); got[0] != ids["anaSMS"] {
			t.Errorf("by phone: absent phones must come last: %v", got)
		}
		// .search does the same from a body.
		r = e.do("POST", "/OtpDevice/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"user eq \"ben\"","sortBy":"name","startIndex":1,"count":10}`)
		if r.status != 200 || r.body["totalResults"] != 3.0 {
			t.Fatalf(".search: %d %s", r.status, r.raw)
		}
	})
}

// Errors in the SCIM error schema: invalidValue, uniqueness, mutability, invalidPath, noTarget,
// invalidSyntax, 404, 401, 405, 413, 415.
func TestErrors(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, at("2026-11-24 10:00:00"))
		ids := population(t, e)
		dev := "/OtpDevice/" + ids["anaTOTP"]
		for body, typ := range map[string]string{
			`{"type":"SMS","user":"ana"}`:                  "invalidValue",
			`{"type":"EMAIL","user":"ana","email":"nope"}`: "invalidValue",
			`{"type":"FAX","user":"ana"}`:                  "invalidValue",
			`{"type":"TOTP","user":"nobody"}`:              "invalidValue",
			`{"type":"TOTP"}`:                              "invalidValue",
			`{"type":"TOTP","user":"ana","secret":"AAAA"}`: "invalidValue", // 20 bits: too short
			`{"type":"TOTP","user":"ana","secret":"!!"}`:   "invalidValue",
			`{"type":"TOTP","user":"ana","status":"V"}`:    "mutability",
			`{"type":"TOTP","user":"ana","colour":"red"}`:  "invalidSyntax",
			`{"type":"TOTP","user":"ana","fails":"x"} {}`:  "invalidSyntax",
			`["type"]`:                "invalidSyntax",
			`{"type":1,"user":"ana"}`: "invalidValue",
		} {
			e.do("POST", "/OtpDevice", body).scimError(t, 400, typ)
		}
		for body, typ := range map[string]string{
			`{"Operations":[{"op":"replace","path":"type","value":"SMS"}]}`:   "mutability",
			`{"Operations":[{"op":"replace","path":"colour","value":"red"}]}`: "invalidPath",
			`{"Operations":[{"op":"remove"}]}`:                                "noTarget",
			`{"Operations":[{"op":"remove","path":"name"}]}`:                  "mutability",
			`{"Operations":[{"op":"move","path":"name","value":"x"}]}`:        "invalidSyntax",
			`{"Operations":[]}`: "invalidValue",
			`{"Operations":[{"op":"replace","path":"status","value":"X"}]}`:     "invalidValue",
			`{"Operations":[{"op":"replace","path":"status","value":5}]}`:       "invalidValue",
			`{"Operations":[{"op":"replace","path":"phone","value":"+34666"}]}`: "invalidValue",
		} {
			e.do("PATCH", dev, body).scimError(t, 400, typ)
		}
		e.do("PUT", dev, `{"type":"SMS","user":"ana"}`).scimError(t, 400, "mutability")
		e.do("POST", "/Users", `{"userName":"ana"}`).scimError(t, 409, "uniqueness")
		e.do("POST", "/Users", `{"emails":[{"value":"x@example.com"}]}`).scimError(t, 400, "invalidValue")
		e.do("GET", "/OtpDevice/999999", nil).scimError(t, 404, "")
		e.do("GET", "/OtpDevice/abc", nil).scimError(t, 404, "")
		e.do("PATCH", "/OtpDevice/999999", `{"Operations":[{"op":"replace","path":"name","value":"x"}]}`).scimError(t, 404, "")
		e.do("GET", "/OtpDevice/999999/requestChallenge", nil).scimError(t, 404, "")
		e.do("POST", "/OtpDevice/999999/responseChallenge", `{"pin":"123456"}`).scimError(t, 404, "")
		e.do("POST", dev+"/responseChallenge", `{}`).scimError(t, 400, "invalidValue")
		e.do("GET", "/Users/0190b1c2-0000-7000-8000-000000000000", nil).scimError(t, 404, "")
		e.do("GET", "/Nothing", nil).scimError(t, 404, "")
		if r := e.do("DELETE", "/OtpDevice", nil); r.status != 405 || r.header.Get("Allow") == "" {
			t.Errorf("405: %d %v", r.status, r.header)
		} else {
			r.scimError(t, 405, "")
		}
		e.do("POST", "/OtpDevice", `{"type":"TOTP","user":"ana","name":"`+strings.Repeat("x", 70000)+`"}`).scimError(t, 413, "")
		r := e.doAuth("POST", "/OtpDevice", `{"type":"TOTP","user":"ana"}`, func(r *http.Request) {
			r.SetBasicAuth(e.clientID, e.pass)
			r.Header.Set("Content-Type", "text/plain")
		})
		r.scimError(t, 415, "")
		// Locked devices refuse challenges; the device answers locked even for the right PIN.
		e.do("GET", "/OtpDevice/"+ids["anaPIN"]+"/requestChallenge", nil).scimError(t, 409, "")
		if r := e.do("POST", "/OtpDevice/"+ids["anaPIN"]+"/responseChallenge", `{"pin":"246813579"}`); string(r.raw) != `{"locked":true,"success":false}`+"\n" {
			t.Errorf("right PIN on a locked device: %s", r.raw)
		}
		e.do("GET", "/OtpDevice/"+ids["benEMAIL"]+"/requestChallenge", nil).scimError(t, 409, "")
		e.do("GET", "/OtpDevice/"+ids["anaSMS"]+"/requestChallenge", nil)
		e.do("GET", "/OtpDevice/"+ids["anaSMS"]+"/requestChallenge", nil).scimError(t, 429, "") // cooldown
	})
}

// Authentication: Basic with client credentials, Bearer with an API key; anything else is a
// SCIM 401. Tenancy: another tenant's client sees nothing (SECURITY.md 37).
func TestAuthAndTenancy(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, at("2026-11-24 10:00:00"))
		ids := population(t, e)
		dev := "/OtpDevice/" + ids["anaTOTP"]
		bearer := func(k string) func(*http.Request) {
			return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+k) }
		}
		if r := e.doAuth("GET", dev, nil, bearer(e.adminKey)); r.status != 200 {
			t.Fatalf("bearer: %d %s", r.status, r.raw)
		}
		for name, auth := range map[string]func(*http.Request){
			"none":         nil,
			"wrong secret": func(r *http.Request) { r.SetBasicAuth(e.clientID, e.pass+"x") },
			"unknown id":   func(r *http.Request) { r.SetBasicAuth("cl_000000000000000000000000", e.pass) },
			"bad bearer":   bearer("otpd_0000000000000000_" + strings.Repeat("A", 43)),
			"digest":       func(r *http.Request) { r.Header.Set("Authorization", "Digest x") },
			"bad base64":   func(r *http.Request) { r.Header.Set("Authorization", "Basic !!!") },
		} {
			r := e.doAuth("GET", dev, nil, auth)
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: no WWW-Authenticate", name)
			}
			r.scimError(t, 401, "")
		}
		// Both prefixes serve the same resources, with locations under the prefix used.
		r := e.do("GET", "/scim2/v1"+dev, nil)
		if r.status != 200 || !strings.Contains(r.body["meta"].(map[string]any)["location"].(string), "/scim2/v1/OtpDevice/") ||
			strings.Contains(r.body["meta"].(map[string]any)["location"].(string), "soffid") {
			t.Fatalf("short prefix: %d %s", r.status, r.raw)
		}
		// Another tenant.
		ctx := context.Background()
		tid, _, err := e.a.Engine.CreateTenant(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		na, err := e.a.Engine.CreateApplication(ctx, engine.Principal{TenantID: tid, Role: store.RoleAdmin}, "theirs")
		if err != nil {
			t.Fatal(err)
		}
		them := func(r *http.Request) { r.SetBasicAuth(na.ClientID, na.ClientSecret) }
		e.doAuth("GET", dev, nil, them).scimError(t, 404, "")
		e.doAuth("PATCH", dev, `{"Operations":[{"op":"replace","path":"status","value":"D"}]}`, them).scimError(t, 404, "")
		e.doAuth("DELETE", dev, nil, them).scimError(t, 404, "")
		e.doAuth("POST", dev+"/responseChallenge", `{"pin":"123456"}`, them).scimError(t, 404, "")
		e.doAuth("POST", "/OtpDevice", `{"type":"TOTP","user":"ana"}`, them).scimError(t, 400, "invalidValue")
		if r := e.doAuth("GET", "/OtpDevice", nil, them); r.body["totalResults"] != 0.0 {
			t.Errorf("the other tenant lists %v devices", r.body["totalResults"])
		}
		if r := e.do("GET", dev, nil); r.body["status"] != "C" {
			t.Errorf("the other tenant changed the device: %s", r.raw)
		}
	})
}

// Users: create, get, filter, PUT, PATCH (Azure AD's string booleans too), delete — which
// removes the user's devices.
func TestUsers(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, at("2026-11-24 10:00:00"))
		r := e.do("POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
			"userName":"alice","externalId":"crm-7","name":{"givenName":"Alice","familyName":"Liddell"},
			"emails":[{"value":"home@example.com","type":"home"},{"value":"Alice@Example.com","type":"work","primary":true}],
			"phoneNumbers":[{"value":"+1 415 555 0100","type":"mobile"}],"active":true,"preferredLanguage":"en-GB",
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"R&D"}}`)
		if r.status != 201 || r.body["userName"] != "alice" || r.body["externalId"] != "crm-7" || r.header.Get("Location") == "" {
			t.Fatalf("create: %d %s", r.status, r.raw)
		}
		uid := r.body["id"].(string)
		if em := r.body["emails"].([]any)[0].(map[string]any); em["value"] != "alice@example.com" || em["primary"] != true {
			t.Errorf("emails: %v", r.body["emails"])
		}
		if ph := r.body["phoneNumbers"].([]any)[0].(map[string]any); ph["value"] != "+14155550100" {
			t.Errorf("phoneNumbers: %v", r.body["phoneNumbers"])
		}
		e.do("POST", "/Users", `{"userName":"bob","active":"False"}`)
		for filter, want := range map[string]float64{`userName eq "alice"`: 1, `emails[value eq "ALICE@example.com"]`: 1,
			`name.familyName sw "Lid"`: 1, `active eq false`: 1, `externalId pr`: 1, `userName ne "alice" and active eq true`: 0} {
			if r := e.do("GET", "/Users?filter="+url.QueryEscape(filter), nil); r.status != 200 || r.body["totalResults"] != want {
				t.Errorf("users %s: %d %s", filter, r.status, r.raw)
			}
		}
		e.do("GET", "/Users?filter="+url.QueryEscape(`password eq "x"`), nil).scimError(t, 400, "invalidFilter")
		r = e.do("PATCH", "/Users/"+uid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
			{"op":"Replace","path":"active","value":"False"},
			{"op":"replace","path":"emails[type eq \"work\"].value","value":"a.liddell@example.com"},
			{"op":"replace","value":{"name":{"givenName":"Al"},"externalId":"crm-8"}}]}`)
		if r.status != 200 || r.body["active"] != false || r.body["externalId"] != "crm-8" || r.body["name"].(map[string]any)["givenName"] != "Al" ||
			r.body["emails"].([]any)[0].(map[string]any)["value"] != "a.liddell@example.com" {
			t.Fatalf("patch: %d %s", r.status, r.raw)
		}
		r = e.do("PUT", "/Users/"+uid, `{"userName":"alice2","active":true}`)
		if r.status != 200 || r.body["userName"] != "alice2" || r.body["externalId"] != nil || r.body["emails"] != nil {
			t.Fatalf("put replaces: %d %s", r.status, r.raw)
		}
		e.do("PATCH", "/Users/"+uid, `{"Operations":[{"op":"remove","path":"userName"}]}`).scimError(t, 400, "mutability")
		e.do("PATCH", "/Users/"+uid, `{"Operations":[{"op":"replace","path":"password","value":"x"}]}`).scimError(t, 400, "mutability")
		if r := e.do("GET", "/Users/"+uid, nil); r.status != 200 || r.body["meta"].(map[string]any)["resourceType"] != "User" {
			t.Fatalf("get: %s", r.raw)
		}
		d := e.do("POST", "/OtpDevice", `{"type":"TOTP","user":"alice2"}`)
		if r := e.do("DELETE", "/Users/"+uid, nil); r.status != 204 {
			t.Fatalf("delete: %d %s", r.status, r.raw)
		}
		e.do("GET", "/OtpDevice/"+id(d), nil).scimError(t, 404, "")
	})
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, storetest.Backends()[0], at("2026-11-24 10:00:00"))
	r := e.do("GET", "/ServiceProviderConfig", nil)
	if r.status != 200 || r.body["patch"].(map[string]any)["supported"] != true || r.body["filter"].(map[string]any)["maxResults"] != 1000.0 {
		t.Fatalf("ServiceProviderConfig: %s", r.raw)
	}
	r = e.do("GET", "/ResourceTypes", nil)
	if r.status != 200 || r.body["totalResults"] != 2.0 {
		t.Fatalf("ResourceTypes: %s", r.raw)
	}
	if r = e.do("GET", "/ResourceTypes/OtpDevice", nil); r.body["schema"] != "urn:soffid:com.soffid.iam.addons.otp.common.OtpDevice" {
		t.Fatalf("ResourceTypes/OtpDevice: %s", r.raw)
	}
	r = e.do("GET", "/Schemas/urn:soffid:com.soffid.iam.addons.otp.common.OtpDevice", nil)
	found := false
	for _, a := range r.body["attributes"].([]any) {
		if m := a.(map[string]any); m["name"] == "pin" {
			found = m["returned"] == "never" && m["mutability"] == "writeOnly"
		}
	}
	if !found {
		t.Errorf("the OtpDevice schema does not mark pin write-only, never returned: %s", r.raw)
	}
	if r = e.do("GET", "/Schemas", nil); r.body["totalResults"] != 2.0 {
		t.Fatalf("Schemas: %s", r.raw)
	}
	e.do("GET", "/Schemas/urn:nope", nil).scimError(t, 404, "")
	e.do("GET", "/ResourceTypes/Group", nil).scimError(t, 404, "")
}

// An imported seed is never shown back: not by create, get, list or PATCH (SECURITY.md 35).
func TestImportedSeedNeverReturned(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, at("2026-11-24 10:00:00"))
		e.do("POST", "/Users", `{"userName":"ana"}`)
		seed := "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
		r := e.do("POST", "/OtpDevice", `{"type":"TOTP","user":"ana","secret":"`+seed+`"}`)
		if r.status != 200 || r.body["uri"] != nil || r.body["image"] != nil {
			t.Fatalf("create with a seed: %d %s", r.status, r.raw)
		}
		answers := [][]byte{r.raw}
		answers = append(answers, e.do("GET", "/OtpDevice/"+id(r), nil).raw, e.do("GET", "/OtpDevice", nil).raw,
			e.do("PATCH", "/OtpDevice/"+id(r), `{"Operations":[{"op":"replace","path":"name","value":"mine"}]}`).raw,
			e.do("POST", "/OtpDevice/.search", `{}`).raw)
		for _, a := range answers {
			if strings.Contains(strings.ToUpper(string(a)), seed[:16]) {
				t.Errorf("the seed is in an answer: %s", a)
			}
		}
	})
}

// TestDeviceUpdates: the successful PUT and PATCH (add and replace, with and without a path)
// of an OtpDevice. PUT replaces the mutable attributes it names and keeps those it omits (RFC
// 7644 §3.5.1: omitted readWrite attributes "MAY be assumed to be not asserted"; a device's
// name and target cannot be absent). A changed phone is where the next challenge goes.
func TestDeviceUpdates(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, at("2026-11-24 10:00:00"))
		population(t, e)
		d := e.do("POST", "/OtpDevice", `{"type":"SMS","user":"ana","phone":"+34666555444"}`)
		if d.status != 200 {
			t.Fatalf("create: %d %s", d.status, d.raw)
		}
		dev := "/OtpDevice/" + id(d)
		r := e.do("PUT", dev, `{"schemas":["urn:soffid:com.soffid.iam.addons.otp.common.OtpDevice"],"type":"SMS","user":"ana",
			"name":"Ana's phone","phone":"+34611222333","id":"ignored","fails":7}`)
		if r.status != 200 || r.body["name"] != "Ana's phone" || r.body["phone"] != "+34611222333" || r.body["fails"] != float64(0) || r.body["status"] != "C" {
			t.Fatalf("put: %d %s", r.status, r.raw)
		}
		r = e.do("PUT", dev, `{"status":"D"}`)
		if r.status != 200 || r.body["name"] != "Ana's phone" || r.body["status"] != "D" || r.body["phone"] != "+34611222333" {
			t.Fatalf("put keeps what it omits: %d %s", r.status, r.raw)
		}
		r = e.do("PATCH", dev, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
			{"op":"add","path":"name","value":"Ana (work)"},
			{"op":"Add","value":{"status":"C"}},
			{"op":"replace","path":"urn:soffid:com.soffid.iam.addons.otp.common.OtpDevice:phone","value":"+34699888777"}]}`)
		if r.status != 200 || r.body["name"] != "Ana (work)" || r.body["status"] != "C" || r.body["phone"] != "+34699888777" {
			t.Fatalf("patch: %d %s", r.status, r.raw)
		}
		if g := e.do("GET", dev, nil); g.status != 200 || g.body["name"] != "Ana (work)" || g.body["phone"] != "+34699888777" {
			t.Fatalf("get after patch: %d %s", g.status, g.raw)
		}
		// The challenge goes to the number the PATCH set.
		if c := e.do("GET", dev+"/requestChallenge", nil); c.status != 200 || c.body["cardNumber"] != "SMS message to +3*****77" {
			t.Fatalf("challenge: %d %s", c.status, c.raw)
		}
		if _, err := e.a.Worker.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		code := e.devInbox("+34699888777") // fails the test when nothing went to the new number
		if r := e.do("POST", dev+"/responseChallenge", map[string]string{"pin": code}); r.status != 200 || r.body["success"] != true {
			t.Fatalf("the code sent to the new number: %d %s", r.status, r.raw)
		}
	})
}
