package email

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/testsmtp"
)

const secret = "s3cr3t p@ss/word"

var parseTests = []struct {
	raw  string
	want URL
}{
	{"smtp://mail.example.com", URL{Host: "mail.example.com", Port: 587}},
	{"smtps://mail.example.com", URL{Host: "mail.example.com", Port: 465, ImplicitTLS: true}},
	{"SMTP://mail.example.com:2525/", URL{Host: "mail.example.com", Port: 2525}},
	{"smtp://u%40x:p%3As%2Fs@[::1]:25?insecure_auth=1",
		URL{Host: "::1", Port: 25, Username: "u@x", Password: "p:s/s", InsecureAuth: true}},
	{"smtps://user:pa@ss@host:10465?insecure_auth=false",
		URL{Host: "host", Port: 10465, ImplicitTLS: true, Username: "user", Password: "pa@ss"}},
}

var parseErrors = []struct{ raw, want string }{
	{"", "empty"},
	{"mail.example.com:587", "scheme"},
	{"http://user:s3cr3tpw@host", `scheme "http"`},
	{"smtp://user:s3cr3tpw@", "no host"},
	{"smtp://user:" + secret + "@host", "does not parse"},
	{"smtp://host:0", "port"},
	{"smtp://host:70000", "port"},
	{"smtp://user:pa%zzss@host", "does not parse"},
	{"smtp://user:s3cr3tpw@host/path", "path"},
	{"smtp://host#frag", "fragment"},
	{"smtp://host?tls=off", `"tls" is not known`},
	{"smtp://host?insecure_auth=maybe", "insecure_auth"},
	{"smtp://:pw@host", "without a user name"},
	{"smtp://user@host", "no password"},
	{"smtp:host", "smtp://host:port"},
}

