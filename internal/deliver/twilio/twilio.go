// Package twilio is a delivery provider for Twilio's Programmable Messaging API and the
// services that copy it: POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json with a form
// body (To, From or MessagingServiceSid, Body, StatusCallback) and HTTP Basic authentication
// AccountSid:AuthToken. SMS and WhatsApp go through Messages.json; voice places a call through
// Calls.json that reads the message out (TwiML <Say>, digits spoken one by one, twice).
//
// Errors follow Twilio's error JSON ({"code", "message", "more_info", "status"}): the numeric code
// decides whether a failure is permanent (an invalid or unreachable number, an unsubscribed
// recipient) or worth another attempt, possibly at another provider (bad credentials, rate
// limits, server errors). Only the status and the code are kept; Twilio's message text, which can
// quote the number, is dropped.
//
// Status callbacks (MessageSid/MessageStatus, or CallSid/CallStatus for calls) arrive at otpd's
// receipt endpoint; the StatusCallback sent with each message is the provider's receipt URL.
package twilio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/store"
)

// Type is the provider type name.
const Type = "twilio"

// DefaultBaseURL is Twilio's API.
const DefaultBaseURL = "https://api.twilio.com"

func init() {
	deliver.RegisterProviderType(deliver.ProviderType{
		Name:     Type,
		Channels: []string{"sms", "whatsapp", "voice"},
		New:      func(cfg deliver.ProviderConfig) (deliver.Sender, error) { return New(cfg) },
	})
}

// Settings configure a Twilio-compatible provider. The secret auth_token is required.
type Settings struct {
	AccountSID string `json:"account_sid"`
	// From is the sender: an E.164 number or an alphanumeric sender id. A message's own sender
	// wins. Either From or MessagingServiceSID is required.
	From                string `json:"from,omitempty"`
	MessagingServiceSID string `json:"messaging_service_sid,omitempty"`
	// BaseURL is the API's address. Default https://api.twilio.com.
	BaseURL string `json:"base_url,omitempty"`
	// StatusCallback overrides the receipt URL sent with each message ("-": none).
	StatusCallback string `json:"status_callback,omitempty"`
	// VoiceLanguage is the language of spoken messages. Default en-US.
	VoiceLanguage string `json:"voice_language,omitempty"`
	// Timeout bounds one request. Default 10s.
	Timeout deliver.Duration `json:"timeout,omitempty"`
}

// PermanentCodes are the Twilio error codes that no retry can fix: the number is invalid, cannot
// be reached, is not a mobile, has opted out, or the message cannot be routed to it.
var PermanentCodes = []int{21211, 21214, 21217, 21401, 21407, 21408, 21610, 21612, 21614, 21617}

// Sender sends through one Twilio account.
type Sender struct {
	id, sid, token, from, service, base, callback, lang string
	client                                              *http.Client
}

var sidRE = regexp.MustCompile(`^[A-Za-z0-9]{2,64}$`)

