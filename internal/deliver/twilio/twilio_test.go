package twilio_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/deliver/twilio"
	"github.com/otpd/otpd/internal/store"
)

// api is a Twilio-compatible Messages/Calls server on loopback.
type api struct {
	*httptest.Server
	mu    sync.Mutex
	forms []url.Values
	paths []string
	keys  []string
	fail  func(n int) (status int, body string) // nil: accept
}

func newAPI(t *testing.T) *api {
	a := &api{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		sid, tok, ok := r.BasicAuth()
		if !ok || sid != "AC0123456789abcdef" || tok != "token-xyz" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}`)
			return
		}
		if r.Method != "POST" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			w.WriteHeader(405)
			return
		}
		r.ParseForm()
		a.mu.Lock()
		a.forms = append(a.forms, r.PostForm)
		a.paths = append(a.paths, r.URL.Path)
		a.keys = append(a.keys, r.Header.Get("Idempotency-Key"))
		n := len(a.forms)
		a.mu.Unlock()
		if a.fail != nil {
			if st, body := a.fail(n); st != 0 {
				w.WriteHeader(st)
				fmt.Fprint(w, body)
				return
			}
		}
		prefix := "SM"
		if strings.HasSuffix(r.URL.Path, "/Calls.json") {
			prefix = "CA"
		}
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"sid": "%s%032d", "status": "queued", "to": %q, "body": %q}`, prefix, n, r.PostForm.Get("To"), r.PostForm.Get("Body"))
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *api) last() (string, url.Values, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.paths[len(a.paths)-1], a.forms[len(a.forms)-1], a.keys[len(a.keys)-1]
}

