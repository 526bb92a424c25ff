package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/otpd/otpd/internal/otp"
	"github.com/otpd/otpd/internal/store"
)

// DeviceResult is what one verification of a device did.
type DeviceResult struct {
	Device *Device
	// Success: this call is the code's one success.
	Success bool
	// Locked: the device is locked after this call (also when it was locked before: then the
	// code was not even looked at, right or wrong).
	Locked bool
}

// deviceCASRounds bounds the re-reads of one verification. Each lost round means another
// verification changed the device, which happens at most HardMaxFails times before it stays
// locked, plus once per success.
const deviceCASRounds = 2 * HardMaxFails

// verdict is the judgement of a code before it is written.
type verdict int

const (
	verdictWrong  verdict = iota // counted as a failure
	verdictRight                 // accepted
	verdictReplay                // a right code of a step already used: refused, not counted
)

// pinMemo remembers one argon2id comparison across CAS rounds: the result depends only on the
// stored hash and the PIN, and each comparison costs tens of milliseconds.
type pinMemo struct {
	secret []byte
	ok     bool
}

// VerifyDevice checks a code (TOTP, HOTP, PIN; for SMS and EMAIL devices the code of their
// current challenge) against a device. The rules, the same on every surface:
//
//   - a locked device answers Locked without looking at the code, right or wrong; a disabled
//     one answers no success, and neither counts a failure;
//   - a code that is not exactly the device's number of ASCII digits is ErrMalformedCode and
//     counts nothing;
//   - TOTP accepts the current step and TOTPBack/TOTPForward around it, but only a step after
//     the last accepted one (a replay is refused without counting a failure: it is the right
//     code, seen before); HOTP accepts HOTPLookahead counters ahead and moves the counter past
//     the match;
//   - a wrong code counts a failure; MaxFails of them lock the device (see DevicePolicy);
//   - the first right code validates a new device (C → V); a right code resets the count.
//
// Like Check, it reads without a lock, decides, and writes with a compare-and-swap: of many
// concurrent verifications of one right code exactly one succeeds, on every instance.
func (e *Engine) VerifyDevice(ctx context.Context, p Principal, r DeviceRef, code string) (*DeviceResult, error) {
	if code == "" || len(code) > 4*MaxPINLength {
		return nil, fmt.Errorf("%w: the code is empty or too long", ErrMalformedCode)
	}
	var memo pinMemo
	for range deviceCASRounds {
		d, err := e.resolveDevice(ctx, e.store, p, r)
		if err != nil {
			return nil, mapStoreErr(err)
		}
		now := e.clock.Now()
		if res := e.unusable(d, now); res != nil {
			return res, nil
		}
		if d.Type == store.DeviceSMS || d.Type == store.DeviceEMAIL {
			return e.verifyByChallenge(ctx, p, d, code)
		}
		v, next, err := e.judge(ctx, d, code, now, &memo)
		if err != nil {
			return nil, err
		}
		if v == verdictReplay {
			return &DeviceResult{Device: e.deviceView(d, now)}, nil
		}
		res, err := e.settleDevice(ctx, p, d, next, v == verdictRight, now)
		if errors.Is(err, store.ErrConflict) {
			continue // another verification moved the device: judge again on what it wrote
		}
		return res, err
	}
	return nil, fmt.Errorf("%w: the device is changing too fast, retry", ErrConflict)
}

// unusable answers for a locked or disabled device, or returns nil.
func (e *Engine) unusable(d *store.Device, now time.Time) *DeviceResult {
	if !d.UserEnabled { // a disabled user's factors stop working at once (SECURITY.md 38)
		return &DeviceResult{Device: e.deviceView(d, now)}
	}
	switch d.StatusAt(now) {
	case store.DeviceLocked:
		return &DeviceResult{Device: e.deviceView(d, now), Locked: true}
	case store.DeviceDisabled:
		return &DeviceResult{Device: e.deviceView(d, now)}
	}
	return nil
}

