package bsg

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRequests feeds arbitrary bytes to the decoders of BSG's request bodies (send_otp,
// verify_otp, otp_template_create, login). Each must either accept the body with every field
// within BSG's bounds, or refuse it with a 400 or 422 answer that encodes as JSON — never panic,
// never both, never neither.
//
//	go test ./internal/dialect/bsg -run '^$' -fuzz FuzzRequests -fuzztime 60s
func FuzzRequests(f *testing.F) {
	for _, s := range []string{
		`{"recipient":"61401629754","channel":"sms","sender":"SENDER","template_id":"12","code_lifetime":300,"code_max_tries":3,"code_digits":5}`,
		`{"recipient":"61401629754","channel":"viber","sender":"VIBER_SENDER","sender_alt":"SMS_SENDER","template_id":"12","code_lifetime":300,"code_max_tries":3,"code_digits":5}`,
		`{"code_lifetime":300,"sender":"SENDER","sender_alt":"SENDER_ALT","code_max_tries":3,"recipient":"61401629754","channel":"sms","template_id":1,"code_digits":5}`,
		`{"access_code":"76928"}`,
		`{"name":"template name","text":"test code is {code2fa}","countries":["UA","PT","AD","IT"]}`,
		`{"api_key":"live_8JeF1mLckxI4QResuP6X"}`,
		`{"template_id":1e3,"code_digits":5.0,"code_lifetime":3e2}`,
		`{"recipient":null,"sender_alt":null,"template_id":"0123"}`,
		`{"recipient":"61401629754","channel":"sms","sender":"SENDER","template_id":1,"code_lifetime":"300","code_max_tries":3,"code_digits":5}`,
		`{"a":1} {"b":2}`, `[]`, `null`, ``, `{`, `{"recipient":"١٢٣٤٥٦٧٨٩"}`, "{\"sender\":\"A\x00B\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkRefusal := func(what string, e *apiError) {
			if e.status != http.StatusBadRequest && e.status != http.StatusUnprocessableEntity {
				t.Fatalf("%s: status %d for %q", what, e.status, raw)
			}
			if _, err := json.Marshal(e.body); err != nil {
				t.Fatalf("%s: answer does not encode: %v", what, err)
			}
		}

		if r, e := decodeSend(raw); (r == nil) == (e == nil) {
			t.Fatalf("send: request %v and error %v", r, e)
		} else if e != nil {
			checkRefusal("send", e)
		} else {
			switch {
			case !recipientRE.MatchString(r.Recipient):
				t.Fatalf("recipient %q accepted", r.Recipient)
			case r.Channel != "sms" && r.Channel != "viber":
				t.Fatalf("channel %q accepted", r.Channel)
			case r.Channel == "sms" && !validSender(r.Sender), r.Channel == "viber" && !validViberSender(r.Sender):
				t.Fatalf("sender %q accepted for %s", r.Sender, r.Channel)
			case r.SenderAlt != "" && (r.Channel != "viber" || !validSender(r.SenderAlt)):
				t.Fatalf("sender_alt %q kept for %s", r.SenderAlt, r.Channel)
			case r.TemplateID < 1 || r.TemplateID > 999_999_999:
				t.Fatalf("template_id %d accepted", r.TemplateID)
			case r.Lifetime < 30 || r.Lifetime > 300, r.MaxTries < 1 || r.MaxTries > 5, r.Digits < 3 || r.Digits > 9:
				t.Fatalf("out of range accepted: %+v", r)
			}
			var members map[string]json.RawMessage
			if err := json.Unmarshal(raw, &members); err != nil {
				t.Fatalf("accepted a body that is not a JSON object: %q", raw)
			}
			for _, name := range []string{"code_lifetime", "code_max_tries", "code_digits"} {
				if v := strings.TrimSpace(string(members[name])); v == "" || !strings.ContainsAny(v[:1], "-0123456789") {
					t.Fatalf("%s accepted as %s", name, v)
				}
			}
		}

		if code, e := decodeVerify(raw); e != nil {
			checkRefusal("verify", e)
		} else if !accessCodeRE.MatchString(code) {
			t.Fatalf("access_code %q accepted", code)
		}

		if r, e := decodeTemplate(raw); (r == nil) == (e == nil) {
			t.Fatalf("template: request %v and error %v", r, e)
		} else if e != nil {
			checkRefusal("template", e)
		} else {
			if strings.TrimSpace(r.Name) == "" || strings.TrimSpace(r.Text) == "" || !utf8.ValidString(r.Name) {
				t.Fatalf("template %+v accepted", r)
			}
			for _, c := range r.Countries {
				if !countryCodeRE.MatchString(c) {
					t.Fatalf("country %q accepted", c)
				}
			}
		}

		if key, e := decodeLogin(raw); e != nil {
			checkRefusal("login", e)
		} else if strings.TrimSpace(key) == "" {
			t.Fatal("empty api_key accepted")
		}
	})
}