func sender(t *testing.T, a *api, settings string, token string) *twilio.Sender {
	t.Helper()
	s, err := twilio.New(deliver.ProviderConfig{ID: "twilio-main", Type: twilio.Type, Channels: []string{"sms"},
		Settings: json.RawMessage(settings), Secrets: map[string]string{"auth_token": token},
		ReceiptURL: "https://otpd.example/v1/receipts/twilio-main?token=r"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var msg = deliver.Message{ID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Channel: "sms", To: "+15005550006",
	Content: deliver.Content{Text: "Your verification code is 482913."}}

func TestSendSMS(t *testing.T) {
	a := newAPI(t)
	s := sender(t, a, `{"account_sid": "AC0123456789abcdef", "from": "+15005550001", "base_url": "`+a.URL+`/"}`, "token-xyz")
	sid, err := s.Send(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if sid != fmt.Sprintf("SM%032d", 1) {
		t.Errorf("sid = %q", sid)
	}
	path, f, key := a.last()
	if path != "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json" {
		t.Errorf("path %s", path)
	}
	if f.Get("To") != "+15005550006" || f.Get("From") != "+15005550001" || f.Get("Body") != msg.Text ||
		f.Get("StatusCallback") != "https://otpd.example/v1/receipts/twilio-main?token=r" || key != msg.ID {
		t.Errorf("form %v key %q", f, key)
	}
	// The message's sender id replaces the default.
	m := msg
	m.Sender = "ACME"
	if _, err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if _, f, _ := a.last(); f.Get("From") != "ACME" {
		t.Errorf("From = %q", f.Get("From"))
	}
	if !s.ReportsReceipts() || s.Name() != "twilio-main" {
		t.Error("name or receipts")
	}
}

func TestMessagingServiceWhatsAppVoice(t *testing.T) {
	a := newAPI(t)
	s := sender(t, a, `{"account_sid": "AC0123456789abcdef", "messaging_service_sid": "MG00112233", "from": "+15005550001",
		"base_url": "`+a.URL+`", "status_callback": "-", "voice_language": "de-DE"}`, "token-xyz")
	if s.ReportsReceipts() {
		t.Error("receipts without a status callback")
	}
	if _, err := s.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	if _, f, _ := a.last(); f.Get("MessagingServiceSid") != "MG00112233" || f.Has("From") || f.Has("StatusCallback") {
		t.Errorf("messaging service form %v", f)
	}
	wa := msg
	wa.Channel = "whatsapp"
	if _, err := s.Send(context.Background(), wa); err != nil {
		t.Fatal(err)
	}
	if _, f, _ := a.last(); f.Get("To") != "whatsapp:+15005550006" || f.Get("From") != "whatsapp:+15005550001" {
		t.Errorf("whatsapp form %v", f)
	}
	call := msg
	call.Channel = "voice"
	sid, err := s.Send(context.Background(), call)
	if err != nil || !strings.HasPrefix(sid, "CA") {
		t.Fatalf("call: %q %v", sid, err)
	}
	path, f, _ := a.last()
	want := `<Response><Say language="de-DE">Your verification code is 4, 8, 2, 9, 1, 3.</Say><Pause length="1"/>` +
		`<Say language="de-DE">Your verification code is 4, 8, 2, 9, 1, 3.</Say></Response>`
	if !strings.HasSuffix(path, "/Calls.json") || f.Get("Twiml") != want || f.Get("From") != "+15005550001" {
		t.Errorf("call %s %v", path, f)
	}
	// Markup in the text is escaped, not interpreted.
	call.Text = `code 123456 </Say><Play>http://evil/</Play>`
	if _, err := s.Send(context.Background(), call); err != nil {
		t.Fatal(err)
	}
	if _, f, _ := a.last(); strings.Contains(f.Get("Twiml"), "<Play>") {
		t.Errorf("TwiML injection: %s", f.Get("Twiml"))
	}
}

func TestErrors(t *testing.T) {
	a := newAPI(t)
	s := sender(t, a, `{"account_sid": "AC0123456789abcdef", "from": "+15005550001", "base_url": "`+a.URL+`"}`, "token-xyz")
	for _, tc := range []struct {
		status    int
		body      string
		permanent bool
		want      string
	}{
		{400, `{"code": 21211, "message": "The 'To' number +15005550006 is not a valid phone number.", "status": 400}`, true, "twilio: HTTP 400, error 21211"},
		{400, `{"code": 21610, "message": "Attempt to send to unsubscribed recipient +15005550006", "status": 400}`, true, "error 21610"},
		{429, `{"code": 20429, "message": "Too Many Requests", "status": 429}`, false, "HTTP 429, error 20429"},
		{500, `<html>oops 482913</html>`, false, "twilio: HTTP 500"},
		{201, `{"status": "queued"}`, false, "has no sid"},
	} {
		a.fail = func(int) (int, string) { return tc.status, tc.body }
		_, err := s.Send(context.Background(), msg)
		if err == nil || deliver.IsPermanent(err) != tc.permanent || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d %s: err %v (permanent %v), want %q permanent %v", tc.status, tc.body, err, deliver.IsPermanent(err), tc.want, tc.permanent)
		}
		if err != nil && (strings.Contains(err.Error(), "+1500") || strings.Contains(err.Error(), "482913")) {
			t.Errorf("error leaks the answer: %v", err)
		}
	}
	a.fail = nil
	// Wrong credentials: Twilio's 20003, retried (another provider may work).
	bad := sender(t, a, `{"account_sid": "AC0123456789abcdef", "from": "+15005550001", "base_url": "`+a.URL+`"}`, "wrong")
	_, err := bad.Send(context.Background(), msg)
	if err == nil || deliver.IsPermanent(err) || !strings.Contains(err.Error(), "HTTP 401, error 20003") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("bad credentials: %v", err)
	}
}

func TestSettings(t *testing.T) {
	for _, tc := range []struct{ settings, token, want string }{
		{`{"from": "+1"}`, "t", "account_sid is required"},
		{`{"account_sid": "AC1"}`, "t", "from or messaging_service_sid"},
		{`{"account_sid": "AC1", "from": "+1"}`, "", "auth_token is required"},
		{`{"account_sid": "AC1", "from": "+1", "base_url": "api.twilio.com"}`, "t", "base_url must be"},
		{`{"account_sid": "AC1", "from": "+1", "status_callback": "/relative"}`, "t", "status_callback must be"},
		{`{"account_sid": "AC1", "from": "+1", "sid": "x"}`, "t", `unknown setting "sid"`},
		{`{"account_sid": "AC/../1", "from": "+1"}`, "t", "account_sid is required"},
	} {
		_, err := twilio.New(deliver.ProviderConfig{ID: "x", Settings: json.RawMessage(tc.settings), Secrets: map[string]string{"auth_token": tc.token}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.settings, err, tc.want)
		}
	}
	if _, err := deliver.NewSender(deliver.ProviderConfig{ID: "x", Type: "twilio", Channels: []string{"viber"},
		Settings: json.RawMessage(`{"account_sid": "AC1", "from": "+1"}`), Secrets: map[string]string{"auth_token": "t"}}); err == nil {
		t.Error("viber through twilio accepted")
	}
}

func TestParseReceipts(t *testing.T) {
	s := sender(t, newAPI(t), `{"account_sid": "AC0123456789abcdef", "from": "+15005550001"}`, "token-xyz")
	for _, tc := range []struct {
		body string
		want []deliver.Receipt
	}{
		{"MessageSid=SM1&MessageStatus=delivered&To=%2B15005550006", []deliver.Receipt{{ProviderMessageID: "SM1", Status: store.MsgDelivered}}},
		{"MessageSid=SM2&MessageStatus=undelivered&ErrorCode=30003", []deliver.Receipt{{ProviderMessageID: "SM2", Status: store.MsgUndelivered, Error: "30003"}}},
		{"MessageSid=SM3&MessageStatus=sent", []deliver.Receipt{{ProviderMessageID: "SM3", Status: store.MsgAccepted}}},
		{"MessageSid=SM4&MessageStatus=failed&ErrorCode=x%0Ay", []deliver.Receipt{{ProviderMessageID: "SM4", Status: store.MsgFailed}}},
		{"CallSid=CA1&CallStatus=no-answer", []deliver.Receipt{{ProviderMessageID: "CA1", Status: store.MsgUndelivered}}},
		{"CallSid=CA2&CallStatus=completed", []deliver.Receipt{{ProviderMessageID: "CA2", Status: store.MsgDelivered}}},
		{"MessageSid=SM5&MessageStatus=received", nil},
		{"MessageStatus=delivered", nil},
	} {
		got, err := s.ParseReceipts("application/x-www-form-urlencoded", nil, []byte(tc.body))
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.body, got, err, tc.want)
		}
	}
	if _, err := s.ParseReceipts("application/json", nil, []byte(`{}`)); err != twilio.ErrReceiptType {
		t.Errorf("JSON callback: %v", err)
	}
}
