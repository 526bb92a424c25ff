// Package email delivers outbox messages by SMTP (wneessen/go-mail).
//
// One Send is one SMTP session: connect (implicit TLS for smtps://, STARTTLS when the server
// offers it for smtp://), authenticate when the URL carries credentials, send one message, quit.
// The message is text/plain, or multipart/alternative text + HTML, with a Message-ID derived from
// the outbox message id, so a re-send after a crash carries the same Message-ID and can be
// recognised downstream.
//
// Errors: an SMTP 5xx reply is permanent (deliver.Permanent); 4xx replies, timeouts and
// connection errors are retryable. Error texts name the SMTP stage and reply code; they never
// carry the password, the message body or the server's free-text reply.
package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"

	gomail "github.com/wneessen/go-mail"
	gosmtp "github.com/wneessen/go-mail/smtp"

	"github.com/otpd/otpd/internal/deliver"
)

// DefaultTimeout bounds one Send when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Config configures a Sender.
type Config struct {
	// URL of the SMTP server, see URL and ParseURL.
	URL string
	// From is the sender address, optionally with a display name: "otpd <no-reply@example.com>".
	From string
	// Timeout bounds one Send (connect, TLS, AUTH, transfer). Default DefaultTimeout.
	Timeout time.Duration
	// RootCAs verifies the server certificate; nil means the system roots.
	RootCAs *x509.CertPool
	// HeloName is the name sent in EHLO; default "localhost".
	HeloName string
}

// Sender sends email by SMTP. It is safe for concurrent use: every Send has its own connection.
type Sender struct {
	url      URL
	from     *mail.Address
	domain   string // of From, for Message-IDs
	timeout  time.Duration
	tls      *tls.Config
	heloName string
}

var _ deliver.Sender = (*Sender)(nil)

