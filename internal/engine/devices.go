package engine

import (
	"errors"
	"fmt"
	"time"

	"github.com/otpd/otpd/internal/otp"
)

// DevicePolicy is the engine policy for OTP devices (TOTP, HOTP, SMS, EMAIL, PIN): windows,
// lockout, enrolment defaults. Zero values take the defaults of withDefaults.
//
// Lockout: MaxFails consecutive failures lock a device for LockoutDuration; each further lock
// before a success doubles the time, up to MaxLockoutDuration. When a timed lock runs out the
// failure count is not reset, so the next failure locks again at once (one guess per lock
// period, not a fresh budget). At HardMaxFails consecutive failures the lock no longer runs
// out: only an operator unlocks the device. A success resets the count and the escalation.
type DevicePolicy struct {
	MaxFails           int           `yaml:"max_fails"`            // consecutive failures before a lock (5); 1–100
	LockoutDuration    time.Duration `yaml:"lockout_duration"`     // the first timed lock (15m)
	MaxLockoutDuration time.Duration `yaml:"max_lockout_duration"` // the longest timed lock (24h)
	// TOTPBack and TOTPForward are the steps accepted before and after the current one (1 each;
	// -1 for none; at most MaxTOTPWindow).
	TOTPBack    int `yaml:"totp_back"`
	TOTPForward int `yaml:"totp_forward"`
	// HOTPLookahead is how many counters past the expected one a code may be (10; at most 100).
	HOTPLookahead int `yaml:"hotp_lookahead"`
	// HOTPResyncWindow is how far a resync with two consecutive codes searches (1000).
	HOTPResyncWindow int `yaml:"hotp_resync_window"`
	// Enrolment defaults for TOTP/HOTP devices.
	Algorithm string        `yaml:"algorithm"` // SHA1, SHA256 or SHA512 (SHA1: what every app supports)
	Digits    int           `yaml:"digits"`    // 6–8 (6)
	Period    time.Duration `yaml:"period"`    // 30s or 60s (30s)
	// Issuer names the service in authenticator apps ("otpd").
	Issuer string `yaml:"issuer"`
	// PhoneRegion (ISO 3166 alpha-2, e.g. "ES") reads SMS device numbers without a + or 00 as
	// national numbers of that region. Empty: such numbers are read as international digits.
	PhoneRegion string `yaml:"phone_region"`
	// SilentEnrol turns off the email that tells a user a device was added to their account.
	SilentEnrol bool `yaml:"silent_enrol"`
}

// Device limits.
const (
	// HardMaxFails: no configuration allows more consecutive failures (NIST SP 800-63B §5.2.2).
	HardMaxFails = 100
	// MaxTOTPWindow bounds TOTPBack and TOTPForward: two steps each way accept a code for
	// 2½ minutes at 30 s; RFC 6238 §5.2 recommends at most one step of network delay.
	MaxTOTPWindow = 2
	// MaxHOTPLookahead bounds HOTPLookahead.
	MaxHOTPLookahead = 100
	// MinImportedSeed is the shortest seed an import may bring (128 bits); generated seeds are as
	// long as the HMAC digest (160, 256 or 512 bits).
	MinImportedSeed = 16
	// MaxImportedSeed bounds an imported seed.
	MaxImportedSeed = 128
	// MinPINLength and MaxPINLength bound a PIN, in characters.
	MinPINLength = 6
	MaxPINLength = 64
)

func defaultDevicePolicy() DevicePolicy {
	return DevicePolicy{
		MaxFails:           5,
		LockoutDuration:    15 * time.Minute,
		MaxLockoutDuration: 24 * time.Hour,
		TOTPBack:           1,
		TOTPForward:        1,
		HOTPLookahead:      10,
		HOTPResyncWindow:   1000,
		Algorithm:          "SHA1",
		Digits:             6,
		Period:             30 * time.Second,
		Issuer:             "otpd",
	}
}

