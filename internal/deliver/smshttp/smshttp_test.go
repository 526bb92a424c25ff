package smshttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/deliver/smshttp"
	"github.com/otpd/otpd/internal/store"
)

// seen is one request the provider server received.
type seen struct {
	method, path, rawQuery string
	header                 http.Header
	body                   string
}

// gateway is a real HTTP server on loopback that plays an SMS provider.
type gateway struct {
	*httptest.Server
	mu       sync.Mutex
	requests []seen
	answer   func(w http.ResponseWriter, r *http.Request)
}

func newGateway(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *gateway {
	g := &gateway{answer: answer}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		g.mu.Lock()
		g.requests = append(g.requests, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(b)})
		g.mu.Unlock()
		g.answer(w, r)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *gateway) last(t *testing.T) seen {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.requests) == 0 {
		t.Fatal("the gateway saw no request")
	}
	return g.requests[len(g.requests)-1]
}

func build(t *testing.T, settings string, secrets map[string]string) *smshttp.Sender {
	t.Helper()
	s, err := smshttp.New(deliver.ProviderConfig{ID: "gw-1", Type: smshttp.Type, Channels: []string{"sms"},
		Settings: json.RawMessage(settings), Secrets: secrets, ReceiptURL: "https://otpd.example/v1/receipts/gw-1?token=tok"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

var msg = deliver.Message{ID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", TenantID: "t1", Channel: "sms",
	To: "+4915112345678", Content: deliver.Content{Text: "Your code is 482913.\n\"quoted\" & <tagged>"}}

func TestJSONRequest(t *testing.T) {
	g := newGateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok","messages":[{"id":12345678901234567890}]}`)
	})
	s := build(t, `{
		"url": "`+g.URL+`/v1/{channel}/send?account=acme&to={to}",
		"headers": {"Authorization": "Bearer {secret.api_key}", "X-Ref": "ref-{message_id}"},
		"body": {"to": "{to_digits}", "text": "{text}", "from": "{sender}", "meta": {"n": 1, "cb": "{receipt_url}"}, "list": ["{to}"]},
		"sender": "OTPD",
		"success": {"json_path": "status", "equals": "ok"},
		"message_id": {"json_path": "messages[0].id"}
	}`, map[string]string{"api_key": "k-secret-1"})
	if s.Name() != "gw-1" || s.ReportsReceipts() {
		t.Errorf("Name %q ReportsReceipts %v", s.Name(), s.ReportsReceipts())
	}
	id, err := s.Send(context.Background(), msg)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if id != "12345678901234567890" {
		t.Errorf("provider id = %q (a long number must keep its digits)", id)
	}
	r := g.last(t)
	if r.method != "POST" || r.path != "/v1/sms/send" {
		t.Errorf("request %s %s", r.method, r.path)
	}
	q, _ := url.ParseQuery(r.rawQuery)
	if q.Get("to") != "+4915112345678" || q.Get("account") != "acme" || !strings.Contains(r.rawQuery, "%2B49") {
		t.Errorf("query %q: the plus must be escaped", r.rawQuery)
	}
	if r.header.Get("Authorization") != "Bearer k-secret-1" || r.header.Get("X-Ref") != "ref-"+msg.ID ||
		r.header.Get("Idempotency-Key") != msg.ID || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.header)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("the body is not JSON (the text broke out?): %v\n%s", err, r.body)
	}
	if body["text"] != msg.Text || body["to"] != "4915112345678" || body["from"] != "OTPD" {
		t.Errorf("body %v", body)
	}
	meta := body["meta"].(map[string]any)
	if meta["n"] != float64(1) || meta["cb"] != "https://otpd.example/v1/receipts/gw-1?token=tok" || body["list"].([]any)[0] != "+4915112345678" {
		t.Errorf("nested body %v", body)
	}
	// A message's own sender wins over the default.
	m := msg
	m.Sender = "SHOP"
	if _, err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(g.last(t).body, `"from":"SHOP"`) {
		t.Errorf("sender not taken from the message: %s", g.last(t).body)
	}
}

