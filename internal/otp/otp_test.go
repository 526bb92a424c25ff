package otp

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	pqotp "github.com/pquerna/otp"
	pqhotp "github.com/pquerna/otp/hotp"
	pqtotp "github.com/pquerna/otp/totp"
)

// RFC seeds: the ASCII digits "1234567890" repeated to the digest length.
var (
	seed20 = []byte("12345678901234567890")
	seed32 = []byte("12345678901234567890123456789012")
	seed64 = []byte("1234567890123456789012345678901234567890123456789012345678901234")
)

// rfc4226Vectors is RFC 4226 Appendix D: the HMAC-SHA-1 of each counter
// under seed20, the dynamically truncated 31-bit value, and the 6-digit HOTP.
var rfc4226Vectors = []struct {
	counter   uint64
	hmacHex   string
	truncated uint32
	hotp      string
}{
	{0, "cc93cf18508d94934c64b65d8ba7667fb7cde4b0", 1284755224, "755224"},
	{1, "75a48a19d4cbe100644e8ac1397eea747a2d33ab", 1094287082, "287082"},
	{2, "0bacb7fa082fef30782211938bc1c5e70416ff44", 137359152, "359152"},
	{3, "66c28227d03a2d5529262ff016a1e6ef76557ece", 1726969429, "969429"},
	{4, "a904c900a64b35909874b33e61c5938a8e15ed1c", 1640338314, "338314"},
	{5, "a37e783d7b7233c083d4f62926c7a25f238d0316", 868254676, "254676"},
	{6, "bc9cd28561042c83f219324d3c607256c03272ae", 1918287922, "287922"},
	{7, "a4fb960c0bc06e1eabb804e5b397cdc4b45596fa", 82162583, "162583"},
	{8, "1b3c89f65e6c9e883012052823443f048b4332db", 673399871, "399871"},
	{9, "1637409809a679dc698207310c8c7fc07290d9e5", 645520489, "520489"},
}

func TestRFC4226Vectors(t *testing.T) {
	for _, v := range rfc4226Vectors {
		mac := hmac.New(sha1.New, seed20)
		var msg [8]byte
		msg[7] = byte(v.counter)
		mac.Write(msg[:])
		sum := mac.Sum(nil)
		if got := hex.EncodeToString(sum); got != v.hmacHex {
			t.Errorf("counter %d: HMAC = %s, want %s", v.counter, got, v.hmacHex)
		}
		if got := truncate(sum); got != v.truncated {
			t.Errorf("counter %d: truncated = %d, want %d", v.counter, got, v.truncated)
		}
		got, err := HOTP(seed20, v.counter, 6, SHA1)
		if err != nil || got != v.hotp {
			t.Errorf("HOTP(counter %d) = %q, %v; want %q", v.counter, got, err, v.hotp)
		}
	}
}

// rfc6238Vectors is RFC 6238 Appendix B (8 digits, 30 s period), each mode
// with its own seed of the digest's length.
var rfc6238Vectors = []struct {
	unix int64
	step uint64
	alg  Algorithm
	code string
}{
	{59, 0x1, SHA1, "94287082"},
	{59, 0x1, SHA256, "46119246"},
	{59, 0x1, SHA512, "90693936"},
	{1111111109, 0x23523EC, SHA1, "07081804"},
	{1111111109, 0x23523EC, SHA256, "68084774"},
	{1111111109, 0x23523EC, SHA512, "25091201"},
	{1111111111, 0x23523ED, SHA1, "14050471"},
	{1111111111, 0x23523ED, SHA256, "67062674"},
	{1111111111, 0x23523ED, SHA512, "99943326"},
	{1234567890, 0x273EF07, SHA1, "89005924"},
	{1234567890, 0x273EF07, SHA256, "91819424"},
	{1234567890, 0x273EF07, SHA512, "93441116"},
	{2000000000, 0x3F940AA, SHA1, "69279037"},
	{2000000000, 0x3F940AA, SHA256, "90698825"},
	{2000000000, 0x3F940AA, SHA512, "38618901"},
	{20000000000, 0x27BC86AA, SHA1, "65353130"},
	{20000000000, 0x27BC86AA, SHA256, "77737706"},
	{20000000000, 0x27BC86AA, SHA512, "47863826"},
}

