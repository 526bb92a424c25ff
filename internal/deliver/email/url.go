package email

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Default ports: submission with STARTTLS (RFC 6409) and submission over implicit TLS (RFC 8314).
const (
	DefaultPort    = 587
	DefaultTLSPort = 465
)

// URL is a parsed SMTP server URL.
//
//	smtp://[user:password@]host[:port][?insecure_auth=1]   port 587; STARTTLS when the server offers it
//	smtps://[user:password@]host[:port]                    port 465; TLS from the first byte
//
// User and password are percent-decoded (write "p%40ss" for "p@ss"). Credentials are only ever
// sent over TLS; insecure_auth=1 allows sending them over a plaintext connection, for a relay on
// a trusted network (or a test server) that offers no TLS at all.
type URL struct {
	ImplicitTLS  bool
	Host         string
	Port         int
	Username     string
	Password     string
	InsecureAuth bool
}

// Addr is host:port.
func (u URL) Addr() string { return net.JoinHostPort(u.Host, strconv.Itoa(u.Port)) }

// String renders the URL with the password masked, for logs and `otpd config`.
func (u URL) String() string {
	out := url.URL{Scheme: "smtp", Host: u.Addr()}
	if u.ImplicitTLS {
		out.Scheme = "smtps"
	}
	if u.Username != "" {
		out.User = url.UserPassword(u.Username, "xxxxx")
	}
	if u.InsecureAuth {
		out.RawQuery = "insecure_auth=1"
	}
	return out.String()
}

// ParseURL parses and validates an SMTP URL (see URL). Its errors never quote the URL, since it
// may carry a password.
func ParseURL(raw string) (URL, error) {
	if strings.TrimSpace(raw) == "" {
		return URL{}, errors.New("email: SMTP URL is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole input, password included: say what is wrong without it.
		return URL{}, errors.New("email: SMTP URL does not parse; expected smtp://user:password@host:port " +
			"(percent-encode reserved characters in user and password)")
	}
	var out URL
	switch strings.ToLower(u.Scheme) {
	case "smtp":
		out.Port = DefaultPort
	case "smtps":
		out.ImplicitTLS = true
		out.Port = DefaultTLSPort
	case "":
		return URL{}, errors.New("email: SMTP URL needs a scheme, smtp:// or smtps://")
	default:
		return URL{}, fmt.Errorf("email: SMTP URL scheme %q is not supported; use smtp:// or smtps://", u.Scheme)
	}
	if u.Opaque != "" {
		return URL{}, errors.New("email: SMTP URL must look like smtp://host:port")
	}
	out.Host = u.Hostname()
	if out.Host == "" {
		return URL{}, errors.New("email: SMTP URL has no host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return URL{}, fmt.Errorf("email: SMTP URL port %q is not a number from 1 to 65535", p)
		}
		out.Port = n
	}
	if u.Path != "" && u.Path != "/" {
		return URL{}, errors.New("email: SMTP URL must not have a path")
	}
	if u.Fragment != "" {
		return URL{}, errors.New("email: SMTP URL must not have a fragment")
	}
	if u.User != nil {
		out.Username = u.User.Username()
		out.Password, _ = u.User.Password()
		if out.Username == "" {
			return URL{}, errors.New("email: SMTP URL has credentials without a user name")
		}
		if out.Password == "" {
			return URL{}, errors.New("email: SMTP URL has a user name but no password")
		}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return URL{}, errors.New("email: SMTP URL query does not parse")
	}
	for k, v := range q {
		switch k {
		case "insecure_auth":
			if len(v) != 1 {
				return URL{}, errors.New("email: SMTP URL insecure_auth must be given once")
			}
			b, err := strconv.ParseBool(v[0])
			if err != nil {
				return URL{}, fmt.Errorf("email: SMTP URL insecure_auth=%q is not 1/0/true/false", v[0])
			}
			out.InsecureAuth = b
		default:
			return URL{}, fmt.Errorf("email: SMTP URL parameter %q is not known (known: insecure_auth)", k)
		}
	}
	return out, nil
}
