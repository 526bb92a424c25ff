package bsg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Decoding and validating BSG's request bodies and query strings. Field errors use the words of
// BSG's validator ("This value should not be blank.", "The value you selected is not a valid
// choice."), keyed by the wire name of the field.

// maxBody bounds every request body.
const maxBody = 64 << 10

// Validation messages.
const (
	msgBlank      = "This value should not be blank."
	msgNotValid   = "This value is not valid."
	msgChoice     = "The value you selected is not a valid choice."
	msgUnexpected = "This field was not expected."
)

func msgType(kind string) string { return "This value should be of type " + kind + "." }

func msgBetween(lo, hi int) string {
	return fmt.Sprintf("This value should be between %d and %d.", lo, hi)
}

// fieldErrors collects messages per field.
type fieldErrors map[string][]string

func (f fieldErrors) add(field, msg string) { f[field] = append(f[field], msg) }

// body is a decoded JSON object whose members are read one by one; members never read are
// reported as unexpected.
type body struct {
	members map[string]json.RawMessage
	read    map[string]bool
	errs    fieldErrors
}

// readBody reads the request body as one JSON object of at most maxBody bytes. An empty body
// is an empty object when allowEmpty.
func readBody(w http.ResponseWriter, r *http.Request, allowEmpty bool) (*body, *apiError) {
	raw, e := readRaw(w, r)
	if e != nil {
		return nil, e
	}
	return parseBody(raw, allowEmpty)
}

// readRaw reads at most maxBody bytes of the request body.
func readRaw(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, msgAnswer(http.StatusRequestEntityTooLarge, "Request Entity Too Large")
		}
		return nil, badRequest("The request body could not be read.")
	}
	return raw, nil
}

// parseBody decodes raw as one JSON object.
func parseBody(raw []byte, allowEmpty bool) (*body, *apiError) {
	b := &body{members: map[string]json.RawMessage{}, read: map[string]bool{}, errs: fieldErrors{}}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 && allowEmpty {
		return b, nil
	}
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, badRequest("The request body must be a JSON object.")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(&b.members); err != nil {
		return nil, badRequest("The request body is not valid JSON.")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, badRequest("The request body is not valid JSON.")
	}
	return b, nil
}

// raw returns a member, or nil when it is absent or null.
func (b *body) raw(name string) json.RawMessage {
	b.read[name] = true
	v, ok := b.members[name]
	if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return nil
	}
	return v
}

// str reads a string member; required says whether absence is an error. ok is false when the
// member is absent, null or wrong.
func (b *body) str(name string, required bool) (string, bool) {
	v := b.raw(name)
	if v == nil {
		if required {
			b.errs.add(name, msgBlank)
		}
		return "", false
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		b.errs.add(name, msgType("string"))
		return "", false
	}
	if required && strings.TrimSpace(s) == "" {
		b.errs.add(name, msgBlank)
		return "", false
	}
	return s, true
}

// integer reads a required integer member within [lo, hi].
func (b *body) integer(name string, lo, hi int) (int, bool) {
	v := b.raw(name)
	if v == nil {
		b.errs.add(name, msgBlank)
		return 0, false
	}
	n, ok := jsonInt(v)
	if !ok {
		b.errs.add(name, msgType("integer"))
		return 0, false
	}
	if n < int64(lo) || n > int64(hi) {
		b.errs.add(name, msgBetween(lo, hi))
		return 0, false
	}
	return int(n), true
}