func seedFor(alg Algorithm) []byte {
	switch alg {
	case SHA256:
		return seed32
	case SHA512:
		return seed64
	}
	return seed20
}

func TestRFC6238Vectors(t *testing.T) {
	for _, v := range rfc6238Vectors {
		at := time.Unix(v.unix, 0).UTC()
		code, step, err := TOTP(seedFor(v.alg), at, 30*time.Second, 8, v.alg)
		if err != nil || code != v.code || step != v.step {
			t.Errorf("TOTP(%s, t=%d) = %q, step %#x, %v; want %q, step %#x", v.alg, v.unix, code, step, err, v.code, v.step)
		}
		got, ok := ValidateTOTP(seedFor(v.alg), v.code, at, TOTPOptions{Digits: 8, Algorithm: v.alg})
		if !ok || got != v.step {
			t.Errorf("ValidateTOTP(%s, t=%d) = %#x, %v; want %#x, true", v.alg, v.unix, got, ok, v.step)
		}
	}
}

// TestRFC6238WrongSeedGuard pins the value produced when the 20-byte seed is
// (wrongly) used with SHA256, as in the RFC's reference code. If this ever
// equals the Appendix B value, the seeds have been mixed up.
func TestRFC6238WrongSeedGuard(t *testing.T) {
	code, _, err := TOTP(seed20, time.Unix(59, 0), 30*time.Second, 8, SHA256)
	if err != nil || code != "32247374" {
		t.Errorf("20-byte seed, SHA256, t=59: %q, %v; want 32247374", code, err)
	}
}

func TestTOTPSixDigits(t *testing.T) {
	code, step, err := TOTP(seed20, time.Unix(59, 0), 30*time.Second, 6, SHA1)
	if err != nil || code != "287082" || step != 1 {
		t.Errorf("6-digit SHA1 at t=59: %q step %d, %v; want 287082 step 1", code, step, err)
	}
}

func TestCrossCheckPquerna(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	algs := []struct {
		ours   Algorithm
		theirs pqotp.Algorithm
	}{{SHA1, pqotp.AlgorithmSHA1}, {SHA256, pqotp.AlgorithmSHA256}, {SHA512, pqotp.AlgorithmSHA512}}
	for i := range 300 {
		a := algs[i%len(algs)]
		secret := make([]byte, 10+r.IntN(60))
		for j := range secret {
			secret[j] = byte(r.Uint32())
		}
		b32 := base32.StdEncoding.EncodeToString(secret)
		digits := MinDigits + r.IntN(MaxDigits-MinDigits+1)
		period := []time.Duration{30 * time.Second, 60 * time.Second}[r.IntN(2)]
		at := time.Unix(r.Int64N(1<<35), 0)

		want, err := pqtotp.GenerateCodeCustom(b32, at, pqtotp.ValidateOpts{
			Period: uint(period / time.Second), Digits: pqotp.Digits(digits), Algorithm: a.theirs,
		})
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := TOTP(secret, at, period, digits, a.ours)
		if err != nil || got != want {
			t.Errorf("TOTP(%x, %v, %v, %d, %s) = %q, %v; pquerna says %q", secret, at.Unix(), period, digits, a.ours, got, err, want)
		}

		counter := r.Uint64()
		want, err = pqhotp.GenerateCodeCustom(b32, counter, pqhotp.ValidateOpts{Digits: pqotp.Digits(digits), Algorithm: a.theirs})
		if err != nil {
			t.Fatal(err)
		}
		got, err = HOTP(secret, counter, digits, a.ours)
		if err != nil || got != want {
			t.Errorf("HOTP(%x, %d, %d, %s) = %q, %v; pquerna says %q", secret, counter, digits, a.ours, got, err, want)
		}
	}
}