func TestParseURL(t *testing.T) {
	for _, tt := range parseTests {
		got, err := ParseURL(tt.raw)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tt.raw, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseURL(%q) = %+v, want %+v", tt.raw, got, tt.want)
		}
		if got.Password != "" && strings.Contains(got.String(), got.Password) {
			t.Errorf("String() shows the password: %s", got)
		}
	}
	for _, tt := range parseErrors {
		_, err := ParseURL(tt.raw)
		if err == nil {
			t.Errorf("ParseURL(%q): no error", tt.raw)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseURL(%q) = %v, want it to mention %q", tt.raw, err, tt.want)
		}
		if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "zz") {
			t.Errorf("ParseURL(%q) error leaks the password: %v", tt.raw, err)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, c := range []Config{
		{URL: "smtp://host", From: ""},
		{URL: "smtp://host", From: "not an address"},
		{URL: "smtp://host", From: "a@b", Timeout: -1},
		{URL: "ftp://host", From: "a@b"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}
	s, err := New(Config{URL: "smtp://host", From: `"otpd" <no-reply@example.com>`})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "smtp" || s.MessageID("m1") != "m1@example.com" {
		t.Errorf("Name %q, MessageID %q", s.Name(), s.MessageID("m1"))
	}
}

func newSender(t *testing.T, c Config) *Sender {
	t.Helper()
	if c.From == "" {
		c.From = "otpd <no-reply@otpd.example>"
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func message(id, to string) deliver.Message {
	return deliver.Message{
		ID: id, TenantID: "t1", Channel: "email", To: to,
		Content: deliver.Content{
			Subject: "Your verification code",
			Text:    "Your code is 482913. It expires in 10 minutes.",
			HTML:    "<p>Your code is <b>482913</b>.</p>",
		},
	}
}

// sendOK sends through s and checks what arrived at srv.
func sendOK(t *testing.T, s *Sender, srv *testsmtp.Server, m deliver.Message) testsmtp.Mail {
	t.Helper()
	pid, err := s.Send(context.Background(), m)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if pid != m.ID+"@otpd.example" {
		t.Errorf("provider id = %q", pid)
	}
	got := srv.WaitFor(t, m.To, 5*time.Second)
	if !strings.Contains(got.Text, "482913") {
		t.Errorf("text part %q does not contain the code", got.Text)
	}
	if m.HTML != "" && !strings.Contains(got.HTML, "<b>482913</b>") {
		t.Errorf("html part = %q", got.HTML)
	}
	if h := got.Header.Get("Message-ID"); h != "<"+m.ID+"@otpd.example>" {
		t.Errorf("Message-ID = %q", h)
	}
	if got.Header.Get("Date") == "" {
		t.Error("no Date header")
	}
	if got.Subject() != m.Subject {
		t.Errorf("Subject = %q", got.Subject())
	}
	if got.From != "no-reply@otpd.example" {
		t.Errorf("envelope from = %q", got.From)
	}
	if got.Header.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("Auto-Submitted = %q", got.Header.Get("Auto-Submitted"))
	}
	return got
}

func TestSendPlain(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	s := newSender(t, Config{URL: srv.URL()})
	got := sendOK(t, s, srv, message("0190a1b2-0000-7000-8000-000000000001", "alice@example.com"))
	if ct := got.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative") {
		t.Errorf("Content-Type = %q", ct)
	}

	textOnly := message("0190a1b2-0000-7000-8000-000000000002", "bob@example.com")
	textOnly.HTML = ""
	got = sendOK(t, s, srv, textOnly)
	if ct := got.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || got.HTML != "" {
		t.Errorf("text-only message: Content-Type %q, HTML %q", ct, got.HTML)
	}
}

func TestSendSTARTTLSAuth(t *testing.T) {
	srvTLS, roots := testsmtp.SelfSignedTLS(t)
	srv := testsmtp.Start(t, testsmtp.Options{Username: "otpd", Password: secret, TLS: srvTLS})
	s := newSender(t, Config{URL: srv.URL(), RootCAs: roots, HeloName: "otpd.test"})
	sendOK(t, s, srv, message("m-starttls", "carol@example.com"))
}

func TestSendSTARTTLSUntrusted(t *testing.T) {
	srvTLS, _ := testsmtp.SelfSignedTLS(t)
	srv := testsmtp.Start(t, testsmtp.Options{TLS: srvTLS})
	s := newSender(t, Config{URL: srv.URL()}) // system roots do not know the test CA
	_, err := s.Send(context.Background(), message("m-untrusted", "dave@example.com"))
	if err == nil || deliver.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("err = %v, want it to mention the certificate", err)
	}
	if srv.Attempts() != 0 {
		t.Errorf("DATA attempts = %d", srv.Attempts())
	}
}

func TestSendSMTPS(t *testing.T) {
	srvTLS, roots := testsmtp.SelfSignedTLS(t)
	srv := testsmtp.Start(t, testsmtp.Options{Username: "otpd", Password: secret, TLS: srvTLS, ImplicitTLS: true})
	if !strings.HasPrefix(srv.URL(), "smtps://") {
		t.Fatalf("URL = %s", srv.URL())
	}
	s := newSender(t, Config{URL: srv.URL(), RootCAs: roots})
	sendOK(t, s, srv, message("m-smtps", "erin@example.com"))
}

func TestSendPlaintextAuth(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{Username: "otpd", Password: secret})

	// Without the opt-in the password never leaves the process.
	u := URL{Host: "127.0.0.1", Username: "otpd", Password: secret}
	_, port, _ := net.SplitHostPort(srv.Addr())
	raw := "smtp://otpd:" + strings.NewReplacer(" ", "%20", "@", "%40", "/", "%2F").Replace(secret) + "@127.0.0.1:" + port
	s := newSender(t, Config{URL: raw})
	if s.URL().Password != u.Password {
		t.Fatalf("password round trip: %q", s.URL().Password)
	}
	_, err := s.Send(context.Background(), message("m-refuse", "frank@example.com"))
	if !errors.Is(err, errPlaintextAuth) || !deliver.IsPermanent(err) {
		t.Fatalf("err = %v, want permanent errPlaintextAuth", err)
	}
	if srv.Attempts() != 0 {
		t.Errorf("DATA attempts = %d", srv.Attempts())
	}

	// With it (the test server's URL adds insecure_auth=1 itself), PLAIN goes over plaintext.
	s = newSender(t, Config{URL: srv.URL()})
	if !s.URL().InsecureAuth {
		t.Fatalf("URL %s lacks insecure_auth", s.URL())
	}
	sendOK(t, s, srv, message("m-insecure", "frank@example.com"))
}

