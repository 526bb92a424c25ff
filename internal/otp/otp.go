// Package otp implements RFC 4226 HOTP and RFC 6238 TOTP on the standard
// library, and generates the random numeric codes sent by email and SMS.
//
// The validators return the counter or time step that matched, so callers can
// refuse replays: a TOTP step at or before the last accepted one, or an HOTP
// counter below the stored one. This package keeps no state; storing the
// matched step or counter (atomically, with a conditional update) is the
// caller's job.
//
// Every validator checks all candidates in its window without returning
// early and compares codes in constant time, so response time says nothing
// about which candidate (if any) matched or how many leading digits were
// right. Input that is not exactly the expected number of ASCII digits is
// refused before any HMAC is computed.
package otp

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"
)

// Algorithm names the HMAC hash function, spelled as in otpauth:// URIs.
// The zero value is treated as SHA1, the RFC 4226 and RFC 6238 default.
type Algorithm string

// Supported algorithms.
const (
	SHA1   Algorithm = "SHA1"
	SHA256 Algorithm = "SHA256"
	SHA512 Algorithm = "SHA512"
)

// Limits on the parameters of HOTP and TOTP codes.
const (
	// MinDigits and MaxDigits bound the length of HOTP and TOTP codes.
	// RFC 4226 requires at least 6; 31 bits of truncated HMAC cannot carry
	// much more than 8 decimal digits without bias.
	MinDigits = 6
	MaxDigits = 8

	// MaxWindow is the largest TOTP window accepted in either direction, in
	// steps. Larger Back or Forward values are clamped to it. Ten 30-second
	// steps already accept a code for five minutes; RFC 6238 §5.2 recommends
	// at most one step of network delay.
	MaxWindow = 10

	// MaxLookahead bounds the HOTP look-ahead window of ValidateHOTP.
	MaxLookahead = 100

	// MaxResyncWindow bounds the search window of ResyncHOTP.
	MaxResyncWindow = 1000

	// MaxCodeDigits is the longest code GenerateCode produces.
	MaxCodeDigits = 10
)

// Defaults applied by ValidateTOTP to zero-valued TOTPOptions fields.
const (
	DefaultPeriod = 30 * time.Second
	DefaultDigits = 6
	DefaultBack   = 1
)

// ErrAlgorithm reports an unknown algorithm name.
var ErrAlgorithm = errors.New("otp: unknown algorithm")

// ParseAlgorithm parses an algorithm name case-insensitively ("sha256" and
// "SHA256" are the same). The empty string yields SHA1.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToUpper(s) {
	case "", "SHA1":
		return SHA1, nil
	case "SHA256":
		return SHA256, nil
	case "SHA512":
		return SHA512, nil
	}
	return "", fmt.Errorf("%w %q", ErrAlgorithm, s)
}

// Size returns the digest length of a in bytes, which is also the secret
// length GenerateSecret uses, or 0 for an unknown algorithm.
func (a Algorithm) Size() int {
	switch a {
	case "", SHA1:
		return sha1.Size
	case SHA256:
		return sha256.Size
	case SHA512:
		return sha512.Size
	}
	return 0
}

func (a Algorithm) hash() (func() hash.Hash, error) {
	switch a {
	case "", SHA1:
		return sha1.New, nil
	case SHA256:
		return sha256.New, nil
	case SHA512:
		return sha512.New, nil
	}
	return nil, fmt.Errorf("%w %q", ErrAlgorithm, string(a))
}

// HOTP returns the RFC 4226 one-time password for counter: HMAC(secret,
// counter as 8 big-endian bytes), dynamically truncated (the offset comes
// from the last byte of the actual digest, which matters for SHA256 and
// SHA512) and reduced to digits decimal digits with leading zeros kept.
// digits must be 6, 7 or 8 and secret must not be empty.
func HOTP(secret []byte, counter uint64, digits int, alg Algorithm) (string, error) {
	if err := checkParams(secret, digits); err != nil {
		return "", err
	}
	h, err := alg.hash()
	if err != nil {
		return "", err
	}
	return string(hotp(hmac.New(h, secret), counter, digits)), nil
}

func checkParams(secret []byte, digits int) error {
	if digits < MinDigits || digits > MaxDigits {
		return fmt.Errorf("otp: digits must be %d to %d, got %d", MinDigits, MaxDigits, digits)
	}
	if len(secret) == 0 {
		return errors.New("otp: empty secret")
	}
	return nil
}

