package bsg_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/store/storetest"
)

// TestSendValidation: every rule of SendOtpRequest, answered 422 with the field's error in
// BSG's words; nothing is created by a refused body.
func TestSendValidation(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.settings(`{"allowed_countries":["AU"]}`)
		base := with(seedSMS(), "template_id", 1, "code_digits", 6)
		cases := []struct {
			body  map[string]any
			field string
			msg   string
		}{
			{with(base, "recipient", nil), "recipient", "This value should not be blank."},
			{with(base, "recipient", "+61401629754"), "recipient", "This value is not valid."},
			{with(base, "recipient", "61401"), "recipient", "This value is not valid."},
			{with(base, "recipient", "6140162975412345"), "recipient", "This value is not valid."},
			{with(base, "recipient", "999999999"), "recipient", "This value is not valid."}, // 9 digits, no such number
			{with(base, "recipient", 61401629754), "recipient", "This value should be of type string."},
			{with(base, "channel", nil), "channel", "This value should not be blank."},
			{with(base, "channel", "email"), "channel", "The value you selected is not a valid choice."},
			{with(base, "channel", "SMS"), "channel", "The value you selected is not a valid choice."},
			{with(base, "sender", ""), "sender", "This value should not be blank."},
			{with(base, "sender", "AB"), "sender", "This value is not valid."},
			{with(base, "sender", "SENDERSENDER"), "sender", "This value is not valid."}, // 12: too long for SMS
			{with(base, "sender", "1234567890123456"), "sender", "This value is not valid."},
			{with(base, "sender", "SEND\u00c9R"), "sender", "This value is not valid."},
			{with(base, "channel", "viber", "sender_alt", "A"), "sender_alt", "This value is not valid."},
			{with(base, "template_id", nil), "template_id", "This value should not be blank."},
			{with(base, "template_id", "0"), "template_id", "This value is not valid."},
			{with(base, "template_id", "12a"), "template_id", "This value is not valid."},
			{with(base, "template_id", 1000000000), "template_id", "This value is not valid."},
			{with(base, "template_id", 1.5), "template_id", "This value should be of type integer."},
			{with(base, "template_id", true), "template_id", "This value should be of type integer."},
			{with(base, "code_lifetime", 29), "code_lifetime", "This value should be between 30 and 300."},
			{with(base, "code_lifetime", 301), "code_lifetime", "This value should be between 30 and 300."},
			{with(base, "code_lifetime", "300"), "code_lifetime", "This value should be of type integer."},
			{with(base, "code_max_tries", 0), "code_max_tries", "This value should be between 1 and 5."},
			{with(base, "code_max_tries", 6), "code_max_tries", "This value should be between 1 and 5."},
			{with(base, "code_digits", 2), "code_digits", "This value should be between 3 and 9."},
			{with(base, "code_digits", 10), "code_digits", "This value should be between 3 and 9."},
			{with(base, "code_digits", nil), "code_digits", "This value should not be blank."},
			{with(base, "priority", "high"), "priority", "This field was not expected."},
		}
		for _, c := range cases {
			wantFields(t, e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: c.body, want: 422}), c.field, c.msg)
		}
		// Several problems at once are all reported.
		r := e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: map[string]any{"channel": "fax", "code_digits": 99}, want: 422})
		if got := keys2(r.fieldErrs()); !slices.Equal(got, []string{"channel", "code_digits", "code_lifetime", "code_max_tries", "recipient", "sender", "template_id"}) {
			t.Errorf("all at once: %v", got)
		}
		for _, raw := range []string{`[]`, `nonsense`, `{"recipient":`, ``, `{} {}`} {
			if r := e.send("POST", otpPath, "Bearer "+e.tok, "application/json", raw, nil); r.status != 400 || r.body["message"] == nil {
				t.Errorf("body %q: %d %s", raw, r.status, r.raw)
			}
		}
		if r := e.send("POST", otpPath, "Bearer "+e.tok, "application/json", `{"a":"`+strings.Repeat("x", 70<<10)+`"}`, nil); r.status != 413 {
			t.Errorf("huge body: %d", r.status)
		}
		// Sender names: numeric up to 15 digits, alphanumeric up to 11; BSG's own example values.
		for i, s := range []string{"123456789012345", "My Shop 1", "A-B_C.D!", "SENDER"} {
			e.sendOK(with(base, "recipient", "6140162975"+string(rune('0'+i)), "sender", s))
		}
		if n, texts := e.sessions(), e.inboxTexts(); n != 4 || len(texts) != 4 {
			t.Errorf("%d sessions and %d messages; refused bodies must create nothing", n, len(texts))
		}
	})
}

// TestChannelInactive: without a provider for the channel (the log provider off, none
// configured), send_otp answers BSG's "User channel inactive".
func TestChannelInactive(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, func(c *config.Config) { c.LogProvider = "off" })
		e.settings(`{"allowed_countries":["AU"]}`)
		wantInvalid(t, e.bsg(call{method: "POST", tpl: otpPath, tok: "-", body: with(seedSMS(), "template_id", 1, "code_digits", 6), want: 422}), "User channel inactive")
	})
}
