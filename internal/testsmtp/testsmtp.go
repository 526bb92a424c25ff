// Package testsmtp runs a real SMTP server on loopback for tests (emersion/go-smtp), so the
// email sender and the outbox worker are tested against the protocol, not against a mock.
//
// The server can require AUTH (PLAIN and LOGIN), offer STARTTLS or speak implicit TLS, answer
// the first N messages with a temporary failure, and reject chosen recipients permanently. It
// keeps every accepted message, parsed, for the test to inspect.
package testsmtp

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options configure a Server. The zero value is a plaintext server without AUTH that accepts
// everything.
type Options struct {
	// Username and Password, when set, make the server require AUTH (PLAIN or LOGIN) before
	// MAIL FROM. On a plaintext server AUTH is allowed without TLS (clients must opt in to that).
	Username, Password string
	// TLS, when set, makes the server offer STARTTLS (or, with ImplicitTLS, speak TLS from the
	// first byte). With STARTTLS offered, AUTH is only accepted after STARTTLS.
	TLS *tls.Config
	// ImplicitTLS serves SMTPS (TLS from the first byte). Requires TLS.
	ImplicitTLS bool
	// FailFirst answers the first N DATA commands with 451 (temporary failure).
	FailFirst int
	// RejectRecipients are answered with 550 at RCPT TO (compared case-insensitively).
	RejectRecipients []string
}

// Mail is one message the server accepted.
type Mail struct {
	From   string   // envelope sender (MAIL FROM)
	To     []string // envelope recipients (RCPT TO)
	Header mail.Header
	// Text and HTML are the decoded text/plain and text/html parts (the first of each, looked
	// up through nested multiparts; a single-part message fills the one that matches).
	Text, HTML string
	Raw        []byte
}

// Subject returns the Subject header decoded from RFC 2047 encoded words.
func (m Mail) Subject() string {
	s := m.Header.Get("Subject")
	dec, err := new(mime.WordDecoder).DecodeHeader(s)
	if err != nil {
		return s
	}
	return dec
}

// Server is a running test SMTP server.
type Server struct {
	o    Options
	addr string
	srv  *smtp.Server

	mu       sync.Mutex
	mails    []Mail
	attempts int
	changed  chan struct{} // closed and replaced whenever mails grows
	closed   bool
	tb       testing.TB
}

// Start starts a server on 127.0.0.1 with a free port. It is closed when the test ends.
func Start(tb testing.TB, o Options) *Server {
	tb.Helper()
	if o.ImplicitTLS && o.TLS == nil {
		tb.Fatal("testsmtp: ImplicitTLS needs Options.TLS (see SelfSignedTLS)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testsmtp: listen: %v", err)
	}
	s := &Server{o: o, addr: l.Addr().String(), changed: make(chan struct{}), tb: tb}

	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 1 << 20
	srv.MaxRecipients = 50
	srv.ErrorLog = s
	if o.ImplicitTLS {
		l = tls.NewListener(l, o.TLS)
	} else {
		srv.TLSConfig = o.TLS
		// Without any TLS on offer, AUTH over plaintext is the only way to test credentials.
		srv.AllowInsecureAuth = o.TLS == nil
	}
	s.srv = srv

	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	tb.Cleanup(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		_ = srv.Close()
		// srv.Close only closes listeners Serve has registered; if Serve has not started yet it
		// would accept forever. Closing the listener ourselves ends Serve in every case.
		_ = l.Close()
		<-done
	})
	return s
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return s.addr }

// URL returns an smtp:// (or smtps://) URL for the server with its credentials. A plaintext
// server with credentials gets ?insecure_auth=1, since clients refuse plaintext AUTH otherwise.
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: s.addr}
	if s.o.ImplicitTLS {
		u.Scheme = "smtps"
	}
	if s.o.Username != "" || s.o.Password != "" {
		u.User = url.UserPassword(s.o.Username, s.o.Password)
		if s.o.TLS == nil {
			u.RawQuery = "insecure_auth=1"
		}
	}
	return u.String()
}

// Messages returns a copy of the accepted messages, oldest first.
func (s *Server) Messages() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mails)
}

// Attempts counts DATA commands seen, including those answered with a failure.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// WaitFor waits until a message for envelope recipient to has arrived and returns the first
// one. The test fails if none arrives within timeout.
func (s *Server) WaitFor(tb testing.TB, to string, timeout time.Duration) Mail {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		for _, m := range s.mails {
			if slices.ContainsFunc(m.To, func(r string) bool { return strings.EqualFold(r, to) }) {
				s.mu.Unlock()
				return m
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			tb.Fatalf("testsmtp: no message for %s within %v (%d accepted, %d DATA attempts)",
				to, timeout, len(s.Messages()), s.Attempts())
			return Mail{}
		}
	}
}

// Printf and Println make the Server go-smtp's error log: lines go to the test log while the
// test runs (connection resets from clients that hang up are normal and only logged).
func (s *Server) Printf(format string, v ...any) { s.logf(format, v...) }

// Println: see Printf.
func (s *Server) Println(v ...any) { s.logf("%s", strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (s *Server) logf(format string, v ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.tb.Logf("testsmtp: "+format, v...)
	}
}

// dataAttempt counts a DATA command and reports whether it must fail.
func (s *Server) dataAttempt() (fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	return s.attempts <= s.o.FailFirst
}

func (s *Server) deliver(m Mail) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mails = append(s.mails, m)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) checkCredentials(username, password string) error {
	u := subtle.ConstantTimeCompare([]byte(username), []byte(s.o.Username))
	p := subtle.ConstantTimeCompare([]byte(password), []byte(s.o.Password))
	if u&p != 1 {
		return smtp.ErrAuthFailed
	}
	return nil
}

func (s *Server) authRequired() bool { return s.o.Username != "" || s.o.Password != "" }

// session is one SMTP transaction state. go-smtp calls it from the connection's goroutine.
type session struct {
	s      *Server
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if !ss.s.authRequired() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return smtp.ErrAuthFailed
			}
			if err := ss.s.checkCredentials(username, password); err != nil {
				return err
			}
			ss.authed = true
			return nil
		}), nil
	case sasl.Login:
		return &loginServer{check: func(username, password string) error {
			if err := ss.s.checkCredentials(username, password); err != nil {
				return err
			}
			ss.authed = true
			return nil
		}}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.authRequired() && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if slices.ContainsFunc(ss.s.o.RejectRecipients, func(r string) bool { return strings.EqualFold(r, to) }) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if ss.s.dataAttempt() {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	}
	m, err := parse(raw)
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed message: " + err.Error()}
	}
	m.From = ss.from
	m.To = slices.Clone(ss.to)
	ss.s.deliver(m)
	return nil
}

func (ss *session) Reset() {
	ss.from = ""
	ss.to = nil
}

func (ss *session) Logout() error { return nil }

// loginServer is the server side of the (non-standard but common) LOGIN mechanism: the server
// asks "Username:" and "Password:" in turn; a client may send the username as initial response.
type loginServer struct {
	check    func(username, password string) error
	step     int
	username string
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		if len(response) == 0 {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.username, string(response))
	}
	return nil, false, errors.New("unexpected LOGIN response")
}

// parse reads a raw message into a Mail.
func parse(raw []byte) (Mail, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Mail{}, err
	}
	m := Mail{Header: msg.Header, Raw: raw}
	if err := walkPart(msg.Header, msg.Body, &m, 0); err != nil {
		return Mail{}, err
	}
	return m, nil
}