func TestFormRequestAndBasicAuth(t *testing.T) {
	g := newGateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Message-Id", "MSG-77")
		io.WriteString(w, "OK queued")
	})
	s := build(t, `{
		"url": "`+g.URL+`/send",
		"method": "put",
		"body_format": "form",
		"body": {"dst": "{to}", "msg": "{text}", "ref": "{message_id}"},
		"basic_auth": {"username": "acme", "password": "{secret.password}"},
		"success": {"status": [200], "contains": "OK"},
		"message_id": {"header": "X-Message-Id"},
		"idempotency_header": "-"
	}`, map[string]string{"password": "p@ss word"})
	id, err := s.Send(context.Background(), msg)
	if err != nil || id != "MSG-77" {
		t.Fatalf("Send = %q, %v", id, err)
	}
	r := g.last(t)
	f, _ := url.ParseQuery(r.body)
	if r.method != "PUT" || f.Get("dst") != msg.To || f.Get("msg") != msg.Text || f.Get("ref") != msg.ID {
		t.Errorf("form %s %v", r.method, f)
	}
	req := &http.Request{Header: r.header}
	if u, p, ok := req.BasicAuth(); !ok || u != "acme" || p != "p@ss word" {
		t.Errorf("basic auth %q %q %v", u, p, ok)
	}
	if r.header.Get("Idempotency-Key") != "" {
		t.Error("idempotency header sent although disabled")
	}
}

func TestGetRequest(t *testing.T) {
	g := newGateway(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ID:991") })
	s := build(t, `{"url": "`+g.URL+`/api/{to_digits}/send?text={text}&key={secret.k}", "method": "GET"}`, map[string]string{"k": "a&b=c"})
	if _, err := s.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	r := g.last(t)
	q, _ := url.ParseQuery(r.rawQuery)
	if r.path != "/api/4915112345678/send" || q.Get("text") != msg.Text || q.Get("key") != "a&b=c" || len(q) != 2 {
		t.Errorf("GET %s ? %s", r.path, r.rawQuery)
	}
}

// Failures: which are permanent, which retried, and none of them tells the answer, the URL or a
// secret.
func TestFailures(t *testing.T) {
	status, answer := 0, ""
	g := newGateway(t, func(w http.ResponseWriter, r *http.Request) {
		if status == 302 {
			w.Header().Set("Location", "https://elsewhere.example/")
		}
		w.WriteHeader(status)
		io.WriteString(w, answer)
	})
	s := build(t, `{"url": "`+g.URL+`/send?key={secret.k}", "body": {"t": "{text}"},
		"success": {"json_path": "result.state", "equals": "queued"}}`, map[string]string{"k": "SECRET-KEY-9"})
	secretAnswer := `{"error":"number +4915112345678 is blocked","result":{"state":"rejected"}}`
	for _, tc := range []struct {
		status    int
		answer    string
		permanent bool
		want      string
	}{
		{400, secretAnswer, true, "refused the message (HTTP 400)"},
		{422, secretAnswer, true, "HTTP 422"},
		{401, secretAnswer, false, "answered HTTP 401"}, // our credentials: another provider may work
		{429, secretAnswer, false, "answered HTTP 429"},
		{503, secretAnswer, false, "answered HTTP 503"},
		{302, "", false, "answered HTTP 302"}, // redirects are not followed
		{200, secretAnswer, false, "another result.state"},
		{200, `{"result":{}}`, false, "has no result.state"},
		{200, `not json 482913`, false, "is not JSON"},
	} {
		status, answer = tc.status, tc.answer
		_, err := s.Send(context.Background(), msg)
		if err == nil {
			t.Errorf("%d %s: no error", tc.status, tc.answer)
			continue
		}
		if deliver.IsPermanent(err) != tc.permanent {
			t.Errorf("%d: permanent = %v, want %v (%v)", tc.status, deliver.IsPermanent(err), tc.permanent, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d: error %q, want it to say %q", tc.status, err, tc.want)
		}
		for _, leak := range []string{"blocked", "SECRET-KEY-9", "482913", "+4915112345678", g.URL} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("%d: error %q contains %q", tc.status, err, leak)
			}
		}
	}
}