// New validates c and returns a Sender. It does not connect.
func New(c Config) (*Sender, error) {
	u, err := ParseURL(c.URL)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(c.From) == "" {
		return nil, errors.New("email: From address is required")
	}
	from, err := mail.ParseAddress(c.From)
	if err != nil {
		return nil, fmt.Errorf("email: From address %q: %w", c.From, err)
	}
	at := strings.LastIndexByte(from.Address, '@')
	if at < 0 || at == len(from.Address)-1 {
		return nil, fmt.Errorf("email: From address %q has no domain", c.From)
	}
	if c.Timeout < 0 {
		return nil, errors.New("email: Timeout must not be negative")
	}
	s := &Sender{
		url:      u,
		from:     from,
		domain:   from.Address[at+1:],
		timeout:  c.Timeout,
		heloName: c.HeloName,
		tls: &tls.Config{
			ServerName: u.Host,
			RootCAs:    c.RootCAs,
			MinVersion: tls.VersionTLS12,
		},
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	return s, nil
}

// Name is the provider name recorded with attempts and metrics.
func (s *Sender) Name() string { return "smtp" }

// URL returns the parsed server URL (its String masks the password).
func (s *Sender) URL() URL { return s.url }

// MessageID returns the Message-ID (without angle brackets) that a message with outbox id id
// is sent with.
func (s *Sender) MessageID(id string) string { return id + "@" + s.domain }

// Send delivers m in one SMTP session. It returns the Message-ID as the provider message id.
func (s *Sender) Send(ctx context.Context, m deliver.Message) (string, error) {
	if m.ID == "" {
		return "", deliver.Permanent(errors.New("smtp: message has no id"))
	}
	msg, err := s.build(m)
	if err != nil {
		return "", err
	}

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	a := &authenticator{user: s.url.Username, pass: s.url.Password, insecure: s.url.InsecureAuth}
	opts := []gomail.Option{
		gomail.WithPort(s.url.Port),
		gomail.WithTimeout(s.timeout),
		gomail.WithTLSConfig(s.tls),
		gomail.WithTLSPolicy(gomail.TLSOpportunistic),
		gomail.WithoutNoop(),
		gomail.WithDialContextFunc(s.dialer(ctx)),
	}
	if s.url.ImplicitTLS {
		opts = append(opts, gomail.WithSSL()) // our dialer does the TLS; this stops STARTTLS
	}
	if s.heloName != "" {
		opts = append(opts, gomail.WithHELO(s.heloName))
	}
	if s.url.Username != "" {
		opts = append(opts, gomail.WithSMTPAuthCustom(a))
	}
	client, err := gomail.NewClient(s.url.Host, opts...)
	if err != nil {
		return "", deliver.Permanent(fmt.Errorf("smtp: client setup: %w", err))
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		return "", s.classify(ctx, a, err)
	}
	return s.MessageID(m.ID), nil
}

// build turns m into a go-mail message.
func (s *Sender) build(m deliver.Message) (*gomail.Msg, error) {
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	from := *s.from // go-mail writes to the address it is given: one copy per message
	msg.FromMailAddress(&from)
	if err := msg.To(m.To); err != nil {
		// The address is not quoted: recipients are personal data and errors end up in logs.
		return nil, deliver.Permanent(errors.New("smtp: recipient is not a valid email address"))
	}
	msg.Subject(m.Subject)
	msg.SetMessageIDWithValue(s.MessageID(m.ID))
	msg.SetDate()
	msg.SetUserAgent("otpd")
	// RFC 3834: keeps vacation responders and the like from answering an OTP mail.
	msg.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

// dialer connects (and for smtps does the TLS handshake) and ties the connection to ctx: when
// ctx ends, the connection is closed, which aborts whatever SMTP command is in flight. go-mail
// itself only bounds each command by its timeout.
func (s *Sender) dialer(ctx context.Context) gomail.DialContextFunc {
	return func(dialCtx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(dialCtx, network, addr)
		if err != nil {
			return nil, err
		}
		if s.url.ImplicitTLS {
			tc := tls.Client(conn, s.tls)
			if err := tc.HandshakeContext(dialCtx); err != nil {
				_ = conn.Close()
				return nil, err
			}
			conn = tc
		}
		// Send cancels ctx when it returns, so this also closes the connection of every send
		// (a second Close after go-mail's own is harmless). No wrapper type: go-mail detects
		// implicit TLS by asserting *tls.Conn.
		context.AfterFunc(ctx, func() { _ = conn.Close() })
		return conn, nil
	}
}

// errPlaintextAuth: credentials would cross the network unencrypted.
var errPlaintextAuth = errors.New("smtp: server offers no TLS; refusing to send credentials in plaintext " +
	"(add ?insecure_auth=1 to the SMTP URL to allow it)")

// errNoMechanism: the server offers no mechanism we speak.
var errNoMechanism = errors.New("smtp: server offers no supported AUTH mechanism (SCRAM-SHA-256, SCRAM-SHA-1, PLAIN, LOGIN)")

// authenticator picks the strongest mechanism the server offers and refuses plaintext unless
// the URL opted in. go-mail's own discovery never picks PLAIN or LOGIN without TLS, which is
// exactly what insecure_auth is for, and it trusts localhost without TLS, which we do not.
type authenticator struct {
	user, pass string
	insecure   bool
	started    atomic.Bool // AUTH was attempted: a 5xx from here on is an AUTH rejection
	inner      gosmtp.Auth
}

func (a *authenticator) Start(server *gosmtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && !a.insecure {
		return "", nil, errPlaintextAuth
	}
	offered := func(mech string) bool {
		for _, m := range server.Auth {
			if strings.EqualFold(m, mech) {
				return true
			}
		}
		return false
	}
	switch {
	case offered("SCRAM-SHA-256"):
		a.inner = gosmtp.ScramSHA256Auth(a.user, a.pass)
	case offered("SCRAM-SHA-1"):
		a.inner = gosmtp.ScramSHA1Auth(a.user, a.pass)
	case offered("PLAIN"):
		// allowUnenc: the TLS decision was made above.
		a.inner = gosmtp.PlainAuth("", a.user, a.pass, server.Name, true)
	case offered("LOGIN"):
		a.inner = gosmtp.LoginAuth(a.user, a.pass, server.Name, true)
	default:
		return "", nil, errNoMechanism
	}
	a.started.Store(true)
	return a.inner.Start(server)
}

func (a *authenticator) Next(fromServer []byte, more bool) ([]byte, error) {
	return a.inner.Next(fromServer, more)
}

// classify turns a go-mail error into a short description, permanent or retryable.
func (s *Sender) classify(ctx context.Context, a *authenticator, err error) error {
	if errors.Is(err, errPlaintextAuth) || errors.Is(err, errNoMechanism) {
		// A configuration problem: retrying the same configuration cannot fix it.
		return deliver.Permanent(unwrapOurs(err))
	}
	if ctx.Err() != nil {
		// Our hook closed the connection; whatever go-mail reports is a consequence of that.
		return fmt.Errorf("smtp: %s gave up after %v: %w", s.url.Addr(), s.timeout, ctx.Err())
	}
	var se *gomail.SendError
	if errors.As(err, &se) {
		return replyError(se.Reason.String(), se.ErrorCode(), se.EnhancedStatusCode(), se.IsTemp())
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		stage := "connection setup"
		if a.started.Load() {
			stage = "authentication"
		}
		return replyError(stage, te.Code, enhancedCode(te.Msg), te.Code/100 == 4)
	}
	var ce *tls.CertificateVerificationError
	if errors.As(err, &ce) {
		return fmt.Errorf("smtp: %s: TLS certificate not trusted: %v", s.url.Addr(), ce.Err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("smtp: %s: timed out", s.url.Addr())
	}
	return fmt.Errorf("smtp: %s: %s", s.url.Addr(), s.redact(err.Error()))
}

// replyError describes an SMTP reply by stage and code only: the free text of a reply is the
// provider's, may be long, and is not ours to store.
func replyError(stage string, code int, enhanced string, temporary bool) error {
	desc := fmt.Sprintf("smtp: %s: server replied %d", stage, code)
	if code == 0 {
		desc = fmt.Sprintf("smtp: %s: connection failed", stage)
	}
	if enhanced != "" {
		desc += " " + enhanced
	}
	err := errors.New(desc)
	if code >= 500 && code < 600 && !temporary {
		return deliver.Permanent(err)
	}
	return err
}

// enhancedCode returns the RFC 3463 code at the start of a reply text ("5.7.8 …"), or "".
func enhancedCode(msg string) string {
	f, _, _ := strings.Cut(msg, " ")
	parts := strings.Split(f, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return ""
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return ""
		}
	}
	return f
}

// unwrapOurs returns the sentinel of ours inside err, without go-mail's wrapping text.
func unwrapOurs(err error) error {
	for _, e := range []error{errPlaintextAuth, errNoMechanism} {
		if errors.Is(err, e) {
			return e
		}
	}
	return err
}

// redact removes the credentials from a text, should a lower layer ever have echoed them, and
// keeps it short.
func (s *Sender) redact(text string) string {
	if s.url.Password != "" {
		text = strings.ReplaceAll(text, s.url.Password, "xxxxx")
	}
	text = strings.Join(strings.Fields(text), " ")
	const max = 200
	if len(text) > max {
		text = text[:max] + "…"
	}
	return text
}