// hotp computes one code with a keyed MAC that it resets first, so a
// validator can reuse one MAC for its whole window.
func hotp(mac hash.Hash, counter uint64, digits int) []byte {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac.Reset()
	mac.Write(msg[:])
	var sum [sha512.Size]byte
	return encode(truncate(mac.Sum(sum[:0])), digits)
}

// truncate is RFC 4226 §5.3 dynamic truncation: 31 bits read at the offset
// named by the low nibble of the digest's last byte.
func truncate(digest []byte) uint32 {
	off := digest[len(digest)-1] & 0x0f
	return binary.BigEndian.Uint32(digest[off:off+4]) & 0x7fffffff
}

// encode writes the low digits decimal digits of v. It always runs the same
// number of steps and divides only by constants (compiled to multiplies), so
// its timing does not depend on the code.
func encode(v uint32, digits int) []byte {
	buf := make([]byte, digits)
	for i := digits - 1; i >= 0; i-- {
		buf[i] = '0' + byte(v%10)
		v /= 10
	}
	return buf
}

// StepAt returns the RFC 6238 time step of t: floor(Unix seconds / period).
// period counts in whole seconds. Times before the Unix epoch give step 0,
// and so does a period shorter than one second (TOTP refuses such periods).
func StepAt(t time.Time, period time.Duration) uint64 {
	p := int64(period / time.Second)
	sec := t.Unix()
	if p < 1 || sec < 0 {
		return 0
	}
	return uint64(sec / p)
}

func checkPeriod(period time.Duration) error {
	if period < time.Second || period%time.Second != 0 {
		return fmt.Errorf("otp: period must be a positive whole number of seconds, got %v", period)
	}
	return nil
}

// TOTP returns the RFC 6238 code for time t and the step it belongs to.
// period must be a positive whole number of seconds.
func TOTP(secret []byte, t time.Time, period time.Duration, digits int, alg Algorithm) (code string, step uint64, err error) {
	if err := checkPeriod(period); err != nil {
		return "", 0, err
	}
	step = StepAt(t, period)
	code, err = HOTP(secret, step, digits, alg)
	if err != nil {
		return "", 0, err
	}
	return code, step, nil
}

// TOTPOptions configures ValidateTOTP. Zero-valued fields take defaults:
// Period 30 s, Digits 6, Algorithm SHA1, Back 1, Forward 0.
//
// Back and Forward are the window in steps behind and ahead of the current
// one. Because zero selects the default, a negative value means "no steps"
// (Back: -1 accepts no earlier step). Values above MaxWindow are clamped to
// MaxWindow.
type TOTPOptions struct {
	Period    time.Duration
	Digits    int
	Algorithm Algorithm
	Back      int
	Forward   int
}

func (o TOTPOptions) withDefaults() TOTPOptions {
	if o.Period == 0 {
		o.Period = DefaultPeriod
	}
	if o.Digits == 0 {
		o.Digits = DefaultDigits
	}
	if o.Algorithm == "" {
		o.Algorithm = SHA1
	}
	if o.Back == 0 {
		o.Back = DefaultBack
	}
	o.Back = clamp(o.Back, 0, MaxWindow)
	o.Forward = clamp(o.Forward, 0, MaxWindow)
	return o
}

// Validate reports whether the options (after defaults) are usable, so
// configuration can be refused at load time instead of failing every check.
// Unlike ValidateTOTP it refuses windows above MaxWindow instead of clamping.
func (o TOTPOptions) Validate() error {
	if o.Back > MaxWindow || o.Forward > MaxWindow {
		return fmt.Errorf("otp: TOTP window is at most %d steps each way", MaxWindow)
	}
	d := o.withDefaults()
	if err := checkPeriod(d.Period); err != nil {
		return err
	}
	if d.Digits < MinDigits || d.Digits > MaxDigits {
		return fmt.Errorf("otp: digits must be %d to %d, got %d", MinDigits, MaxDigits, d.Digits)
	}
	_, err := d.Algorithm.hash()
	return err
}

func clamp(v, lo, hi int) int {
	return max(lo, min(v, hi))
}

