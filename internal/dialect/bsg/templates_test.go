package bsg_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/otpd/otpd/internal/store/storetest"
)

const (
	templatesPath = "/api/2fa/authentications/templates"
	templatePath  = "/api/2fa/authentications/templates/{templateId}"
)

// TestTemplates covers the four template operations with the schema's example body, every
// error they document, moderation, and what a template's status and countries do to a send.
func TestTemplates(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.settings(`{"allowed_countries":["AU","UA"]}`)
		tlist := func(q string) res {
			t.Helper()
			return e.bsg(call{method: "GET", tpl: templatesPath, query: q, tok: "-", want: 200})
		}
		create := func(body any, want int) res {
			t.Helper()
			return e.bsg(call{method: "POST", tpl: templatesPath, tok: "-", body: body, want: want})
		}
		send := func(templateID any, recipient string, want int) res {
			t.Helper()
			return e.bsg(call{method: "POST", tpl: otpPath, tok: "-", want: want,
				body: with(seedSMS(), "template_id", templateID, "recipient", recipient, "code_digits", 6)})
		}

		// Every tenant starts with its default template, approved.
		l := tlist("").data()
		def := l["list"].([]any)[0].(map[string]any)
		if l["total"] != 1.0 || def["text"] != "Your code is {code2fa}" || def["status"] != "approved" || fmt.Sprint(def["countries"]) != "[]" {
			t.Fatalf("default template: %v", l)
		}
		defID := strconv.Itoa(int(def["template_id"].(float64)))

		// The schema's example; without moderation it is approved at once.
		tp := create(map[string]any{"name": "template name", "text": "test code is {code2fa}", "countries": []string{"UA", "PT", "AD", "IT"}}, 200).data()
		if tp["status"] != "approved" || tp["name"] != "template name" || fmt.Sprint(tp["countries"]) != "[UA PT AD IT]" {
			t.Errorf("created: %v", tp)
		}
		id := strconv.Itoa(int(tp["template_id"].(float64)))
		if g := e.bsg(call{method: "GET", tpl: templatePath, args: []string{id}, tok: "-", want: 200}).data(); g["text"] != "test code is {code2fa}" || g["updated_at"] != tp["updated_at"] {
			t.Errorf("get: %v", g)
		}

		// The template's countries decide where it may go.
		wantInvalid(t, send(id, "61401629754", 422), "The recipients phone number is located in a country that is not on the list of countries allowed for the selected template. Please register new message template.")
		send(id, "380501403813", 201) // the schema's example recipient, in Ukraine
		if texts := e.inboxTexts(); len(texts) != 1 || !codeRE.MatchString(texts[0]) || texts[0][:13] != "test code is " {
			t.Errorf("delivered: %q", texts)
		}

		// Creation errors, in BSG's words.
		for _, c := range []struct {
			body any
			msg  string
		}{
			{map[string]any{"name": "no code", "text": "Your code"}, "The variable {code2fa} is required in the text"},
			{map[string]any{"name": "two codes", "text": "{code2fa} or {code2fa}"}, "The {code2fa} variable must occur only once in the text"},
			{map[string]any{"name": "template name", "text": "{code2fa}"}, "User has a template with the identical name!"},
			{map[string]any{"name": "ab", "text": "{code2fa}"}, "The name must be 3 to 50 characters."},
			{map[string]any{"text": "{code2fa}"}, "name: This value should not be blank."},
			{map[string]any{"name": "x y z", "text": 5}, "text: This value should be of type string."},
			{map[string]any{"name": "x y z", "text": "{code2fa}", "countries": []string{"U1"}}, "countries: The value you selected is not a valid choice."},
			{map[string]any{"name": "x y z", "text": "{code2fa}", "countries": []string{"ZZ"}}, "The value you selected is not a valid choice."},
			{map[string]any{"name": "x y z", "text": "{code2fa}", "channel": "sms"}, "channel: This field was not expected."},
		} {
			wantInvalid(t, create(c.body, 422), c.msg)
		}

		// Moderation: new templates wait for an operator; sends cannot use them until approved.
		e.settings(`{"moderation":true}`)
		mod := create(map[string]any{"name": "moderated", "text": "Code: {code2fa}"}, 200).data()
		if mod["status"] != "requested" {
			t.Fatalf("moderated: %v", mod)
		}
		modID := strconv.Itoa(int(mod["template_id"].(float64)))
		wantInvalid(t, send(modID, "61401629754", 422), "Invalid template status")
		e.native("POST", "/v1/templates/"+modID+"/reject", e.admin, "", 200)
		wantInvalid(t, send(modID, "61401629754", 422), "Invalid template status")
		e.native("POST", "/v1/templates/"+modID+"/approve", e.admin, "", 200)
		send(modID, "61401629754", 201)
		// At most 10 may wait.
		for i := range 10 {
			create(map[string]any{"name": fmt.Sprintf("waiting %d", i), "text": "{code2fa}"}, 200)
		}
		wantInvalid(t, create(map[string]any{"name": "one too many", "text": "{code2fa}"}, 422),
			"The number of requests to create a template is limited to 10. Please wait for the manager approve before making a new request.")

		// List filters, sort and paging.
		if r := tlist("filter[status]=requested"); r.data()["total"] != 10.0 {
			t.Errorf("requested: %v", r.data()["total"])
		}
		r := tlist("filter[ids]=" + defID + "&filter[ids]=" + id + "&sort=name&way=desc")
		var names []string
		for _, it := range r.data()["list"].([]any) {
			names = append(names, it.(map[string]any)["name"].(string))
		}
		if !slices.Equal(names, []string{"template name", "Default"}) || r.data()["total"] != 2.0 {
			t.Errorf("ids + sort: %v", names)
		}
		if r := tlist("page[limit]=10&page[offset]=10"); r.data()["total"] != 13.0 || len(r.data()["list"].([]any)) != 3 {
			t.Errorf("page 2: %s", r.raw)
		}
		if r := tlist("sort=status&way=asc&page[limit]=500"); r.data()["list"].([]any)[0].(map[string]any)["status"] != "approved" {
			t.Errorf("by status: %s", r.raw)
		}
		for q, field := range map[string]string{"filter[status]=live": "filter[status]", "sort=text": "sort",
			"page[limit]=5": "page[limit]", "way=sideways": "way", "filter[ids]=abc": "filter[ids]"} {
			r := e.bsg(call{method: "GET", tpl: templatesPath, query: q, tok: "-", want: 422})
			if len(r.fieldErrs()[field]) != 1 {
				t.Errorf("%s: %s", q, r.raw)
			}
		}

		// Get: BSG answers an unknown template with {"message": "Model not found"}.
		for _, bad := range []string{"999999", "abc", "0"} {
			if r := e.bsg(call{method: "GET", tpl: templatePath, args: []string{bad}, tok: "-", want: 404}); r.body["message"] != "Model not found" || r.body["errors"] != nil {
				t.Errorf("get %s: %s", bad, r.raw)
			}
		}

		// Delete.
		wantInvalid(t, e.bsg(call{method: "DELETE", tpl: templatePath, args: []string{defID}, tok: "-", want: 422}), "Default template is not available for deletion")
		if r := e.bsg(call{method: "DELETE", tpl: templatePath, args: []string{id}, tok: "-", want: 200}); fmt.Sprint(r.data()) != "map[status:Successfully removed]" {
			t.Errorf("delete: %s", r.raw)
		}
		for _, bad := range []string{id, "999999", "abc"} {
			wantService(t, e.bsg(call{method: "DELETE", tpl: templatePath, args: []string{bad}, tok: "-", want: 404}), "Template not found")
		}
		if g := e.bsg(call{method: "GET", tpl: templatePath, args: []string{id}, tok: "-", want: 200}).data(); g["status"] != "deleted" {
			t.Errorf("deleted template: %v", g)
		}
		// A deleted or unknown template cannot be used; its name is free again.
		wantInvalid(t, send(id, "380501403813", 422), "Template is not available.")
		wantInvalid(t, send(999999, "380501403813", 422), "Template is not available.")
		e.settings(`{"moderation":false}`)
		create(map[string]any{"name": "template name", "text": "again {code2fa}"}, 200)
		// The default template works for every allowed country.
		send(defID, "380501403814", 201)
	})
}