// judge evaluates code against d at now. For a right TOTP/HOTP code, next is d with the step or
// counter moved past it.
func (e *Engine) judge(ctx context.Context, d *store.Device, code string, now time.Time, memo *pinMemo) (verdict, store.Device, error) {
	next := *d
	pol := e.cfg.Devices
	switch d.Type {
	case store.DeviceTOTP, store.DeviceHOTP:
		if !otp.ValidFormat(code, d.Digits) {
			return 0, next, fmt.Errorf("%w: the code must be exactly %d digits", ErrMalformedCode, d.Digits)
		}
		seed, err := e.keys.Open(d.Secret, deviceAAD(d.ID))
		if err != nil {
			return 0, next, fmt.Errorf("open device seed: %w", err) // fail closed
		}
		alg := otp.Algorithm(d.Algorithm)
		if d.Type == store.DeviceTOTP {
			step, ok := otp.ValidateTOTP(seed, code, now, otp.TOTPOptions{Period: d.Period, Digits: d.Digits,
				Algorithm: alg, Back: pol.TOTPBack, Forward: pol.TOTPForward})
			switch {
			case !ok:
				return verdictWrong, next, nil
			case int64(step) <= d.LastStep:
				return verdictReplay, next, nil
			}
			next.LastStep = int64(step)
			return verdictRight, next, nil
		}
		matched, ok := otp.ValidateHOTP(seed, code, uint64(d.Counter), pol.HOTPLookahead, d.Digits, alg)
		if !ok {
			return verdictWrong, next, nil
		}
		next.Counter = int64(matched) + 1
		return verdictRight, next, nil
	case store.DevicePIN:
		if len(code) > 4*MaxPINLength {
			return 0, next, fmt.Errorf("%w: the PIN is too long", ErrMalformedCode)
		}
		if memo.secret == nil || !bytes.Equal(memo.secret, d.Secret) {
			phc, err := e.keys.Open(d.Secret, deviceAAD(d.ID))
			if err != nil {
				return 0, next, fmt.Errorf("open device PIN: %w", err)
			}
			ok, err := checkPIN(ctx, string(phc), code)
			if err != nil {
				return 0, next, err
			}
			memo.secret, memo.ok = d.Secret, ok
		}
		if memo.ok {
			return verdictRight, next, nil
		}
		return verdictWrong, next, nil
	}
	return 0, next, fmt.Errorf("%w: a %s device is not verified by a code", ErrInvalid, d.Type)
}