func TestSendWrongPassword(t *testing.T) {
	srvTLS, roots := testsmtp.SelfSignedTLS(t)
	srv := testsmtp.Start(t, testsmtp.Options{Username: "otpd", Password: "right", TLS: srvTLS})
	_, port, _ := net.SplitHostPort(srv.Addr())
	s := newSender(t, Config{URL: "smtp://otpd:" + "wrong%20" + "pw@127.0.0.1:" + port, RootCAs: roots})
	_, err := s.Send(context.Background(), message("m-wrongpw", "grace@example.com"))
	if err == nil || !deliver.IsPermanent(err) {
		t.Fatalf("err = %v, want permanent", err)
	}
	if !strings.Contains(err.Error(), "authentication") || !strings.Contains(err.Error(), "535") {
		t.Errorf("err = %v, want authentication 535", err)
	}
	if strings.Contains(err.Error(), "wrong pw") {
		t.Errorf("err leaks the password: %v", err)
	}
}

func TestSendTemporaryThenOK(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{FailFirst: 1})
	s := newSender(t, Config{URL: srv.URL()})
	m := message("m-451", "heidi@example.com")
	_, err := s.Send(context.Background(), m)
	if err == nil || deliver.IsPermanent(err) || !strings.Contains(err.Error(), "451") {
		t.Fatalf("first send: err = %v, want retryable 451", err)
	}
	if strings.Contains(err.Error(), "482913") {
		t.Errorf("err leaks the body: %v", err)
	}
	sendOK(t, s, srv, m)
	if srv.Attempts() != 2 {
		t.Errorf("DATA attempts = %d, want 2", srv.Attempts())
	}
}

func TestSendRejectedRecipient(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{RejectRecipients: []string{"nobody@example.com"}})
	s := newSender(t, Config{URL: srv.URL()})
	_, err := s.Send(context.Background(), message("m-550", "nobody@example.com"))
	if err == nil || !deliver.IsPermanent(err) || !strings.Contains(err.Error(), "550") {
		t.Fatalf("err = %v, want permanent 550", err)
	}
	if strings.Contains(err.Error(), "nobody") {
		t.Errorf("err names the recipient: %v", err)
	}
}

func TestSendInvalidRecipient(t *testing.T) {
	s := newSender(t, Config{URL: "smtp://127.0.0.1:1"})
	_, err := s.Send(context.Background(), message("m-bad", "not an address"))
	if err == nil || !deliver.IsPermanent(err) {
		t.Fatalf("err = %v, want permanent", err)
	}
}

func TestSendConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := newSender(t, Config{URL: "smtp://" + addr})
	_, err = s.Send(context.Background(), message("m-refused", "ivan@example.com"))
	if err == nil || deliver.IsPermanent(err) {
		t.Fatalf("err = %v, want retryable", err)
	}
}

// A server that accepts the connection and never greets: the send must end at its deadline.
func TestSendTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	s := newSender(t, Config{URL: "smtp://" + l.Addr().String()})

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Send(ctx, message("m-timeout", "judy@example.com"))
	if err == nil || deliver.IsPermanent(err) {
		t.Fatalf("err = %v, want retryable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %v; the context deadline was 300ms", d)
	}
}

// One Sender serves all of a worker's concurrent sends.
func TestSendConcurrent(t *testing.T) {
	srvTLS, roots := testsmtp.SelfSignedTLS(t)
	srv := testsmtp.Start(t, testsmtp.Options{Username: "otpd", Password: secret, TLS: srvTLS})
	s := newSender(t, Config{URL: srv.URL(), RootCAs: roots})
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.Send(context.Background(), message("m-conc-"+string(rune('a'+i)), "user"+string(rune('a'+i))+"@example.com"))
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := len(srv.Messages()); got != n {
		t.Errorf("%d mails, want %d", got, n)
	}
}
