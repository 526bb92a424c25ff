package deliver_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/deliver"
)

var destinations = []struct {
	addr   string
	public bool
}{
	{"127.0.0.1", false}, {"127.8.9.10", false}, {"::1", false}, {"::ffff:127.0.0.1", false},
	{"10.1.2.3", false}, {"172.16.0.1", false}, {"172.31.255.255", false}, {"192.168.1.1", false},
	{"fd00::1", false}, {"fc00::1", false}, // unique local
	{"169.254.169.254", false}, {"::ffff:169.254.169.254", false}, {"fe80::1", false}, // link-local
	{"0.0.0.0", false}, {"::", false}, {"0.1.2.3", false}, // unspecified, "this network"
	{"224.0.0.1", false}, {"239.255.255.250", false}, {"ff02::1", false}, {"ff05::2", false}, // multicast
	{"100.64.0.1", false}, {"100.127.255.254", false}, // CGNAT
	{"255.255.255.255", false}, {"240.0.0.1", false}, {"192.0.0.8", false}, {"198.18.0.1", false},
	{"64:ff9b::a9fe:a9fe", false}, {"64:ff9b::7f00:1", false}, // NAT64 of 169.254.169.254, 127.0.0.1
	{"fec0::1", false},
	{"8.8.8.8", true}, {"1.1.1.1", true}, {"100.63.255.255", true}, {"100.128.0.0", true},
	{"172.32.0.1", true}, {"2001:4860:4860::8888", true}, {"64:ff9b::808:808", true}, {"3.5.140.2", true},
}

func TestCheckDestination(t *testing.T) {
	for _, tt := range destinations {
		err := deliver.CheckDestination(netip.MustParseAddr(tt.addr))
		if (err == nil) != tt.public {
			t.Errorf("%s: %v, want public=%v", tt.addr, err, tt.public)
		}
		if err != nil && (!errors.Is(err, deliver.ErrPrivateDestination) || strings.Contains(err.Error(), tt.addr)) {
			t.Errorf("%s: error %q (must wrap ErrPrivateDestination and not name the address)", tt.addr, err)
		}
	}
	if deliver.CheckDestination(netip.Addr{}) == nil {
		t.Error("the zero address passed")
	}
}

// The check runs at connect time on the resolved address: a name that resolves to loopback is
// refused like the address itself; an unrestricted client connects.
func TestHTTPClientRestricted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	byName := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	restricted := deliver.HTTPClient(5*time.Second, true)
	for _, u := range []string{srv.URL, byName, "http://[::1]:" + strconv.Itoa(port)} {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", u, nil)
		res, err := restricted.Do(req)
		if err == nil {
			res.Body.Close()
			t.Errorf("%s: connected", u)
			continue
		}
		if !deliver.IsPrivateDestination(err) {
			t.Errorf("%s: %v, want a private destination error", u, err)
		}
	}
	open := deliver.HTTPClient(5*time.Second, false)
	res, err := open.Get(srv.URL + "/redirect")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		t.Errorf("unrestricted client: status %d, want the redirect itself (302), not followed", res.StatusCode)
	}
	d := deliver.Dialer(time.Second, true)
	if c, err := d.Dial("tcp", srv.Listener.Addr().String()); err == nil || !deliver.IsPrivateDestination(err) {
		if c != nil {
			c.Close()
		}
		t.Errorf("restricted dialer: %v", err)
	}
}

func TestProviderMessageID(t *testing.T) {
	for id, want := range map[string]string{
		"SM0123456789abcdef0123456789abcdef": "SM0123456789abcdef0123456789abcdef",
		"gw-1":                               "gw-1", "0190b1c2-0000-7000-8000-000000000000": "0190b1c2-0000-7000-8000-000000000000",
		"a.b_c:d-e": "a.b_c:d-e", strings.Repeat("x", 64): strings.Repeat("x", 64),
		strings.Repeat("x", 65): "", "": "", "has space": "", "AKIA/secret+key=": "", "line\nbreak": "",
		`{"AccessKeyId":"AKIA"}`: "", "ünïcode": "",
	} {
		if got := deliver.ProviderMessageID(id); got != want {
			t.Errorf("ProviderMessageID(%q) = %q, want %q", id, got, want)
		}
	}
}
