package api

import (
	"net/netip"
	"testing"
)

var clientIPCases = []struct {
	name    string
	remote  string
	xff     []string
	trusted []string
	want    string
}{
	{"no proxy", "203.0.113.9:5555", nil, nil, "203.0.113.9"},
	{"spoofed header from an untrusted peer is ignored", "203.0.113.9:5555", []string{"1.2.3.4"}, nil, "203.0.113.9"},
	{"spoofed header, other proxy trusted", "203.0.113.9:5555", []string{"1.2.3.4"}, []string{"10.0.0.0/8"}, "203.0.113.9"},
	{"trusted proxy", "10.0.0.2:80", []string{"198.51.100.7"}, []string{"10.0.0.0/8"}, "198.51.100.7"},
	{"client prepends a fake hop", "10.0.0.2:80", []string{"1.2.3.4, 198.51.100.7"}, []string{"10.0.0.0/8"}, "198.51.100.7"},
	{"two trusted hops", "10.0.0.2:80", []string{"198.51.100.7, 10.0.0.5"}, []string{"10.0.0.0/8"}, "198.51.100.7"},
	{"several headers", "10.0.0.2:80", []string{"1.2.3.4", "198.51.100.7"}, []string{"10.0.0.0/8"}, "198.51.100.7"},
	{"garbage hop stops the chain", "10.0.0.2:80", []string{"198.51.100.7, nonsense"}, []string{"10.0.0.0/8"}, "10.0.0.2"},
	{"all hops trusted", "10.0.0.2:80", []string{"10.0.0.7"}, []string{"10.0.0.0/8"}, "10.0.0.7"},
	{"ipv6 and mapped ipv4", "[::ffff:10.0.0.2]:80", []string{"2001:db8::1"}, []string{"10.0.0.0/8"}, "2001:db8::1"},
}

func TestClientIP(t *testing.T) {
	for _, c := range clientIPCases {
		var trusted []netip.Prefix
		for _, p := range c.trusted {
			trusted = append(trusted, netip.MustParsePrefix(p))
		}
		if got := clientIP(c.remote, c.xff, trusted); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
}