// withDefaults fills zero fields.
func (p DevicePolicy) withDefaults() DevicePolicy {
	d := defaultDevicePolicy()
	if p.MaxFails == 0 {
		p.MaxFails = d.MaxFails
	}
	if p.LockoutDuration == 0 {
		p.LockoutDuration = d.LockoutDuration
	}
	if p.MaxLockoutDuration == 0 {
		p.MaxLockoutDuration = max(d.MaxLockoutDuration, p.LockoutDuration)
	}
	if p.TOTPBack == 0 {
		p.TOTPBack = d.TOTPBack
	}
	if p.TOTPForward == 0 {
		p.TOTPForward = d.TOTPForward
	}
	if p.HOTPLookahead == 0 {
		p.HOTPLookahead = d.HOTPLookahead
	}
	if p.HOTPResyncWindow == 0 {
		p.HOTPResyncWindow = d.HOTPResyncWindow
	}
	if p.Algorithm == "" {
		p.Algorithm = d.Algorithm
	}
	if p.Digits == 0 {
		p.Digits = d.Digits
	}
	if p.Period == 0 {
		p.Period = d.Period
	}
	if p.Issuer == "" {
		p.Issuer = d.Issuer
	}
	return p
}

// validate reports values outside what otpd allows.
func (p DevicePolicy) validate() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("devices."+format, a...)) }
	if p.MaxFails < 1 || p.MaxFails > HardMaxFails {
		bad("max_fails must be 1–%d", HardMaxFails)
	}
	if p.LockoutDuration < time.Second || p.MaxLockoutDuration < p.LockoutDuration || p.MaxLockoutDuration > 30*24*time.Hour {
		bad("lockout_duration must be at least 1s and at most max_lockout_duration (at most 720h)")
	}
	if p.TOTPBack < -1 || p.TOTPBack > MaxTOTPWindow || p.TOTPForward < -1 || p.TOTPForward > MaxTOTPWindow {
		bad("totp_back and totp_forward must be -1 (none) to %d", MaxTOTPWindow)
	}
	if p.HOTPLookahead < 0 || p.HOTPLookahead > MaxHOTPLookahead {
		bad("hotp_lookahead must be 0–%d", MaxHOTPLookahead)
	}
	if p.HOTPResyncWindow < p.HOTPLookahead || p.HOTPResyncWindow > otp.MaxResyncWindow {
		bad("hotp_resync_window must be between hotp_lookahead and %d", otp.MaxResyncWindow)
	}
	if _, err := otp.ParseAlgorithm(p.Algorithm); err != nil {
		bad("algorithm must be SHA1, SHA256 or SHA512")
	}
	if p.Digits < otp.MinDigits || p.Digits > otp.MaxDigits {
		bad("digits must be %d–%d", otp.MinDigits, otp.MaxDigits)
	}
	if p.Period != 30*time.Second && p.Period != 60*time.Second {
		bad("period must be 30s or 60s")
	}
	if len(p.Issuer) > 64 || containsControl(p.Issuer) {
		bad("issuer must be at most 64 printable characters")
	}
	if p.PhoneRegion != "" && (len(p.PhoneRegion) != 2 || !isUpperASCII(p.PhoneRegion)) {
		bad("phone_region must be an ISO 3166 alpha-2 code such as ES")
	}
	return errs
}

func isUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

func containsControl(s string) bool {
	for _, r := range s {
		if isControl(r) {
			return true
		}
	}
	return false
}

// Device outcomes besides the shared sentinels.
var (
	// ErrDeviceLocked: the device is locked; it neither verifies nor receives a challenge.
	ErrDeviceLocked = errors.New("device locked")
	// ErrDeviceDisabled: the device is disabled by an operator.
	ErrDeviceDisabled = errors.New("device disabled")
	// ErrInvalidFilter: a list filter or sort is malformed, names an attribute that cannot be
	// filtered on (secrets never can), or exceeds the bounds.
	ErrInvalidFilter = errors.New("invalid filter")
)
