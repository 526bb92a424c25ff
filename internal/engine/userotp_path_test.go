package engine

import (
	"encoding/json"
	"testing"
)

func TestParseRolePath(t *testing.T) {
	doc := `{"realm_access":{"roles":["a","otp-issuer"]},"scope":"openid otp-issuer",
		"https://example.com/claims":{"groups":[{"name":"x"},{"name":"otp-issuer"}]},"roles":"otp-issuer"}`
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"$.realm_access.roles":       true,
		"realm_access.roles":         true,
		"$['realm_access']['roles']": true,
		`$["realm_access"].roles`:    true,
		"$.realm_access.roles[1]":    true,
		"$.realm_access.roles[0]":    false,
		"$.realm_access.roles[7]":    false,
		"scope":                      true,
		"roles":                      true,
		"$['https://example.com/claims'].groups[1].name": true,
		"$['https://example.com/claims'].groups[0].name": false,
		"$.missing":              false,
		"$.realm_access":         false,
		"$.realm_access.roles.x": false,
		"realm_access.roles[1]":  true,
	} {
		p, err := parseRolePath(path)
		if err != nil {
			t.Errorf("%q: %v", path, err)
			continue
		}
		got, ok := p.lookup(v)
		if has := ok && hasRole(got, "otp-issuer"); has != want {
			t.Errorf("%q: has role %v, want %v", path, has, want)
		}
	}
	for _, bad := range []string{"", "$", "$.", "..a", "$..a", "a..b", "a[", "a[x]", "a[-1]", "a[01]", "$a", "a b",
		"a.b c", "$['']", "$['a\"]", "a.[0]", "[0]x", "a]"} {
		if _, err := parseRolePath(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseTargetRejectsTricks(t *testing.T) {
	for _, raw := range []string{"//evil.example", "javascript:alert(1)", "https://a@b.example/", "https://b.example\\@a/",
		"https://b.example/%2e%2e/", "https://b.example/a/../b", "http://", "https://b.example:99999/", "https://b.exa mple/"} {
		if _, err := parseTarget(raw); err == nil {
			t.Errorf("%q parsed as a target", raw)
		}
	}
	tg, err := parseTarget("HTTPS://B.Example:443/a/b?x=1#y")
	if err != nil || tg.host != "b.example" || tg.port != "443" || tg.path != "/a/b" || tg.scheme != "https" {
		t.Errorf("parsed %+v %v", tg, err)
	}
}

// FuzzParseRolePath: no input panics, and a parsed path looks up without panicking.
func FuzzParseRolePath(f *testing.F) {
	for _, s := range []string{"$.realm_access.roles", "roles[0]", "$['a.b'][3].c", "a..b", "[", "$[\"x\"]"} {
		f.Add(s)
	}
	var doc any
	_ = json.Unmarshal([]byte(`{"a":{"b":[1,{"c":"r"}]},"roles":["r"],"a.b":[0,1,2,{"c":"r"}]}`), &doc)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseRolePath(s)
		if err != nil {
			return
		}
		if len(p) == 0 || len(p) > 16 {
			t.Fatalf("%q parsed to %d steps", s, len(p))
		}
		v, ok := p.lookup(doc)
		_ = hasRole(v, "r") && ok
	})
}

// FuzzParseTarget: a target that parses has an http(s) scheme, a host, no userinfo, and no dot
// segments; it re-serialises to a URL that parses to the same parts.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"https://a.example/x", "//evil", "javascript:x", "https://a@b/", "http://[::1]:8080/a/../b", "https://a.example/%2e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := parseTarget(s)
		if err != nil {
			return
		}
		if (tg.scheme != "http" && tg.scheme != "https") || tg.host == "" || tg.u.User != nil {
			t.Fatalf("%q parsed to %+v", s, tg)
		}
		again, err := parseTarget(tg.u.String())
		if err != nil || again.scheme != tg.scheme || again.host != tg.host || again.port != tg.port || again.path != tg.path {
			t.Fatalf("%q → %q does not round-trip: %+v %v", s, tg.u.String(), again, err)
		}
	})
}
