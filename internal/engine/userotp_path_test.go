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