var parseAlgorithmTests = []struct {
	in   string
	want Algorithm
	ok   bool
}{
	{"", SHA1, true},
	{"SHA1", SHA1, true},
	{"sha1", SHA1, true},
	{"Sha256", SHA256, true},
	{"sha512", SHA512, true},
	{"SHA-1", "", false},
	{"MD5", "", false},
	{" SHA1", "", false},
}

func TestParseAlgorithm(t *testing.T) {
	for _, tt := range parseAlgorithmTests {
		got, err := ParseAlgorithm(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseAlgorithm(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrAlgorithm) {
			t.Errorf("ParseAlgorithm(%q) error %v does not wrap ErrAlgorithm", tt.in, err)
		}
	}
}

func TestHOTPRejectsBadParams(t *testing.T) {
	for _, d := range []int{-1, 0, 5, 9, 10} {
		if _, err := HOTP(seed20, 0, d, SHA1); err == nil {
			t.Errorf("HOTP with %d digits: no error", d)
		}
	}
	if _, err := HOTP(nil, 0, 6, SHA1); err == nil {
		t.Error("HOTP with empty secret: no error")
	}
	if _, err := HOTP(seed20, 0, 6, "MD5"); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("HOTP with MD5: %v, want ErrAlgorithm", err)
	}
	if code, err := HOTP(seed20, 1, 6, ""); err != nil || code != "287082" {
		t.Errorf("zero Algorithm is not SHA1: %q, %v", code, err)
	}
	for _, p := range []time.Duration{0, -30 * time.Second, 500 * time.Millisecond, 1500 * time.Millisecond} {
		if _, _, err := TOTP(seed20, time.Unix(59, 0), p, 6, SHA1); err == nil {
			t.Errorf("TOTP with period %v: no error", p)
		}
	}
}

var stepAtTests = []struct {
	unix   int64
	period time.Duration
	want   uint64
}{
	{0, 30 * time.Second, 0},
	{29, 30 * time.Second, 0},
	{30, 30 * time.Second, 1},
	{59, 30 * time.Second, 1},
	{59, 60 * time.Second, 0},
	{60, 60 * time.Second, 1},
	{20000000000, 30 * time.Second, 666666666},
	{-1, 30 * time.Second, 0},
	{-1 << 40, 30 * time.Second, 0},
	{100, 0, 0},
	{100, -time.Second, 0},
}

func TestStepAt(t *testing.T) {
	for _, tt := range stepAtTests {
		if got := StepAt(time.Unix(tt.unix, 0), tt.period); got != tt.want {
			t.Errorf("StepAt(%d, %v) = %d, want %d", tt.unix, tt.period, got, tt.want)
		}
	}
}

// now is a fixed server time for window tests, well inside a step.
var now = time.Unix(1_700_000_015, 0)

func codeAtOffset(t *testing.T, secret []byte, offset int, o TOTPOptions) (string, uint64) {
	t.Helper()
	o = o.withDefaults()
	step := uint64(int64(StepAt(now, o.Period)) + int64(offset))
	code, err := HOTP(secret, step, o.Digits, o.Algorithm)
	if err != nil {
		t.Fatal(err)
	}
	return code, step
}

var windowTests = []struct {
	name   string
	opts   TOTPOptions
	offset int // code from this many steps away from now
	ok     bool
}{
	{"default current", TOTPOptions{}, 0, true},
	{"default -1", TOTPOptions{}, -1, true},
	{"default -2", TOTPOptions{}, -2, false},
	{"default +1", TOTPOptions{}, 1, false},
	{"default +2", TOTPOptions{}, 2, false},
	{"±1 -1", TOTPOptions{Back: 1, Forward: 1}, -1, true},
	{"±1 +1", TOTPOptions{Back: 1, Forward: 1}, 1, true},
	{"±1 -2", TOTPOptions{Back: 1, Forward: 1}, -2, false},
	{"±1 +2", TOTPOptions{Back: 1, Forward: 1}, 2, false},
	{"no back: current", TOTPOptions{Back: -1}, 0, true},
	{"no back: -1", TOTPOptions{Back: -1}, -1, false},
	{"60s period -1", TOTPOptions{Period: time.Minute}, -1, true},
	{"60s period -2", TOTPOptions{Period: time.Minute}, -2, false},
	{"8 digits SHA512 -1", TOTPOptions{Digits: 8, Algorithm: SHA512}, -1, true},
	{"max back", TOTPOptions{Back: MaxWindow}, -MaxWindow, true},
	{"beyond max is clamped", TOTPOptions{Back: 1000}, -MaxWindow - 1, false},
	{"forward clamped", TOTPOptions{Forward: 1000}, MaxWindow + 1, false},
}