func TestTransportErrors(t *testing.T) {
	block := make(chan struct{})
	g := newGateway(t, func(w http.ResponseWriter, r *http.Request) { <-block })
	defer close(block)
	s := build(t, `{"url": "`+g.URL+`/send?key={secret.k}", "timeout": "200ms"}`, map[string]string{"k": "SECRET-KEY-9"})
	start := time.Now()
	_, err := s.Send(context.Background(), msg)
	if err == nil || deliver.IsPermanent(err) || !strings.Contains(err.Error(), "did not answer in time") {
		t.Errorf("timeout: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %v", d)
	}
	if err != nil && strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error leaks the URL: %v", err)
	}

	closed := httptest.NewServer(http.NotFoundHandler())
	addr := closed.URL
	closed.Close()
	s = build(t, `{"url": "`+addr+`/send?key={secret.k}"}`, map[string]string{"k": "SECRET-KEY-9"})
	_, err = s.Send(context.Background(), msg)
	if err == nil || deliver.IsPermanent(err) || !strings.Contains(err.Error(), "could not be reached") || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("refused connection: %v", err)
	}
}

func TestHeaderInjectionRefused(t *testing.T) {
	g := newGateway(t, func(w http.ResponseWriter, r *http.Request) {})
	s := build(t, `{"url": "`+g.URL+`/send", "headers": {"X-Text": "{text}"}}`, nil)
	_, err := s.Send(context.Background(), msg) // the text has a line break
	if err == nil || !deliver.IsPermanent(err) || !strings.Contains(err.Error(), "line break") {
		t.Errorf("err = %v", err)
	}
	if len(g.requests) != 0 {
		t.Error("a request with a broken header was sent")
	}
}

func TestSettingsValidation(t *testing.T) {
	for _, tc := range []struct {
		settings string
		secrets  map[string]string
		want     string
	}{
		{`{}`, nil, "url is required"},
		{`{"url": "ftp://x/y"}`, nil, "absolute http"},
		{`{"url": "/relative"}`, nil, "absolute http"},
		{`{"url": "https://x/{nope}"}`, nil, "unknown placeholder {nope}"},
		{`{"url": "https://x/", "headers": {"A": "{secret.missing}"}}`, nil, "names a secret the provider does not have"},
		{`{"url": "https://x/", "body": {"a": "{bogus}"}}`, nil, "body: unknown placeholder"},
		{`{"url": "https://x/", "method": "DELETE"}`, nil, "method must be"},
		{`{"url": "https://x/", "method": "GET", "body": {"a": 1}}`, nil, "GET request has no body"},
		{`{"url": "https://x/", "body_format": "xml"}`, nil, "body_format must be"},
		{`{"url": "https://x/", "body_format": "form", "body": {"a": 1}}`, nil, "object of strings"},
		{`{"url": "https://x/", "body_format": "json"}`, nil, "body is required"},
		{`{"url": "https://x/", "headers": {"Bad Name": "x"}}`, nil, "not a header name"},
		{`{"url": "https://x/", "success": {"equals": "ok"}}`, nil, "needs success.json_path"},
		{`{"url": "https://x/", "success": {"status": [999]}}`, nil, "not an HTTP status"},
		{`{"url": "https://x/", "timeout": "5m"}`, nil, "timeout"},
		{`{"url": "https://x/", "receipts": {"id": "id"}}`, nil, "receipts needs id and status"},
		{`{"url": "https://x/", "receipts": {"id": "id", "status": "s", "statuses": {"X": "gone"}}}`, nil, "not accepted, delivered"},
		{`{"url": "https://x/", "colour": "red"}`, nil, `unknown setting "colour"`},
		{`{"url": 5}`, nil, `setting "url" has the wrong type`},
	} {
		_, err := smshttp.New(deliver.ProviderConfig{ID: "x", Settings: json.RawMessage(tc.settings), Secrets: tc.secrets})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.settings, err, tc.want)
		}
	}
	// A secret's value never shows in an error.
	_, err := smshttp.New(deliver.ProviderConfig{ID: "x", Settings: json.RawMessage(`{"url": "nope {secret.k}"}`),
		Secrets: map[string]string{"k": "TOPSECRET"}})
	if err == nil || strings.Contains(err.Error(), "TOPSECRET") {
		t.Errorf("err = %v", err)
	}
	// The registered type serves sms, viber, voice and whatsapp, not email.
	if _, err := deliver.NewSender(deliver.ProviderConfig{ID: "x", Type: "http", Channels: []string{"email"},
		Settings: json.RawMessage(`{"url":"https://x/"}`)}); err == nil || !strings.Contains(err.Error(), "cannot deliver channel") {
		t.Errorf("email through http: %v", err)
	}
	if _, err := deliver.NewSender(deliver.ProviderConfig{ID: "x", Type: "http", Channels: []string{"viber", "voice"},
		Settings: json.RawMessage(`{"url":"https://x/"}`)}); err != nil {
		t.Errorf("viber and voice through http: %v", err)
	}
}