// jsonInt reads a JSON number that is an integer (3, 3.0, 3e0) and fits an int64.
func jsonInt(v json.RawMessage) (int64, bool) {
	if t := bytes.TrimSpace(v); len(t) == 0 || t[0] == '"' { // json.Number would take "300"
		return 0, false
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var num json.Number
	if err := dec.Decode(&num); err != nil {
		return 0, false
	}
	if n, err := num.Int64(); err == nil {
		return n, true
	}
	f, err := num.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// done reports the members no reader asked for, and returns the field errors (nil if none).
func (b *body) done() fieldErrors {
	names := make([]string, 0, len(b.members))
	for k := range b.members {
		if !b.read[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		b.errs.add(k, msgUnexpected)
	}
	if len(b.errs) == 0 {
		return nil
	}
	return b.errs
}

var (
	recipientRE   = regexp.MustCompile(`^[0-9]{9,15}$`)
	numericRE     = regexp.MustCompile(`^[0-9]{3,15}$`)
	accessCodeRE  = regexp.MustCompile(`^[0-9]{3,9}$`)
	templateIDRE  = regexp.MustCompile(`^[1-9][0-9]{0,8}$`)
	countryCodeRE = regexp.MustCompile(`^[A-Za-z]{2}$`)
)

// validSender reports whether s is a sender name BSG accepts: 3–15 digits (a numeric sender),
// or 3–11 printable ASCII characters (Latin letters, digits, symbols, spaces) with at least one
// non-digit.
func validSender(s string) bool {
	if numericRE.MatchString(s) {
		return true
	}
	if len(s) < 3 || len(s) > 11 || strings.TrimSpace(s) == "" {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return true
}

// validViberSender reports whether s can be a Viber sender name: 3–32 printable ASCII
// characters, not only spaces.
func validViberSender(s string) bool {
	if len(s) < 3 || len(s) > 32 || strings.TrimSpace(s) == "" {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return true
}

// sendRequest is a decoded send_otp body.
type sendRequest struct {
	Recipient  string
	Channel    string
	Sender     string
	SenderAlt  string
	TemplateID int64
	Lifetime   int
	MaxTries   int
	Digits     int
}

// decodeSend validates a send_otp body (SendOtpRequest).
func decodeSend(raw []byte) (*sendRequest, *apiError) {
	b, e := parseBody(raw, false)
	if e != nil {
		return nil, e
	}
	var r sendRequest
	if s, ok := b.str("recipient", true); ok {
		if recipientRE.MatchString(s) {
			r.Recipient = s
		} else {
			b.errs.add("recipient", msgNotValid)
		}
	}
	if s, ok := b.str("channel", true); ok {
		if s == "sms" || s == "viber" {
			r.Channel = s
		} else {
			b.errs.add("channel", msgChoice)
		}
	}
	if s, ok := b.str("sender", true); ok {
		// An SMS sender follows the SMS rules; a Viber sender name may be longer (BSG's own
		// Viber example, "VIBER_SENDER", has 12 characters).
		if (r.Channel == "viber" && validViberSender(s)) || (r.Channel != "viber" && validSender(s)) {
			r.Sender = s
		} else {
			b.errs.add("sender", msgNotValid)
		}
	}
	if s, ok := b.str("sender_alt", false); ok && s != "" {
		if validSender(s) {
			r.SenderAlt = s
		} else {
			b.errs.add("sender_alt", msgNotValid)
		}
	}
	r.TemplateID = b.templateID()
	r.Lifetime, _ = b.integer("code_lifetime", 30, 300)
	r.MaxTries, _ = b.integer("code_max_tries", 1, 5)
	r.Digits, _ = b.integer("code_digits", 3, 9)
	if errs := b.done(); errs != nil {
		return nil, invalidFields(errs)
	}
	if r.Channel != "viber" {
		r.SenderAlt = "" // BSG: "used only for the Viber channel"
	}
	return &r, nil
}

// templateID reads template_id: an integer of 1–9 digits, also accepted as a string of digits
// (BSG's own example sends "12").
func (b *body) templateID() int64 {
	v := b.raw("template_id")
	if v == nil {
		b.errs.add("template_id", msgBlank)
		return 0
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		if !templateIDRE.MatchString(s) {
			b.errs.add("template_id", msgNotValid)
			return 0
		}
		n, _ := strconv.ParseInt(s, 10, 64)
		return n
	}
	n, ok := jsonInt(v)
	if !ok {
		b.errs.add("template_id", msgType("integer"))
		return 0
	}
	if n < 1 || n > 999_999_999 {
		b.errs.add("template_id", msgNotValid)
		return 0
	}
	return n
}

// decodeVerify validates a verify_otp body and returns the access code.
func decodeVerify(raw []byte) (string, *apiError) {
	b, e := parseBody(raw, false)
	if e != nil {
		return "", e
	}
	code, ok := b.str("access_code", true)
	if ok && !accessCodeRE.MatchString(code) {
		b.errs.add("access_code", msgNotValid)
	}
	if errs := b.done(); errs != nil {
		return "", invalidFields(errs)
	}
	return code, nil
}

// templateRequest is a decoded otp_template_create body.
type templateRequest struct {
	Name, Text string
	Countries  []string
}

// decodeTemplate validates an otp_template_create body (OtpTemplateCreateRequest). Its errors
// are a list, as BSG answers for templates.
func decodeTemplate(raw []byte) (*templateRequest, *apiError) {
	b, e := parseBody(raw, false)
	if e != nil {
		return nil, e
	}
	var r templateRequest
	r.Name, _ = b.str("name", true)
	r.Text, _ = b.str("text", true)
	if v := b.raw("countries"); v != nil {
		if err := json.Unmarshal(v, &r.Countries); err != nil {
			b.errs.add("countries", msgType("array"))
		}
		for _, c := range r.Countries {
			if !countryCodeRE.MatchString(c) {
				b.errs.add("countries", msgChoice)
				break
			}
		}
	}
	if errs := b.done(); errs != nil {
		return nil, invalidList(errs)
	}
	return &r, nil
}

// decodeLogin reads the api_key of a login body.
func decodeLogin(raw []byte) (string, *apiError) {
	b, e := parseBody(raw, false)
	if e != nil {
		return "", e
	}
	key, _ := b.str("api_key", true)
	if errs := b.done(); errs != nil {
		return "", invalidFields(errs)
	}
	return key, nil
}

// Dates: BSG shows "2022-04-28 14:21:16" (UTC).
const wireTime = "2006-01-02 15:04:05"

// parseDate reads a list period bound: a date ("2022-12-01", the whole day) or a date and time
// ("2022-12-01 10:00:00", "2022-12-01T10:00:00Z"). end makes a bare date mean the end of that day.
func parseDate(s string, end bool) (time.Time, bool) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t, true
	}
	for _, layout := range []string{wireTime, "2006-01-02T15:04:05", time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			if end { // inclusive to the second
				t = t.Add(time.Second)
			}
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