func TestValidateTOTPWindow(t *testing.T) {
	for _, tt := range windowTests {
		t.Run(tt.name, func(t *testing.T) {
			secret := seedFor(tt.opts.Algorithm)
			code, wantStep := codeAtOffset(t, secret, tt.offset, tt.opts)
			step, ok := ValidateTOTP(secret, code, now, tt.opts)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if ok && step != wantStep {
				t.Errorf("step = %d, want %d", step, wantStep)
			}
			if !ok && step != 0 {
				t.Errorf("failed check returned step %d", step)
			}
		})
	}
}

func TestValidateTOTPNearEpoch(t *testing.T) {
	code, _, err := TOTP(seed20, time.Unix(5, 0), 30*time.Second, 6, SHA1)
	if err != nil {
		t.Fatal(err)
	}
	step, ok := ValidateTOTP(seed20, code, time.Unix(5, 0), TOTPOptions{Back: 5})
	if !ok || step != 0 {
		t.Errorf("step 0 with Back 5 at t=5: %d, %v", step, ok)
	}
	if _, ok := ValidateTOTP(seed20, code, time.Unix(-100, 0), TOTPOptions{}); !ok {
		t.Error("time before the epoch should map to step 0")
	}
}

func TestValidateTOTPRejects(t *testing.T) {
	code, _ := codeAtOffset(t, seed20, 0, TOTPOptions{})
	cases := map[string]struct {
		secret []byte
		code   string
		opts   TOTPOptions
	}{
		"wrong code":         {seed20, wrongCode(code), TOTPOptions{}},
		"trailing newline":   {seed20, code + "\n", TOTPOptions{}},
		"leading space":      {seed20, " " + code[1:], TOTPOptions{}},
		"too short":          {seed20, code[:5], TOTPOptions{}},
		"8 digits expected":  {seed20, code, TOTPOptions{Digits: 8}},
		"bad digits option":  {seed20, code, TOTPOptions{Digits: 5}},
		"bad period option":  {seed20, code, TOTPOptions{Period: 1500 * time.Millisecond}},
		"unknown algorithm":  {seed20, code, TOTPOptions{Algorithm: "MD5"}},
		"other secret":       {seed32, code, TOTPOptions{}},
		"empty secret":       {nil, code, TOTPOptions{}},
		"full-width digits":  {seed20, "１２３４５６", TOTPOptions{}},
		"NUL byte":           {seed20, code[:5] + "\x00", TOTPOptions{}},
		"10 kB":              {seed20, strings.Repeat("1", 10_000), TOTPOptions{}},
		"algorithm mismatch": {seed20, code, TOTPOptions{Algorithm: SHA256}},
	}
	for name, c := range cases {
		if step, ok := ValidateTOTP(c.secret, c.code, now, c.opts); ok || step != 0 {
			t.Errorf("%s: accepted (step %d)", name, step)
		}
	}
}

// wrongCode changes the last digit.
func wrongCode(code string) string {
	last := code[len(code)-1]
	return code[:len(code)-1] + string(rune('0'+(last-'0'+1)%10))
}