// New builds a Sender; it checks the settings and that the auth_token secret is there.
func New(cfg deliver.ProviderConfig) (*Sender, error) {
	var st Settings
	if err := deliver.DecodeSettings(cfg.Settings, &st); err != nil {
		return nil, err
	}
	s := &Sender{id: cfg.ID, sid: st.AccountSID, token: cfg.Secrets["auth_token"], from: st.From,
		service: st.MessagingServiceSID, base: strings.TrimRight(st.BaseURL, "/"), lang: st.VoiceLanguage}
	var errs []error
	if !sidRE.MatchString(s.sid) {
		errs = append(errs, errors.New("account_sid is required (letters and digits)"))
	}
	if s.token == "" {
		errs = append(errs, errors.New("the secret auth_token is required"))
	}
	if s.from == "" && s.service == "" {
		errs = append(errs, errors.New("from or messaging_service_sid is required"))
	}
	if s.service != "" && !sidRE.MatchString(s.service) {
		errs = append(errs, errors.New("messaging_service_sid must be letters and digits"))
	}
	if s.base == "" {
		s.base = DefaultBaseURL
	}
	if u, err := url.Parse(s.base); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, errors.New("base_url must be an absolute http:// or https:// URL"))
	}
	switch st.StatusCallback {
	case "":
		s.callback = cfg.ReceiptURL
	case "-":
	default:
		if u, err := url.Parse(st.StatusCallback); err != nil || !u.IsAbs() {
			errs = append(errs, errors.New("status_callback must be an absolute URL"))
		}
		s.callback = st.StatusCallback
	}
	if s.lang == "" {
		s.lang = "en-US"
	}
	timeout := time.Duration(st.Timeout)
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	if timeout < 0 || timeout > 2*time.Minute {
		errs = append(errs, errors.New("timeout must be between 0 and 2m"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.client = deliver.HTTPClient(timeout, cfg.RestrictDestinations)
	return s, nil
}

// Name is the provider's id.
func (s *Sender) Name() string { return s.id }

// ReportsReceipts: Twilio calls the status callback.
func (s *Sender) ReportsReceipts() bool { return s.callback != "" }

// Send creates a Message (sms, whatsapp) or a Call (voice) and returns its sid.
func (s *Sender) Send(ctx context.Context, m deliver.Message) (string, error) {
	form := url.Values{}
	from := s.from
	if m.Sender != "" {
		from = m.Sender
	}
	resource := "Messages.json"
	switch m.Channel {
	case "voice":
		resource = "Calls.json"
		form.Set("To", m.To)
		if from == "" {
			return "", deliver.Permanent(errors.New("a call needs a from number"))
		}
		form.Set("From", from)
		form.Set("Twiml", twiml(m.Text, s.lang))
	case "whatsapp":
		form.Set("To", "whatsapp:"+m.To)
		if from != "" {
			form.Set("From", "whatsapp:"+strings.TrimPrefix(from, "whatsapp:"))
		} else {
			form.Set("MessagingServiceSid", s.service)
		}
		form.Set("Body", m.Text)
	default:
		form.Set("To", m.To)
		if s.service != "" && m.Sender == "" {
			form.Set("MessagingServiceSid", s.service)
		} else {
			form.Set("From", from)
		}
		form.Set("Body", m.Text)
	}
	if s.callback != "" {
		form.Set("StatusCallback", s.callback)
	}
	endpoint := s.base + "/2010-04-01/Accounts/" + url.PathEscape(s.sid) + "/" + resource
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", deliver.Permanent(errors.New("the API URL is not valid"))
	}
	req.SetBasicAuth(s.sid, s.token)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "otpd")
	// Twilio itself does not deduplicate by it, but compatible gateways may: the same id on every
	// attempt of a message.
	req.Header.Set("Idempotency-Key", m.ID)
	res, err := s.client.Do(req)
	if err != nil {
		return "", transportError(ctx, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("twilio: reading the answer (HTTP %d) failed", res.StatusCode)
	}
	var ans struct {
		SID  string `json:"sid"`
		Code int    `json:"code"`
	}
	jsonErr := json.Unmarshal(body, &ans)
	if res.StatusCode/100 != 2 {
		if ans.Code != 0 {
			err := fmt.Errorf("twilio: HTTP %d, error %d", res.StatusCode, ans.Code)
			if slices.Contains(PermanentCodes, ans.Code) {
				return "", deliver.Permanent(err)
			}
			return "", err
		}
		return "", fmt.Errorf("twilio: HTTP %d", res.StatusCode)
	}
	if jsonErr != nil || ans.SID == "" {
		return "", fmt.Errorf("twilio: the answer (HTTP %d) has no sid", res.StatusCode)
	}
	// Twilio took the message: a sid that does not look like one is treated as absent rather
	// than as a failure (which would send the message again).
	return deliver.ProviderMessageID(ans.SID), nil
}

// digitsRE finds the runs of digits a voice should read one by one (codes, not years of text).
var digitsRE = regexp.MustCompile(`[0-9]{3,}`)

// twiml reads text out twice, codes digit by digit.
func twiml(text, lang string) string {
	spoken := digitsRE.ReplaceAllStringFunc(text, func(d string) string {
		return strings.Join(strings.Split(d, ""), ", ")
	})
	say := `<Say language="` + html.EscapeString(lang) + `">` + html.EscapeString(spoken) + `</Say>`
	return `<Response>` + say + `<Pause length="1"/>` + say + `</Response>`
}

// transportError describes a failed request without its URL.
func transportError(ctx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	switch {
	case deliver.IsPrivateDestination(err):
		return errors.New("twilio: the API's address is not a public address; tenant providers may not connect there")
	case ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()):
		return errors.New("twilio: no answer in time")
	case errors.As(err, new(*net.OpError)):
		return errors.New("twilio: the API could not be reached")
	}
	return errors.New("twilio: the request failed")
}

// Statuses map Twilio's message and call statuses to message statuses; others (received,
// receiving, in-progress of an inbound message) are not receipts.
var Statuses = map[string]string{
	"accepted": store.MsgAccepted, "queued": store.MsgAccepted, "sending": store.MsgAccepted,
	"sent": store.MsgAccepted, "scheduled": store.MsgAccepted,
	"delivered": store.MsgDelivered, "read": store.MsgDelivered,
	"undelivered": store.MsgUndelivered,
	"failed":      store.MsgFailed, "canceled": store.MsgFailed,
	// calls
	"initiated": store.MsgAccepted, "ringing": store.MsgAccepted, "in-progress": store.MsgAccepted,
	"completed": store.MsgDelivered, "busy": store.MsgUndelivered, "no-answer": store.MsgUndelivered,
}

// ParseReceipts reads a status callback: a form with MessageSid and MessageStatus (or CallSid
// and CallStatus), and ErrorCode when there is one.
func (s *Sender) ParseReceipts(contentType string, query url.Values, body []byte) ([]deliver.Receipt, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt != "application/x-www-form-urlencoded" {
		return nil, ErrReceiptType
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errors.New("twilio: the callback is not a valid form")
	}
	id, status := form.Get("MessageSid"), form.Get("MessageStatus")
	if id == "" {
		id, status = form.Get("CallSid"), form.Get("CallStatus")
	}
	st, ok := Statuses[strings.ToLower(status)]
	if id == "" || !ok {
		return nil, nil
	}
	r := deliver.Receipt{ProviderMessageID: id, Status: st}
	if code := form.Get("ErrorCode"); code != "" && len(code) <= 16 && strings.Trim(code, "0123456789") == "" {
		r.Error = code
	}
	return []deliver.Receipt{r}, nil
}

// ErrReceiptType: Twilio's callbacks are forms.
var ErrReceiptType = errors.New("twilio: a status callback is a form (application/x-www-form-urlencoded)")
