package testsmtp

import (
	"crypto/tls"
	"net/smtp"
	"strings"
	"testing"
	"time"
)

// These tests drive the server with the standard library's client, independently of the
// go-mail based sender that is tested against it elsewhere.

const multipartMsg = "From: a@example.com\r\n" +
	"To: b@example.com\r\n" +
	"Subject: =?UTF-8?q?Your_code_=E2=9C=93?=\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=XYZ\r\n" +
	"\r\n" +
	"--XYZ\r\n" +
	"Content-Type: text/plain; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Your code is 123456=\r\n" +
	" =E2=9C=93\r\n" +
	"--XYZ\r\n" +
	"Content-Type: text/html; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"PHA+WW91ciBjb2RlIGlz\r\nIDxiPjEyMzQ1NjwvYj48L3A+\r\n" +
	"--XYZ--\r\n"

func TestPlainMultipart(t *testing.T) {
	s := Start(t, Options{})
	if err := smtp.SendMail(s.Addr(), nil, "a@example.com", []string{"b@example.com"}, []byte(multipartMsg)); err != nil {
		t.Fatal(err)
	}
	m := s.WaitFor(t, "B@example.com", 5*time.Second)
	if m.From != "a@example.com" || len(m.To) != 1 || m.To[0] != "b@example.com" {
		t.Errorf("envelope = %q %q", m.From, m.To)
	}
	if m.Text != "Your code is 123456 ✓\r\n" && m.Text != "Your code is 123456 ✓" {
		t.Errorf("Text = %q", m.Text)
	}
	if m.HTML != "<p>Your code is <b>123456</b></p>" {
		t.Errorf("HTML = %q", m.HTML)
	}
	if got := m.Subject(); got != "Your code ✓" {
		t.Errorf("Subject() = %q", got)
	}
	if s.Attempts() != 1 || len(s.Messages()) != 1 {
		t.Errorf("attempts %d, messages %d", s.Attempts(), len(s.Messages()))
	}
	if s.URL() != "smtp://"+s.Addr() {
		t.Errorf("URL = %q", s.URL())
	}
}

func TestFailFirstAndReject(t *testing.T) {
	s := Start(t, Options{FailFirst: 1, RejectRecipients: []string{"nobody@example.com"}})
	msg := []byte("Subject: x\r\n\r\nhello\r\n")
	err := smtp.SendMail(s.Addr(), nil, "a@example.com", []string{"b@example.com"}, msg)
	if err == nil || !strings.HasPrefix(err.Error(), "451") {
		t.Fatalf("first send: %v, want 451", err)
	}
	if err := smtp.SendMail(s.Addr(), nil, "a@example.com", []string{"b@example.com"}, msg); err != nil {
		t.Fatalf("second send: %v", err)
	}
	err = smtp.SendMail(s.Addr(), nil, "a@example.com", []string{"nobody@example.com"}, msg)
	if err == nil || !strings.HasPrefix(err.Error(), "550") {
		t.Fatalf("rejected rcpt: %v, want 550", err)
	}
	if got := s.WaitFor(t, "b@example.com", time.Second).Text; got != "hello\r\n" {
		t.Errorf("Text = %q", got)
	}
	if s.Attempts() != 2 {
		t.Errorf("Attempts = %d, want 2", s.Attempts())
	}
}

func TestAuthSTARTTLS(t *testing.T) {
	srvTLS, roots := SelfSignedTLS(t)
	s := Start(t, Options{Username: "u", Password: "p w", TLS: srvTLS})
	if want := "smtp://u:p%20w@" + s.Addr(); s.URL() != want {
		t.Errorf("URL = %q, want %q", s.URL(), want)
	}
	dial := func() *smtp.Client {
		c, err := smtp.Dial(s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := dial()
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered before STARTTLS")
	}
	if err := c.Mail("a@example.com"); err == nil {
		t.Error("MAIL accepted without AUTH")
	}
	clientTLS := &tls.Config{ServerName: "127.0.0.1", RootCAs: roots}
	if err := c.StartTLS(clientTLS); err != nil {
		t.Fatal(err)
	}
	// A failed AUTH makes net/smtp close the connection, so the good one gets its own.
	if err := c.Auth(smtp.PlainAuth("", "u", "wrong", "127.0.0.1")); err == nil || !strings.HasPrefix(err.Error(), "535") {
		t.Fatalf("wrong password: %v", err)
	}
	c = dial()
	if err := c.StartTLS(clientTLS); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(smtp.PlainAuth("", "u", "p w", "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatal(err)
	}
}

func TestImplicitTLSLogin(t *testing.T) {
	srvTLS, roots := SelfSignedTLS(t)
	s := Start(t, Options{Username: "u", Password: "p", TLS: srvTLS, ImplicitTLS: true})
	if !strings.HasPrefix(s.URL(), "smtps://u:p@") {
		t.Errorf("URL = %q", s.URL())
	}
	conn, err := tls.Dial("tcp", s.Addr(), &tls.Config{ServerName: "localhost", RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(loginAuth{"u", "p"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatal(err)
	}
}

type loginAuth struct{ user, pass string }

func (a loginAuth) Start(*smtp.ServerInfo) (string, []byte, error) { return "LOGIN", nil, nil }

func (a loginAuth) Next(from []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	switch string(from) {
	case "Username:":
		return []byte(a.user), nil
	case "Password:":
		return []byte(a.pass), nil
	}
	return nil, nil
}