func TestTOTPOptionsValidate(t *testing.T) {
	good := []TOTPOptions{{}, {Period: time.Minute, Digits: 8, Algorithm: SHA512, Back: 1, Forward: 1}, {Back: MaxWindow, Forward: MaxWindow}}
	for _, o := range good {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	bad := []TOTPOptions{{Digits: 5}, {Digits: 9}, {Period: -time.Second}, {Period: 1500 * time.Millisecond}, {Algorithm: "MD5"}, {Back: MaxWindow + 1}, {Forward: MaxWindow + 1}}
	for _, o := range bad {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

// TestHOTPLookahead covers RFC 4226 §7.4 with look-ahead s: a code k counters
// ahead is accepted for k ≤ s and refused at s+1; after a success the caller
// stores matched+1, so the same code and older ones are refused.
func TestHOTPLookahead(t *testing.T) {
	const c, s = 1000, 10
	for k := uint64(0); k <= s+1; k++ {
		code, err := HOTP(seed20, c+k, 6, SHA1)
		if err != nil {
			t.Fatal(err)
		}
		matched, ok := ValidateHOTP(seed20, code, c, s, 6, SHA1)
		if want := k <= s; ok != want {
			t.Errorf("k=%d: ok = %v, want %v", k, ok, want)
			continue
		}
		if !ok {
			continue
		}
		if matched != c+k {
			t.Errorf("k=%d: matched %d, want %d", k, matched, c+k)
		}
		// Replay after storing matched+1.
		if _, ok := ValidateHOTP(seed20, code, matched+1, s, 6, SHA1); ok {
			t.Errorf("k=%d: replay accepted after counter moved to %d", k, matched+1)
		}
		if k > 0 {
			older, _ := HOTP(seed20, c+k-1, 6, SHA1)
			if _, ok := ValidateHOTP(seed20, older, matched+1, s, 6, SHA1); ok {
				t.Errorf("k=%d: older code accepted", k)
			}
		}
	}
}

func TestHOTPLookaheadBounds(t *testing.T) {
	code, _ := HOTP(seed20, 5, 6, SHA1)
	if _, ok := ValidateHOTP(seed20, code, 5, -3, 6, SHA1); !ok {
		t.Error("negative look-ahead should still check the counter itself")
	}
	far, _ := HOTP(seed20, MaxLookahead+1, 6, SHA1)
	if _, ok := ValidateHOTP(seed20, far, 0, 1<<30, 6, SHA1); ok {
		t.Error("look-ahead not clamped to MaxLookahead")
	}
	top, _ := HOTP(seed20, ^uint64(0), 6, SHA1)
	if m, ok := ValidateHOTP(seed20, top, ^uint64(0)-1, 10, 6, SHA1); !ok || m != ^uint64(0) {
		t.Errorf("at the top of the counter space: %d, %v", m, ok)
	}
}

func TestResyncHOTP(t *testing.T) {
	const c = 200
	code1, _ := HOTP(seed20, c+50, 6, SHA1)
	code2, _ := HOTP(seed20, c+51, 6, SHA1)
	if _, ok := ValidateHOTP(seed20, code1, c, 10, 6, SHA1); ok {
		t.Fatal("code 50 ahead accepted without resync")
	}
	next, ok := ResyncHOTP(seed20, code1, code2, c, 100, 6, SHA1)
	if !ok || next != c+52 {
		t.Fatalf("ResyncHOTP = %d, %v; want %d, true", next, ok, c+52)
	}
	// After resync the used codes are behind the counter.
	if _, ok := ValidateHOTP(seed20, code2, next, 10, 6, SHA1); ok {
		t.Error("resync code accepted again")
	}
	code3, _ := HOTP(seed20, c+52, 6, SHA1)
	if m, ok := ValidateHOTP(seed20, code3, next, 10, 6, SHA1); !ok || m != c+52 {
		t.Errorf("next code after resync: %d, %v", m, ok)
	}

	// Swapped order, a gap, and a window too small all fail.
	if _, ok := ResyncHOTP(seed20, code2, code1, c, 100, 6, SHA1); ok {
		t.Error("swapped codes accepted")
	}
	code52, _ := HOTP(seed20, c+52, 6, SHA1)
	if _, ok := ResyncHOTP(seed20, code1, code52, c, 100, 6, SHA1); ok {
		t.Error("non-consecutive codes accepted")
	}
	if _, ok := ResyncHOTP(seed20, code1, code2, c, 49, 6, SHA1); ok {
		t.Error("codes beyond the window accepted")
	}
	if next, ok := ResyncHOTP(seed20, code1, code2, c, 50, 6, SHA1); !ok || next != c+52 {
		t.Error("codes at the window edge refused")
	}
	if _, ok := ResyncHOTP(seed20, code1, "12345x", c, 100, 6, SHA1); ok {
		t.Error("malformed second code accepted")
	}
}

var validFormatTests = []struct {
	code   string
	digits int
	want   bool
}{
	{"123456", 6, true},
	{"000000", 6, true},
	{"12345678", 8, true},
	{"1234567890", 10, true},
	{"7", 1, true},
	{"12345", 6, false},
	{"1234567", 6, false},
	{"", 6, false},
	{"", 0, false},
	{"12345678901", 11, false},
	{"12345a", 6, false},
	{"-12345", 6, false},
	{"+12345", 6, false},
	{" 12345", 6, false},
	{"12345 ", 6, false},
	{"123456\n", 6, false},
	{"12345\x00", 6, false},
	{"１２３４５６", 6, false},     // full-width digits
	{"١٢٣٤٥٦", 6, false},     // Arabic-Indic digits
	{"1234\u0665", 6, false}, // six bytes, but one is a Unicode digit
	{"12\xff456", 6, false},  // invalid UTF-8
	{"123456", -6, false},
}

func TestValidFormat(t *testing.T) {
	for _, tt := range validFormatTests {
		if got := ValidFormat(tt.code, tt.digits); got != tt.want {
			t.Errorf("ValidFormat(%q, %d) = %v, want %v", tt.code, tt.digits, got, tt.want)
		}
	}
	if ValidFormat(strings.Repeat("9", 10_000), 6) {
		t.Error("10 kB input accepted")
	}
}

func TestEqual(t *testing.T) {
	if !Equal("123456", "123456") || Equal("123456", "123457") || Equal("123456", "1234567") || !Equal("", "") {
		t.Error("Equal is wrong")
	}
}

func FuzzValidFormat(f *testing.F) {
	for _, tt := range validFormatTests {
		f.Add(tt.code, tt.digits)
	}
	f.Fuzz(func(t *testing.T, code string, digits int) {
		got := ValidFormat(code, digits)
		want := digits >= 1 && digits <= MaxCodeDigits && len(code) == digits &&
			strings.Trim(code, "0123456789") == ""
		if got != want {
			t.Fatalf("ValidFormat(%q, %d) = %v, want %v", code, digits, got, want)
		}
	})
}

func FuzzValidateTOTP(f *testing.F) {
	f.Add(seed20, "287082", int64(59), int8(0), int8(0), uint8(0), int64(30))
	f.Add(seed64, "90693936", int64(59), int8(1), int8(1), uint8(2), int64(30))
	f.Add([]byte{}, "", int64(-1), int8(-5), int8(100), uint8(9), int64(0))
	algs := []Algorithm{SHA1, SHA256, SHA512, "", "MD5"}
	f.Fuzz(func(t *testing.T, secret []byte, code string, unix int64, back, forward int8, alg uint8, periodSec int64) {
		o := TOTPOptions{
			Period:    time.Duration(periodSec%200) * time.Second,
			Digits:    len(code),
			Algorithm: algs[int(alg)%len(algs)],
			Back:      int(back),
			Forward:   int(forward),
		}
		at := time.Unix(unix, 0)
		step, ok := ValidateTOTP(secret, code, at, o)
		if !ok {
			if step != 0 {
				t.Fatalf("failed check returned step %d", step)
			}
			return
		}
		d := o.withDefaults()
		want, err := HOTP(secret, step, d.Digits, d.Algorithm)
		if err != nil || !Equal(want, code) {
			t.Fatalf("accepted %q at step %d, but HOTP there is %q (%v)", code, step, want, err)
		}
		s := StepAt(at, d.Period)
		if step+uint64(d.Back) < s || step > s+uint64(d.Forward) {
			t.Fatalf("step %d outside window around %d (%+v)", step, s, d)
		}
	})
}