func TestParseReceipts(t *testing.T) {
	s := build(t, `{"url": "https://x/", "receipts": {"id": "data.msg_id", "status": "data.state", "error": "data.err",
		"statuses": {"OK_HANDSET": "delivered", "BOUNCED": "undelivered"}}}`, nil)
	if !s.ReportsReceipts() {
		t.Error("ReportsReceipts false with receipt rules")
	}
	got, err := s.ParseReceipts("application/json; charset=utf-8", nil,
		[]byte(`[{"data":{"msg_id":"A1","state":"ok_handset"}},{"data":{"msg_id":77,"state":"BOUNCED","err":"E\n42"}},
		{"data":{"msg_id":"A3","state":"mystery"}},{"data":{"state":"DELIVRD"}},{"data":{"msg_id":"A5","state":"Delivrd"}}]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []deliver.Receipt{
		{ProviderMessageID: "A1", Status: store.MsgDelivered},
		{ProviderMessageID: "77", Status: store.MsgUndelivered, Error: "E42"},
		{ProviderMessageID: "A5", Status: store.MsgDelivered},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("receipt %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	f := build(t, `{"url": "https://x/", "receipts": {"id": "MessageId", "status": "Status"}}`, nil)
	got, err = f.ParseReceipts("application/x-www-form-urlencoded", url.Values{"Status": {"failed"}}, []byte("MessageId=Z9&Status=expired"))
	if err != nil || len(got) != 1 || got[0] != (deliver.Receipt{ProviderMessageID: "Z9", Status: store.MsgUndelivered}) {
		t.Errorf("form receipt = %+v, %v (the body wins over the query)", got, err)
	}
	got, err = f.ParseReceipts("", url.Values{"MessageId": {"Q1"}, "Status": {"accepted"}}, nil)
	if err != nil || len(got) != 1 || got[0].Status != store.MsgAccepted {
		t.Errorf("query-only receipt = %+v, %v", got, err)
	}
	if _, err := f.ParseReceipts("text/plain", nil, []byte("x")); !errors.Is(err, smshttp.ErrReceiptType) {
		t.Errorf("text/plain receipt: %v", err)
	}
	if _, err := f.ParseReceipts("application/json", nil, []byte("{")); err == nil {
		t.Error("broken JSON receipt accepted")
	}
	if _, err := build(t, `{"url": "https://x/"}`, nil).ParseReceipts("application/json", nil, []byte(`{}`)); err == nil {
		t.Error("receipts parsed without receipt rules")
	}
}