// settleDevice applies a success or failure to next (d as judged, with any step or counter
// moved) and writes it with a compare-and-swap on d's version. store.ErrConflict: judge again.
func (e *Engine) settleDevice(ctx context.Context, p Principal, d *store.Device, next store.Device, success bool, now time.Time) (*DeviceResult, error) {
	advanced := success && (next.LastStep != d.LastStep || next.Counter != d.Counter)
	locked := e.settle(&next, success, now)
	err := e.store.InTx(ctx, func(q store.Queries) error {
		if err := q.SetDeviceOutcome(ctx, &next, advanced); err != nil {
			return err
		}
		if locked { // a lock is worth an audit record; successes and failures are in the row
			result := "locked"
			if next.LockedUntil == nil {
				result = "locked:permanent"
			}
			return e.audit(ctx, q, p, "device.locked", next.ID, result, "")
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, err
		}
		return nil, mapStoreErr(err)
	}
	return &DeviceResult{Device: e.deviceView(&next, now), Success: success, Locked: locked}, nil
}

// settle applies the outcome of one evaluated code to d and reports whether it locked d.
func (e *Engine) settle(d *store.Device, success bool, now time.Time) bool {
	d.UpdatedAt = now
	if success {
		d.Fails, d.Lockouts, d.LockedUntil = 0, 0, nil
		d.Status = store.DeviceValidated
		if d.ValidatedAt == nil {
			d.ValidatedAt = &now
		}
		d.LastUsedAt = &now
		return false
	}
	pol := e.cfg.Devices
	d.Fails = min(d.Fails+1, HardMaxFails)
	if d.Fails < pol.MaxFails {
		return false
	}
	d.Status = store.DeviceLocked
	d.Lockouts++
	if d.Fails >= HardMaxFails {
		d.LockedUntil = nil // only an operator unlocks it now
		return true
	}
	wait := pol.LockoutDuration
	for i := 1; i < d.Lockouts && wait < pol.MaxLockoutDuration; i++ {
		wait *= 2
	}
	until := now.Add(min(wait, pol.MaxLockoutDuration))
	d.LockedUntil = &until
	return true
}

// verifyByChallenge checks code against the SMS/EMAIL device's current challenge with the
// verification-session rules (Check), then counts the outcome on the device. A failure counts
// on the device whichever challenge it came through, so new challenges give no fresh tries.
func (e *Engine) verifyByChallenge(ctx context.Context, p Principal, d *store.Device, code string) (*DeviceResult, error) {
	if d.ChallengeID == "" {
		return &DeviceResult{Device: e.deviceView(d, e.clock.Now())}, nil
	}
	res, err := e.check(ctx, p, d.ChallengeID, code, deviceSession(d.ID))
	if errors.Is(err, ErrNotFound) {
		return &DeviceResult{Device: e.deviceView(d, e.clock.Now())}, nil
	}
	if err != nil {
		return nil, err
	}
	if res.Outcome == OutcomeFinished { // expired, used or cancelled: nothing was evaluated
		return &DeviceResult{Device: e.deviceView(d, e.clock.Now())}, nil
	}
	success := res.Outcome == OutcomeVerified
	for range deviceCASRounds {
		now := e.clock.Now()
		if out := e.unusable(d, now); out != nil {
			// Locked or disabled while the code was checked: no success, and no more counting.
			return out, nil
		}
		out, err := e.settleDevice(ctx, p, d, *d, success, now)
		if !errors.Is(err, store.ErrConflict) {
			return out, err
		}
		if d, err = e.store.GetDevice(ctx, p.TenantID, d.ID); err != nil {
			return nil, mapStoreErr(err)
		}
	}
	return nil, fmt.Errorf("%w: the device is changing too fast, retry", ErrConflict)
}

// deviceSession admits the challenge sessions of one device.
func deviceSession(deviceID string) func(*store.Challenge) bool {
	return func(c *store.Challenge) bool { return c.Surface == SurfaceDevice && c.DeviceID == deviceID }
}

// ResyncDevice moves an HOTP device's counter after two consecutive codes found within
// HOTPResyncWindow (RFC 4226 §7.4). It is a verification like any other: a locked device is
// refused, a miss counts a failure, a match resets the count.
func (e *Engine) ResyncDevice(ctx context.Context, p Principal, r DeviceRef, code1, code2 string) (*DeviceResult, error) {
	if len(code1) > otp.MaxDigits || len(code2) > otp.MaxDigits {
		return nil, fmt.Errorf("%w: the codes are too long", ErrMalformedCode)
	}
	for range deviceCASRounds {
		d, err := e.resolveDevice(ctx, e.store, p, r)
		if err != nil {
			return nil, mapStoreErr(err)
		}
		if d.Type != store.DeviceHOTP {
			return nil, invalid("type", "only HOTP devices resynchronise")
		}
		now := e.clock.Now()
		if res := e.unusable(d, now); res != nil {
			return res, nil
		}
		if !otp.ValidFormat(code1, d.Digits) || !otp.ValidFormat(code2, d.Digits) {
			return nil, fmt.Errorf("%w: each code must be exactly %d digits", ErrMalformedCode, d.Digits)
		}
		seed, err := e.keys.Open(d.Secret, deviceAAD(d.ID))
		if err != nil {
			return nil, fmt.Errorf("open device seed: %w", err)
		}
		next := *d
		n, ok := otp.ResyncHOTP(seed, code1, code2, uint64(d.Counter), e.cfg.Devices.HOTPResyncWindow, d.Digits, otp.Algorithm(d.Algorithm))
		if ok {
			next.Counter = int64(n)
		}
		res, err := e.settleDevice(ctx, p, d, next, ok, now)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return res, err
	}
	return nil, fmt.Errorf("%w: the device is changing too fast, retry", ErrConflict)
}

// DeviceChallenge is the answer to a challenge request.
type DeviceChallenge struct {
	Device *Device
	// Session is the verification session that carries the code (SMS and EMAIL devices); nil
	// for device types whose code the user already has (TOTP, HOTP, PIN).
	Session *Session
}

// ChallengeDevice asks for a code: for an SMS or EMAIL device it sends one through the outbox
// — a resend of the device's pending session when there is one (new code, the old one dead, the
// try budget not refilled, the cooldown and send count kept), else a new session — with the
// send limits of every verification. TOTP, HOTP and PIN devices get nothing sent. A locked or
// disabled device gets ErrDeviceLocked / ErrDeviceDisabled.
func (e *Engine) ChallengeDevice(ctx context.Context, p Principal, r DeviceRef, clientIP string) (*DeviceChallenge, error) {
	d, err := e.resolveDevice(ctx, e.store, p, r)
	if err != nil {
		return nil, mapStoreErr(err)
	}
	now := e.clock.Now()
	if !d.UserEnabled {
		return nil, ErrDeviceDisabled
	}
	switch d.StatusAt(now) {
	case store.DeviceLocked:
		return nil, ErrDeviceLocked
	case store.DeviceDisabled:
		return nil, ErrDeviceDisabled
	}
	out := &DeviceChallenge{Device: e.deviceView(d, now)}
	var channel, to string
	switch d.Type {
	case store.DeviceSMS:
		n, ok := normalizeDevicePhone(d.Phone, e.cfg.Devices.PhoneRegion)
		if !ok {
			return nil, invalid("phone", "the device's number cannot be read; set policy.devices.phone_region or use +international form")
		}
		channel, to = ChannelSMS, n
	case store.DeviceEMAIL:
		channel, to = ChannelEmail, d.Email
	default:
		return out, nil
	}
	var s *Session
	if d.ChallengeID != "" {
		s, err = e.resend(ctx, p, d.ChallengeID, deviceSession(d.ID))
		var fe *FinishedError
		switch {
		case errors.As(err, &fe), errors.Is(err, ErrNotFound):
			s = nil // start a new one
		case err != nil:
			return nil, err
		}
	}
	if s == nil {
		s, err = e.Start(ctx, p, StartRequest{Channel: channel, To: to, Purpose: "device", ClientIP: clientIP, Surface: SurfaceDevice,
			UserID: d.UserID, DeviceID: d.ID})
		if err != nil {
			return nil, err
		}
	}
	out.Session = s
	for range deviceCASRounds {
		if d.ChallengeID == s.ID {
			break
		}
		next := *d
		next.ChallengeID, next.UpdatedAt = s.ID, e.clock.Now()
		err := e.store.InTx(ctx, func(q store.Queries) error { return q.SetDeviceOutcome(ctx, &next, false) })
		if err == nil {
			d = &next
			break
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, mapStoreErr(err)
		}
		if d, err = e.store.GetDevice(ctx, p.TenantID, d.ID); err != nil {
			return nil, mapStoreErr(err)
		}
	}
	out.Device = e.deviceView(d, e.clock.Now())
	return out, nil
}

// nationalPhone reads digits as a national number of region and returns its E.164 form.
func nationalPhone(s, region string) (string, bool) {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '(' || r == ')' || r == '.':
		default:
			return "", false
		}
	}
	d := b.String()
	if len(d) < 4 || len(d) > 15 {
		return "", false
	}
	n, err := phonenumbers.Parse(d, region)
	if err != nil || !phonenumbers.IsValidNumberForRegion(n, region) {
		return "", false
	}
	return phonenumbers.Format(n, phonenumbers.E164), true
}