// ValidateTOTP checks code against every step in [s-Back, s+Forward], where
// s is the step of t, and returns the step that matched. It computes every
// candidate and compares each in constant time, without returning early.
// If several steps produce the same code, the earliest is returned, so that
// a collision can only make a replay look older, never newer.
//
// ok is false for malformed codes (not exactly Digits ASCII digits), invalid
// options and wrong codes. t must be the server's clock, never a time sent by
// the client.
//
// ValidateTOTP does not know which steps were used before. The caller MUST
// refuse a matched step that is less than or equal to the last step it
// accepted for this secret (RFC 6238 §5.2), and record the new step with a
// conditional update so two concurrent requests cannot both succeed.
func ValidateTOTP(secret []byte, code string, t time.Time, o TOTPOptions) (step uint64, ok bool) {
	o = o.withDefaults()
	if !ValidFormat(code, o.Digits) || checkPeriod(o.Period) != nil || checkParams(secret, o.Digits) != nil {
		return 0, false
	}
	h, err := o.Algorithm.hash()
	if err != nil {
		return 0, false
	}
	s := StepAt(t, o.Period)
	first := s - uint64(o.Back)
	if s < uint64(o.Back) {
		first = 0 // near the epoch there are fewer earlier steps
	}
	last := s + uint64(o.Forward)
	if last < s {
		last = ^uint64(0)
	}
	return scan(hmac.New(h, secret), []byte(code), first, last, o.Digits)
}

// scan compares code with the codes of counters first..last inclusive,
// always computing all of them, and returns the earliest match.
func scan(mac hash.Hash, code []byte, first, last uint64, digits int) (uint64, bool) {
	var matched uint64
	found := 0
	for c := first; ; c++ {
		eq := subtle.ConstantTimeCompare(code, hotp(mac, c, digits))
		take := eq &^ found // 1 only for the first match
		matched = selectU64(take, c, matched)
		found |= eq
		if c == last {
			break
		}
	}
	return matched, found == 1
}

// selectU64 returns x if v == 1 and y if v == 0, without branching.
func selectU64(v int, x, y uint64) uint64 {
	mask := -uint64(v & 1)
	return x&mask | y&^mask
}

// ValidateHOTP checks code against counters counter..counter+lookahead
// inclusive and returns the earliest counter that matched. lookahead is
// clamped to 0..MaxLookahead. All candidates are computed and compared in
// constant time.
//
// The counter only moves forward: after a success the caller stores
// matched+1 (with a conditional update) and passes it as counter next time,
// so the matched code and every earlier one are refused from then on.
// Codes beyond the look-ahead need ResyncHOTP.
func ValidateHOTP(secret []byte, code string, counter uint64, lookahead int, digits int, alg Algorithm) (matched uint64, ok bool) {
	if !ValidFormat(code, digits) || checkParams(secret, digits) != nil {
		return 0, false
	}
	h, err := alg.hash()
	if err != nil {
		return 0, false
	}
	last := counter + uint64(clamp(lookahead, 0, MaxLookahead))
	if last < counter {
		last = ^uint64(0)
	}
	return scan(hmac.New(h, secret), []byte(code), counter, last, digits)
}

// ResyncHOTP resynchronises an HOTP counter from two consecutive codes
// (RFC 4226 §7.4): it looks for c in [counter, counter+window] with
// HOTP(c) == code1 and HOTP(c+1) == code2, and returns c+2, the counter to
// store. window is clamped to 0..MaxResyncWindow. As with ValidateHOTP,
// every candidate is computed and the earliest match wins.
func ResyncHOTP(secret []byte, code1, code2 string, counter uint64, window int, digits int, alg Algorithm) (next uint64, ok bool) {
	if !ValidFormat(code1, digits) || !ValidFormat(code2, digits) || checkParams(secret, digits) != nil {
		return 0, false
	}
	h, err := alg.hash()
	if err != nil {
		return 0, false
	}
	last := counter + uint64(clamp(window, 0, MaxResyncWindow))
	if last < counter || last+2 < last {
		return 0, false // the counter space is exhausted; nothing to resync to
	}
	mac := hmac.New(h, secret)
	c1, c2 := []byte(code1), []byte(code2)
	var matched uint64
	found := 0
	cur := hotp(mac, counter, digits)
	for c := counter; c <= last; c++ {
		nxt := hotp(mac, c+1, digits)
		eq := subtle.ConstantTimeCompare(c1, cur) & subtle.ConstantTimeCompare(c2, nxt)
		matched = selectU64(eq&^found, c, matched)
		found |= eq
		cur = nxt
	}
	if found != 1 {
		return 0, false
	}
	return matched + 2, true
}

// ValidFormat reports whether code is exactly digits ASCII digits ('0' to
// '9'): no signs, spaces, NULs, full-width or other Unicode digits. The
// length is checked first, so oversized input costs nothing. digits outside
// 1..MaxCodeDigits never match.
func ValidFormat(code string, digits int) bool {
	if digits < 1 || digits > MaxCodeDigits || len(code) != digits {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return true
}

// Equal reports whether a and b are equal, in time that depends only on
// their lengths (crypto/subtle). Codes of a known format have a known
// length, so the length reveals nothing.
func Equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
