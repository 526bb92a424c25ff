// Package otpauth builds the otpauth:// key URIs that authenticator apps import (the "Key Uri
// Format" Google Authenticator introduced and most apps follow) and renders them as QR codes:
// a PNG with its quiet zone, for APIs and the console, and half-block text for terminals.
//
// The seed travels in the URI in base32, so a URI (and its QR code) is as secret as the seed:
// callers show it once, at enrolment, and never store or log it.
package otpauth

import (
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Key types.
const (
	TOTP = "totp"
	HOTP = "hotp"
)

// Key is what an authenticator app needs to compute codes.
type Key struct {
	Type      string // TOTP or HOTP
	Issuer    string // shown above the account in the app, e.g. the service's name
	Account   string // the user, e.g. a login or an email address
	Secret    []byte
	Algorithm string // SHA1 (the default), SHA256, SHA512
	Digits    int    // 6 (the default), 7 or 8
	Period    int    // seconds per TOTP step; 30 (the default) or 60
	Counter   uint64 // the first HOTP counter
}

// b32 is RFC 4648 base32 without padding, as authenticator apps expect.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// EncodeSecret returns the seed in the base32 form the URI carries.
func EncodeSecret(secret []byte) string { return b32.EncodeToString(secret) }

// DecodeSecret reads a base32 seed as people type it: case, spaces, hyphens and padding are
// ignored.
func DecodeSecret(s string) ([]byte, error) {
	s = strings.ToUpper(strings.NewReplacer(" ", "", "-", "", "=", "").Replace(s))
	if s == "" {
		return nil, errors.New("otpauth: empty secret")
	}
	b, err := b32.DecodeString(s)
	if err != nil {
		return nil, errors.New("otpauth: the secret is not base32")
	}
	return b, nil
}

// escape percent-encodes s for a query value or the label; spaces become %20, which every app
// reads (a '+' is not read as a space by all of them).
func escape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// URI returns k as an otpauth:// URI. The label is "Issuer:Account" (or just the account), and
// the issuer is repeated as a parameter, as the format recommends. Parameters with their
// default value are still written, so no app has to guess.
func (k Key) URI() string {
	label := escape(k.Account)
	if k.Issuer != "" {
		label = escape(k.Issuer) + ":" + label
	}
	var q strings.Builder
	q.WriteString("secret=" + EncodeSecret(k.Secret))
	if k.Issuer != "" {
		q.WriteString("&issuer=" + escape(k.Issuer))
	}
	alg := k.Algorithm
	if alg == "" {
		alg = "SHA1"
	}
	digits := k.Digits
	if digits == 0 {
		digits = 6
	}
	q.WriteString("&algorithm=" + escape(alg) + "&digits=" + strconv.Itoa(digits))
	if k.Type == HOTP {
		q.WriteString("&counter=" + strconv.FormatUint(k.Counter, 10))
	} else {
		period := k.Period
		if period == 0 {
			period = 30
		}
		q.WriteString("&period=" + strconv.Itoa(period))
	}
	typ := k.Type
	if typ == "" {
		typ = TOTP
	}
	return "otpauth://" + typ + "/" + label + "?" + q.String()
}

// Parse reads an otpauth:// URI back into a Key.
func Parse(uri string) (Key, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" {
		return Key{}, errors.New("otpauth: not an otpauth:// URI")
	}
	k := Key{Type: strings.ToLower(u.Host), Algorithm: "SHA1", Digits: 6}
	if k.Type != TOTP && k.Type != HOTP {
		return Key{}, fmt.Errorf("otpauth: unknown key type %q", u.Host)
	}
	label := strings.TrimPrefix(u.Path, "/")
	if issuer, account, ok := strings.Cut(label, ":"); ok {
		k.Issuer, k.Account = issuer, account
	} else {
		k.Account = label
	}
	q := u.Query()
	if k.Secret, err = DecodeSecret(q.Get("secret")); err != nil {
		return Key{}, err
	}
	if v := q.Get("issuer"); v != "" {
		k.Issuer = v
	}
	if v := q.Get("algorithm"); v != "" {
		k.Algorithm = strings.ToUpper(v)
	}
	if v := q.Get("digits"); v != "" {
		if k.Digits, err = strconv.Atoi(v); err != nil {
			return Key{}, errors.New("otpauth: digits is not a number")
		}
	}
	if k.Type == TOTP {
		k.Period = 30
		if v := q.Get("period"); v != "" {
			if k.Period, err = strconv.Atoi(v); err != nil {
				return Key{}, errors.New("otpauth: period is not a number")
			}
		}
	} else if v := q.Get("counter"); v != "" {
		if k.Counter, err = strconv.ParseUint(v, 10, 64); err != nil {
			return Key{}, errors.New("otpauth: counter is not a number")
		}
	}
	return k, nil
}
