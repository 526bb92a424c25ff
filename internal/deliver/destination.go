package deliver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Tenant providers (created through the API) choose where otpd connects to. Left alone, a
// tenant admin could point one at the deployment's own network — the cloud metadata service at
// 169.254.169.254, a database on 10.0.0.5, otpd's own loopback port — and learn from the
// provider's answers what is there (server-side request forgery). So their connections refuse
// destinations that are not public unicast addresses. The check runs in the dialer's Control
// hook, on the address actually being connected to after name resolution, so a name that
// resolves to a public address when checked and to a private one when used (DNS rebinding)
// gains nothing. The operator may lift it for tenants (delivery.allow_private_destinations);
// the configuration file's own providers are never restricted.

// ErrPrivateDestination is returned (wrapped) when a restricted provider would connect to an
// address that is not a public unicast address.
var ErrPrivateDestination = errors.New("destination address is not public")

var errPrivate = fmt.Errorf("%w (loopback, private, link-local or otherwise not public; "+
	"the operator can allow such destinations with delivery.allow_private_destinations)", ErrPrivateDestination)

var (
	cgnat = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598 shared address space
	// Other IPv4 blocks that are never a provider's public address: "this network" (0/8),
	// IETF protocol assignments (192.0.0.0/24), benchmarking (198.18/15), reserved and
	// broadcast (240/4).
	nonPublic4 = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("192.0.0.0/24"),
		netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("240.0.0.0/4")}
	// NAT64 prefixes embed an IPv4 address in their last 32 bits (RFC 6052, RFC 8215).
	nat64 = []netip.Prefix{netip.MustParsePrefix("64:ff9b::/96"), netip.MustParsePrefix("64:ff9b:1::/48")}
	// Deprecated site-local IPv6 (fec0::/10) still routes inside some networks.
	siteLocal6 = netip.MustParsePrefix("fec0::/10")
)

// CheckDestination returns an error wrapping ErrPrivateDestination when ip is loopback, private
// (RFC 1918, IPv6 unique local), link-local, unspecified, multicast, shared (CGNAT) or another
// address that is not public, also when it hides in an IPv4-mapped or NAT64 IPv6 address.
func CheckDestination(ip netip.Addr) error {
	ip = ip.Unmap()
	if ip.Is6() {
		for _, p := range nat64 {
			if p.Contains(ip) {
				b := ip.As16()
				ip = netip.AddrFrom4([4]byte(b[12:16]))
				break
			}
		}
	}
	bad := !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() ||
		ip.IsUnspecified() || cgnat.Contains(ip) || siteLocal6.Contains(ip)
	if ip.Is4() {
		for _, p := range nonPublic4 {
			bad = bad || p.Contains(ip)
		}
	}
	if bad {
		// The address is not named: a tenant would learn what an internal name resolves to.
		return errPrivate
	}
	return nil
}

// refusePrivate is a net.Dialer Control: it runs after name resolution, before each connection
// attempt, with the numeric address.
func refusePrivate(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return errPrivate
	}
	return CheckDestination(ap.Addr())
}

// Dialer returns the dialer of a provider's connections: with restrict, connections to
// addresses that are not public are refused (see CheckDestination).
func Dialer(timeout time.Duration, restrict bool) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if restrict {
		d.Control = refusePrivate
	}
	return d
}

// HTTPClient returns the HTTP client of a provider: it never follows redirects (a redirect is an
// answer, not something to follow with the provider's credentials), and with restrict it
// connects only to public addresses and ignores the environment's proxy settings (through a
// proxy the check would see the proxy's address, and the proxy would fetch any address for us).
func HTTPClient(timeout time.Duration, restrict bool) *http.Client {
	d := Dialer(10*time.Second, restrict)
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	if restrict {
		tr.Proxy = nil
	}
	return &http.Client{Timeout: timeout, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// IsPrivateDestination reports whether err says a restricted provider's connection was refused
// because of its destination.
func IsPrivateDestination(err error) bool { return errors.Is(err, ErrPrivateDestination) }

// maxProviderMessageID bounds a provider's message id as stored.
const maxProviderMessageID = 64

// ProviderMessageID returns id when it looks like a provider's message id — 1 to 64 letters,
// digits, dots, underscores, colons and dashes — and "" otherwise. A message id is copied from
// the provider's answer; bounding it keeps a provider (which a tenant may have pointed anywhere)
// from lifting arbitrary answer text into what otpd stores and shows.
func ProviderMessageID(id string) string {
	if id == "" || len(id) > maxProviderMessageID {
		return ""
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return ""
		}
	}
	return id
}
