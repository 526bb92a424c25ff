package engine_test

import (
	"bytes"
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	potp "github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"

	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/deliver/logsender"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/otpauth"
	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/storetest"
)

// devFixture adds a user and SMS/email delivery (the log provider, a real Sender that keeps
// messages in the dev inbox) to the engine fixture.
type devFixture struct {
	*fixture
	user   *store.User
	worker *deliver.Worker
}

func devSetup(t *testing.T, b storetest.Backend, cfg engine.Config) *devFixture {
	t.Helper()
	f := setup(t, b, cfg)
	f.eng = newEngine(t, f.st, f.clk, cfg, engine.ChannelEmail, engine.ChannelSMS)
	quiet := slog.New(slog.DiscardHandler)
	inbox := logsender.New(f.st, f.kr, quiet)
	inbox.Clock = f.clk
	w := &deliver.Worker{Outbox: f.st, Keys: f.kr, Clock: f.clk, Logger: quiet,
		Senders: deliver.Registry{engine.ChannelEmail: inbox, engine.ChannelSMS: inbox}}
	login, email := "alice", "alice@example.com"
	u, err := f.eng.CreateUser(context.Background(), f.admin, engine.UserInput{Login: &login, Email: &email})
	if err != nil {
		t.Fatal(err)
	}
	return &devFixture{fixture: f, user: u, worker: w}
}

func (f *devFixture) enroll(t *testing.T, r engine.EnrollRequest) *engine.Enrollment {
	t.Helper()
	if r.User == (engine.UserRef{}) {
		r.User = engine.UserRef{ID: f.user.ID}
	}
	en, err := f.eng.EnrollDevice(context.Background(), f.admin, r)
	if err != nil {
		t.Fatalf("enroll %s: %v", r.Type, err)
	}
	return en
}

func (f *devFixture) verify(t *testing.T, id, code string) *engine.DeviceResult {
	t.Helper()
	r, err := f.eng.VerifyDevice(context.Background(), f.admin, engine.DeviceRef{ID: id}, code)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return r
}

// totpCode computes the code for t with pquerna/otp, independently of otpd, from the URI the
// enrolment returned.
func totpCode(t *testing.T, uri string, at time.Time) string {
	t.Helper()
	k, err := potp.NewKeyFromURL(uri)
	if err != nil {
		t.Fatal(err)
	}
	alg := map[string]potp.Algorithm{"SHA1": potp.AlgorithmSHA1, "SHA256": potp.AlgorithmSHA256, "SHA512": potp.AlgorithmSHA512}
	q := regexp.MustCompile(`algorithm=(\w+)&digits=(\d)`).FindStringSubmatch(uri)
	digits := potp.DigitsSix
	if q[2] == "8" {
		digits = potp.DigitsEight
	}
	code, err := totp.GenerateCodeCustom(k.Secret(), at, totp.ValidateOpts{Period: uint(k.Period()), Digits: digits, Algorithm: alg[q[1]]})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func TestTOTPEnrolVerifyReplay(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := devSetup(t, b, engine.Config{})
		for _, alg := range []string{"SHA1", "SHA256", "SHA512"} {
			en := f.enroll(t, engine.EnrollRequest{Type: "totp", Algorithm: alg, Digits: 8})
			d := en.Device
			if d.State != "C" || d.Type != "TOTP" || d.Name != fmt.Sprintf("TOTP%08d", d.Number) || d.Secret != nil || en.URI == "" || len(en.QR) == 0 {
				t.Fatalf("enrolment: %+v uri %q", d, en.URI)
			}
			k, _ := otpauth.Parse(en.URI)
			if want := map[string]int{"SHA1": 20, "SHA256": 32, "SHA512": 64}[alg]; len(k.Secret) != want {
				t.Errorf("%s seed is %d bytes, want %d", alg, len(k.Secret), want)
			}
			// The enrolment code validates the device, once.
			code := totpCode(t, en.URI, f.clk.Now())
			r := f.verify(t, d.ID, code)
			if !r.Success || r.Locked || r.Device.State != "V" || r.Device.LastUsedAt == nil {
				t.Fatalf("%s: first code: %+v", alg, r)
			}
			// The same code again (SECURITY.md 15: the enrolment code is not also the first login).
			r = f.verify(t, d.ID, code)
			if r.Success || r.Locked || r.Device.Fails != 0 {
				t.Fatalf("%s: replay: success %v locked %v fails %d", alg, r.Success, r.Locked, r.Device.Fails)
			}
			// The previous step's code is older than the accepted one: refused too.
			if r = f.verify(t, d.ID, totpCode(t, en.URI, f.clk.Now().Add(-30*time.Second))); r.Success {
				t.Fatalf("%s: an earlier step was accepted after a later one", alg)
			}
			f.clk.Advance(30 * time.Second)
			if r = f.verify(t, d.ID, totpCode(t, en.URI, f.clk.Now())); !r.Success {
				t.Fatalf("%s: the next step's code was refused", alg)
			}
			// A wall clock that jumps back does not revive used steps (SECURITY.md 42).
			f.clk.Advance(-60 * time.Second)
			for _, back := range []time.Duration{0, -30 * time.Second} {
				if r = f.verify(t, d.ID, totpCode(t, en.URI, f.clk.Now().Add(back))); r.Success {
					t.Fatalf("%s: a used step was accepted after the clock went back", alg)
				}
			}
			f.clk.Advance(120 * time.Second)
		}
	})
}

// TestTOTPWindow: the current step and one either side are accepted, two away are not
// (SECURITY.md 16).
func TestTOTPWindow(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := devSetup(t, b, engine.Config{})
		for _, c := range []struct {
			offset time.Duration
			ok     bool
		}{{-60 * time.Second, false}, {60 * time.Second, false}, {-30 * time.Second, true}, {30 * time.Second, true}, {0, true}} {
			en := f.enroll(t, engine.EnrollRequest{Type: "TOTP"})
			r := f.verify(t, en.Device.ID, totpCode(t, en.URI, f.clk.Now().Add(c.offset)))
			if r.Success != c.ok {
				t.Errorf("offset %s: success %v, want %v", c.offset, r.Success, c.ok)
			}
		}
		// The server's time only: nothing a caller sends moves it (the API has no time input).
	})
}

// Fifty concurrent submissions of one right code: exactly one success, on SQLite and on
// PostgreSQL with two engines (two instances) sharing the database.
func TestTOTPConcurrentOneSuccess(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := devSetup(t, b, engine.Config{})
		engines := []*engine.Engine{f.eng}
		if f.st.Dialect() == "postgres" {
			engines = append(engines, newEngine(t, storetest.Open(t, f.dsn), f.clk, engine.Config{}))
		}
		for round := range 3 {
			en := f.enroll(t, engine.EnrollRequest{Type: "TOTP"})
			code := totpCode(t, en.URI, f.clk.Now())
			var ok, refused atomic.Int32
			var wg sync.WaitGroup
			gate := make(chan struct{})
			for i := range 50 {
				wg.Go(func() {
					<-gate
					r, err := engines[i%len(engines)].VerifyDevice(context.Background(), f.admin, engine.DeviceRef{ID: en.Device.ID}, code)
					switch {
					case err != nil:
						t.Errorf("verify: %v", err)
					case r.Success:
						ok.Add(1)
					case !r.Locked:
						refused.Add(1)
					}
				})
			}
			close(gate)
			wg.Wait()
			if ok.Load() != 1 || refused.Load() != 49 {
				t.Fatalf("round %d: %d successes, %d refusals; want 1 and 49", round, ok.Load(), refused.Load())
			}
			d, _ := f.eng.GetDevice(context.Background(), f.admin, engine.DeviceRef{ID: en.Device.ID})
			if d.Fails != 0 || d.State != "V" {
				t.Errorf("round %d: replays counted as failures: %+v", round, d)
			}
		}
	})
}

func TestDeviceLockoutAndTimedUnlock(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := devSetup(t, b, engine.Config{})
		en := f.enroll(t, engine.EnrollRequest{Type: "TOTP"})
		id := en.Device.ID
		right := func() string { return totpCode(t, en.URI, f.clk.Now()) }
		wrong := func() string { return wrongCode(right()) }
		for i := 1; i <= 4; i++ {
			r := f.verify(t, id, wrong())
			if r.Success || r.Locked || r.Device.AttemptsLeft != 5-i {
				t.Fatalf("failure %d: %+v", i, r)
			}
		}
		r := f.verify(t, id, wrong())
		if r.Success || !r.Locked || r.Device.State != "L" || r.Device.AttemptsLeft != 0 {
			t.Fatalf("fifth failure did not lock: %+v", r)
		}
		// Locked: the right code is not even looked at.
		r = f.verify(t, id, right())
		if r.Success || !r.Locked {
			t.Fatalf("right code while locked: %+v", r)
		}
		d, _ := f.eng.GetDevice(context.Background(), f.admin, engine.DeviceRef{ID: id})
		if d.Fails != 5 || d.LockedUntil == nil || !d.LockedUntil.Equal(t0.Add(15*time.Minute)) {
			t.Fatalf("stored after lock: fails %d locked until %v", d.Fails, d.LockedUntil)
		}
		// Timed unlock: after 15 minutes the device works again…
		f.clk.Advance(15 * time.Minute)
		d, _ = f.eng.GetDevice(context.Background(), f.admin, engine.DeviceRef{ID: id})
		if d.State != "C" || d.AttemptsLeft != 1 {
			t.Fatalf("after the lock ran out: state %s attempts_left %d", d.State, d.AttemptsLeft)
		}
		// …but one more failure locks it again, for twice as long (SECURITY.md 22).
		r = f.verify(t, id, wrong())
		if !r.Locked || !r.Device.LockedUntil.Equal(f.clk.Now().Add(30*time.Minute)) {
			t.Fatalf("failure after the timed unlock: %+v until %v", r, r.Device.LockedUntil)
		}
		f.clk.Advance(29 * time.Minute)
		if r = f.verify(t, id, right()); !r.Locked {
			t.Fatal("unlocked before the doubled lock ran out")
		}
		f.clk.Advance(time.Minute)
		r = f.verify(t, id, right())
		if !r.Success || r.Device.Fails != 0 || r.Device.Lockouts != 0 || r.Device.State != "V" || r.Device.AttemptsLeft != 5 {
			t.Fatalf("right code after the lock: %+v", r)
		}
		// Audited: the locks, not each failure.
		events, _ := f.st.ListAuditEvents(context.Background(), f.admin.TenantID, 100)
		locks := 0
		for _, e := range events {
			if e.Action == "device.locked" && e.Target == id {
				locks++
			}
		}
		if locks != 2 {
			t.Errorf("%d device.locked audit events, want 2", locks)
		}
	})
}

// TestStatusChangeKeepsFailures: an application key re-stating a device's status (D, then V)
// does not clear its fail count, so guesses cannot be spread over "fresh" budgets.
func TestStatusChangeKeepsFailures(t *testing.T) {
	f := devSetup(t, storetest.Backends()[0], engine.Config{})
	en := f.enroll(t, engine.EnrollRequest{Type: "TOTP"})
	id := en.Device.ID
	app := engine.Principal{TenantID: f.admin.TenantID, ApplicationID: "app-1", Role: store.RoleApp}
	ctx := context.Background()
	for range 4 {
		f.verify(t, id, wrongCode(totpCode(t, en.URI, f.clk.Now())))
	}
	for _, st := range []string{"D", "V", "C"} {
		if _, err := f.eng.UpdateDevice(ctx, app, engine.DeviceRef{ID: id}, engine.DeviceChanges{Status: &st}); err != nil {
			t.Fatalf("status %s: %v", st, err)
		}
		d, _ := f.eng.GetDevice(ctx, f.admin, engine.DeviceRef{ID: id})
		if d.Fails != 4 {
			t.Fatalf("after an application key set %s: fails %d, want 4", st, d.Fails)
		}
	}
	if r := f.verify(t, id, wrongCode(totpCode(t, en.URI, f.clk.Now()))); !r.Locked {
		t.Fatalf("the fifth failure did not lock: %+v", r)
	}
	// An operator's V does clear it (as UnlockDevice does).
	v := "V"
	if _, err := f.eng.UpdateDevice(ctx, f.admin, engine.DeviceRef{ID: id}, engine.DeviceChanges{Status: &v}); err != nil {
		t.Fatal(err)
	}
	if d, _ := f.eng.GetDevice(ctx, f.admin, engine.DeviceRef{ID: id}); d.Fails != 0 || d.State != "V" {
		t.Fatalf("after the operator's V: %+v", d)
	}
}

// TestDeviceHardCap: at 100 consecutive failures the lock no longer runs out; only an operator
// unlocks. Configuration cannot allow more (SECURITY.md 19).
func TestDeviceHardCap(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := devSetup(t, b, engine.Config{Devices: engine.DevicePolicy{MaxFails: 100}})
		en := f.enroll(t, engine.EnrollRequest{Type: "TOTP"})
		id := en.Device.ID
		for i := 1; i <= 100; i++ {
			r := f.verify(t, id, wrongCode(totpCode(t, en.URI, f.clk.Now())))
			if r.Locked != (i == 100) {
				t.Fatalf("failure %d: locked %v", i, r.Locked)
			}
		}
		f.clk.Advance(365 * 24 * time.Hour)
		if r := f.verify(t, id, totpCode(t, en.URI, f.clk.Now())); !r.Locked || r.Device.LockedUntil != nil {
			t.Fatalf("a year later: %+v", r)
		}
		app := engine.Principal{TenantID: f.admin.TenantID, ApplicationID: "app-1", Role: store.RoleApp}
		if _, err := f.eng.UnlockDevice(context.Background(), app, engine.DeviceRef{ID: id}); !errors.Is(err, engine.ErrForbidden) {
			t.Fatalf("an application key unlocked a device: %v", err)
		}
		validated, disabled := "V", "D"
		if _, err := f.eng.UpdateDevice(context.Background(), app, engine.DeviceRef{ID: id}, engine.DeviceChanges{Status: &validated}); !errors.Is(err, engine.ErrForbidden) {
			t.Fatalf("an application key lifted a lock by a status change: %v", err)
		}
		// Nor by a detour through D (then V): leaving a lock in any direction needs an admin.
		if _, err := f.eng.UpdateDevice(context.Background(), app, engine.DeviceRef{ID: id}, engine.DeviceChanges{Status: &disabled}); !errors.Is(err, engine.ErrForbidden) {
			t.Fatalf("an application key disabled a locked device (the first step of lifting it): %v", err)
		}
		if _, err := f.eng.UnlockDevice(context.Background(), f.admin, engine.DeviceRef{ID: id}); err != nil {
			t.Fatal(err)
		}
		if r := f.verify(t, id, totpCode(t, en.URI, f.clk.Now())); !r.Success {
			t.Fatalf("after the operator's unlock: %+v", r)
		}
		for _, c := range []engine.DevicePolicy{{MaxFails: 101}, {MaxFails: -1}, {TOTPBack: 3}, {TOTPForward: 5},
			{HOTPLookahead: 101}, {Digits: 9}, {Period: 45 * time.Second}, {Algorithm: "MD5"}, {PhoneRegion: "spain"},
			{LockoutDuration: time.Hour, MaxLockoutDuration: time.Minute}} {
			if err := (engine.Config{Devices: c}).Validate(); err == nil {
				t.Errorf("device policy %+v accepted", c)
			}
		}
	})
}

// Concurrent wrong codes are all counted, and none is evaluated once the device is locked
// (SECURITY.md 21): of 100 parallel failures, MaxFails count and the rest meet the lock.
func TestDeviceConcurrentFailures(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := devSetup(t, b, engine.Config{Devices: engine.DevicePolicy{MaxFails: 10}})
		engines := []*engine.Engine{f.eng}
		if f.st.Dialect() == "postgres" {
			engines = append(engines, newEngine(t, storetest.Open(t, f.dsn), f.clk, engine.Config{Devices: engine.DevicePolicy{MaxFails: 10}}))
		}
		en := f.enroll(t, engine.EnrollRequest{Type: "TOTP"})
		bad := wrongCode(totpCode(t, en.URI, f.clk.Now()))
		var counted, metLock atomic.Int32
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				r, err := engines[i%len(engines)].VerifyDevice(context.Background(), f.admin, engine.DeviceRef{ID: en.Device.ID}, bad)
				switch {
				case err != nil:
					t.Errorf("verify: %v", err)
				case r.Success:
					t.Error("a wrong code succeeded")
				case r.Locked && r.Device.Fails == 10 && r.Device.Version > 1:
					// either the failure that locked it, or a later one that met the lock
					metLock.Add(1)
				default:
					counted.Add(1)
				}
			})
		}
		wg.Wait()
		d, _ := f.eng.GetDevice(context.Background(), f.admin, engine.DeviceRef{ID: en.Device.ID})
		if d.Fails != 10 || d.State != "L" || counted.Load() != 9 || metLock.Load() != 91 {
			t.Fatalf("stored fails %d state %s; %d counted before the lock, %d met it; want 10, L, 9, 91",
				d.Fails, d.State, counted.Load(), metLock.Load())
		}
	})
}

// HOTP: RFC 4226 Appendix D seed and codes; look-ahead 10; the counter only moves forward;
// resync with two consecutive codes far ahead (SECURITY.md 17).
func TestHOTP(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := devSetup(t, b, engine.Config{})
		seed := []byte("12345678901234567890")
		en := f.enroll(t, engine.EnrollRequest{Type: "HOTP", Secret: seed})
		if en.URI != "" || en.QR != nil || !en.Device.Imported {
			t.Fatalf("an imported seed was shown again: %q", en.URI)
		}
		id := en.Device.ID
		b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(seed)
		code := func(c uint64) string {
			s, err := hotp.GenerateCode(b32, c)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		if code(0) != "755224" || code(9) != "520489" {
			t.Fatal("pquerna/otp disagrees with RFC 4226 Appendix D")
		}
		steps := []struct {
			counter uint64
			ok      bool
		}{{0, true}, {0, false}, {5, true}, {3, false}, {5, false}, {6, true}, {18, false}, {17, true}}
		for _, s := range steps {
			if r := f.verify(t, id, code(s.counter)); r.Success != s.ok {
				t.Fatalf("counter %d: success %v, want %v", s.counter, r.Success, s.ok)
			}
		}
		// Far ahead (c + 50): refused by verify, accepted by a resync with the next code too.
		if r := f.verify(t, id, code(67)); r.Success {
			t.Fatal("a code 50 ahead was accepted without a resync")
		}
		ctx := context.Background()
		if r, err := f.eng.ResyncDevice(ctx, f.admin, engine.DeviceRef{ID: id}, code(67), code(69)); err != nil || r.Success {
			t.Fatalf("resync with non-consecutive codes: %+v %v", r, err)
		}
		r, err := f.eng.ResyncDevice(ctx, f.admin, engine.DeviceRef{ID: id}, code(67), code(68))
		if err != nil || !r.Success || r.Device.Counter != 69 || r.Device.Fails != 0 {
			t.Fatalf("resync: %+v %v", r, err)
		}
		if r := f.verify(t, id, code(68)); r.Success {
			t.Fatal("a code used by the resync was accepted")
		}
		if r := f.verify(t, id, code(69)); !r.Success {
			t.Fatal("the code after the resync was refused")
		}
		if _, err := f.eng.ResyncDevice(ctx, f.admin, engine.DeviceRef{ID: id}, "12", code(70)); !errors.Is(err, engine.ErrMalformedCode) {
			t.Fatalf("malformed resync: %v", err)
		}
	})
}

func TestEnrolValidation(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := devSetup(t, b, engine.Config{Devices: engine.DevicePolicy{PhoneRegion: "ES"}})
		ctx := context.Background()
		u := engine.UserRef{ID: f.user.ID}
		bad := []engine.EnrollRequest{
			{User: u, Type: "FAX"},
			{User: u, Type: "TOTP", Secret: make([]byte, 15)}, // < 128 bits (SECURITY.md 4)
			{User: u, Type: "TOTP", Secret: make([]byte, 129)},
			{User: u, Type: "TOTP", Digits: 9},
			{User: u, Type: "TOTP", Period: 45 * time.Second},
			{User: u, Type: "TOTP", Algorithm: "MD5"},
			{User: u, Type: "HOTP", Period: 30 * time.Second},
			{User: u, Type: "SMS"},
			{User: u, Type: "SMS", Phone: "not a number"},
			{User: u, Type: "EMAIL", Email: "nope"},
			{User: u, Type: "PIN", PIN: "12345"},
			{User: u, Type: "PIN", PIN: strings.Repeat("1", 65)},
			{User: u, Type: "PIN", PIN: "123456\x00"},
			{User: u, Type: "SMS", Phone: "+34666555444", PIN: "123456789"},
			{User: u, Type: "TOTP", Name: strings.Repeat("n", 129)},
			{Type: "TOTP"},
		}
		for _, r := range bad {
			if _, err := f.eng.EnrollDevice(ctx, f.admin, r); !errors.Is(err, engine.ErrInvalid) {
				t.Errorf("%+v: %v, want ErrInvalid", r, err)
			}
		}
		if _, err := f.eng.EnrollDevice(ctx, f.admin, engine.EnrollRequest{User: engine.UserRef{Login: "nobody"}, Type: "TOTP"}); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("unknown user: %v", err)
		}
		// Names as Soffid makes them; national numbers of the configured region.
		sms := f.enroll(t, engine.EnrollRequest{User: engine.UserRef{Login: "alice"}, Type: "sms", Phone: "666555444"})
		mail := f.enroll(t, engine.EnrollRequest{Type: "EMAIL", Email: "pgarcia@soffid.com"})
		pin := f.enroll(t, engine.EnrollRequest{Type: "PIN", PIN: "123456789"})
		if sms.Device.Name != "SMS message to 66*****44" || mail.Device.Name != "Email message to pg*****@so****.co*" ||
			pin.Device.Name != fmt.Sprintf("PIN%08d", pin.Device.Number) || sms.URI != "" || pin.QR != nil {
			t.Errorf("names: %q %q %q", sms.Device.Name, mail.Device.Name, pin.Device.Name)
		}
		if l := sms.Device.TargetLabel(); l != "SMS message to 66*****44" {
			t.Errorf("target label %q", l)
		}
		for in, want := range map[string]string{"6665552222": "66*****22", "+34 666 555 444": "+3*****44", "12": "*****"} {
			if got := engine.MaskPhone(in); got != want {
				t.Errorf("MaskPhone(%q) = %q, want %q", in, got, want)
			}
		}
		if got := engine.MaskEmail("a@mail.example.org"); got != "a*****@ma**.ex*****.or*" {
			t.Errorf("MaskEmail = %q", got)
		}
	})
}

// TestPINDevice: argon2id-hashed and sealed; right and wrong PINs; nothing secret at rest.
func TestPINDevice(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := devSetup(t, b, engine.Config{})
		pin := f.enroll(t, engine.EnrollRequest{Type: "PIN", PIN: "73915286402"})
		if r := f.verify(t, pin.Device.ID, "73915286403"); r.Success || r.Device.Fails != 1 {
			t.Fatalf("wrong PIN: %+v", r)
		}
		if r := f.verify(t, pin.Device.ID, "73915286402"); !r.Success || r.Device.State != "V" || r.Device.Fails != 0 {
			t.Fatalf("right PIN: %+v", r)
		}
		newPIN := "55501234999"
		if _, err := f.eng.UpdateDevice(context.Background(), f.admin, engine.DeviceRef{ID: pin.Device.ID}, engine.DeviceChanges{PIN: &newPIN}); err != nil {
			t.Fatal(err)
		}
		if r := f.verify(t, pin.Device.ID, "73915286402"); r.Success {
			t.Fatal("the old PIN still works")
		}
		if r := f.verify(t, pin.Device.ID, newPIN); !r.Success {
			t.Fatal("the new PIN does not work")
		}
		seed := []byte("9876543210fedcba9876")
		f.enroll(t, engine.EnrollRequest{Type: "TOTP", Secret: seed})
		gen := f.enroll(t, engine.EnrollRequest{Type: "TOTP"})
		k, _ := otpauth.Parse(gen.URI)
		dump := storetest.Dump(t, f.st, f.dsn)
		if !bytes.Contains(dump, []byte("alice@example.com")) {
			t.Fatal("the dump does not contain the user: it did not read the data")
		}
		for _, secret := range [][]byte{[]byte("73915286402"), []byte(newPIN), seed, k.Secret,
			[]byte(otpauth.EncodeSecret(seed)), []byte(otpauth.EncodeSecret(k.Secret)), []byte("$argon2id$")} {
			if bytes.Contains(dump, secret) || bytes.Contains(dump, []byte(fmt.Sprintf("%x", secret))) {
				t.Errorf("%q is stored in the clear", secret)
			}
		}
	})
}

// readCode delivers the outbox and reads the newest code sent to to from the dev inbox.
func (f *devFixture) readCode(t *testing.T, to string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := f.worker.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	msgs, err := f.st.ListDevMessages(ctx, f.admin.TenantID, to, 1)
	if err != nil || len(msgs) == 0 {
		t.Fatalf("no message to %s: %v", to, err)
	}
	plain, err := f.kr.Open(msgs[0].Body, []byte("dev_messages:"+msgs[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile(`\b[0-9]{6}\b`).FindString(string(plain))
	if code == "" {
		t.Fatalf("no code in %s", plain)
	}
	return code
}

// SMS and EMAIL devices verify through a challenge with the verification-session rules; their
// failures count on the device across challenges (SECURITY.md 20), and the lock applies to
// every path (SECURITY.md 23).
func TestChallengeDevices(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := devSetup(t, b, engine.Config{Devices: engine.DevicePolicy{PhoneRegion: "ES"}})
		ctx := context.Background()
		sms := f.enroll(t, engine.EnrollRequest{Type: "SMS", Phone: "666 555 444"})
		ref := engine.DeviceRef{ID: sms.Device.ID}
		if r := f.verify(t, sms.Device.ID, "123456"); r.Success || r.Device.Fails != 0 {
			t.Fatalf("a code before any challenge: %+v", r)
		}
		ch, err := f.eng.ChallengeDevice(ctx, f.admin, ref, "198.51.100.4")
		if err != nil || ch.Session == nil || ch.Session.Recipient != "+34666555444" || ch.Session.DeviceID != sms.Device.ID || ch.Session.UserID != f.user.ID {
			t.Fatalf("challenge: %+v %v", ch, err)
		}
		code := f.readCode(t, "+34666555444")
		if r := f.verify(t, sms.Device.ID, wrongCode(code)); r.Success || r.Device.Fails != 1 {
			t.Fatalf("wrong code: %+v", r)
		}
		if _, err := f.eng.VerifyDevice(ctx, f.admin, ref, "12ab56"); !errors.Is(err, engine.ErrMalformedCode) {
			t.Fatalf("malformed: %v", err)
		}
		if r := f.verify(t, sms.Device.ID, code); !r.Success || r.Device.State != "V" || r.Device.Fails != 0 {
			t.Fatalf("right code: %+v", r)
		}
		if r := f.verify(t, sms.Device.ID, code); r.Success {
			t.Fatal("the code worked twice")
		}
		// A new challenge within the cooldown is refused; after it, the old code is dead.
		if _, err := f.eng.ChallengeDevice(ctx, f.admin, ref, ""); err != nil {
			t.Fatalf("second challenge (a new session: the first was used): %v", err)
		}
		first := f.readCode(t, "+34666555444")
		if _, err := f.eng.ChallengeDevice(ctx, f.admin, ref, ""); !errors.Is(err, engine.ErrRateLimited) {
			t.Fatalf("a resend within the cooldown: %v", err)
		}
		f.clk.Advance(31 * time.Second)
		if _, err := f.eng.ChallengeDevice(ctx, f.admin, ref, ""); err != nil {
			t.Fatal(err)
		}
		second := f.readCode(t, "+34666555444")
		if first != second {
			if r := f.verify(t, sms.Device.ID, first); r.Success {
				t.Fatal("the code of the replaced challenge still works")
			}
		}
		// Failures across challenges lock the device: 5 in all (1 above was reset by success).
		for i := range 5 {
			if i == 3 {
				f.clk.Advance(31 * time.Second)
				if _, err := f.eng.ChallengeDevice(ctx, f.admin, ref, ""); err != nil {
					t.Fatal(err)
				}
				second = f.readCode(t, "+34666555444")
			}
			f.verify(t, sms.Device.ID, wrongCode(second))
		}
		d, _ := f.eng.GetDevice(ctx, f.admin, ref)
		if d.State != "L" || d.Fails != 5 {
			t.Fatalf("after 5 failures over two challenges: %s, %d fails", d.State, d.Fails)
		}
		if r := f.verify(t, sms.Device.ID, second); r.Success || !r.Locked {
			t.Fatalf("the right code on a locked device: %+v", r)
		}
		// The device's session cannot be checked around the device's lockout through the
		// generic verification path (SECURITY.md 23): it is not found there at all.
		if d.ChallengeID == "" {
			t.Fatal("the locked device has no pending challenge to probe")
		}
		if _, err := f.eng.Check(ctx, f.admin, d.ChallengeID, second); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("generic check of a device session: %v, want ErrNotFound", err)
		}
		if _, err := f.eng.ChallengeDevice(ctx, f.admin, ref, ""); !errors.Is(err, engine.ErrDeviceLocked) {
			t.Fatalf("a challenge for a locked device: %v", err)
		}
		// Lockout on every verify path: an HOTP device locked by verify refuses a resync.
		h := f.enroll(t, engine.EnrollRequest{Type: "HOTP"})
		for range 5 {
			f.verify(t, h.Device.ID, "000000")
		}
		k, _ := otpauth.Parse(h.URI)
		b32 := otpauth.EncodeSecret(k.Secret)
		c1, _ := hotp.GenerateCode(b32, 0)
		c2, _ := hotp.GenerateCode(b32, 1)
		if r, err := f.eng.ResyncDevice(ctx, f.admin, engine.DeviceRef{ID: h.Device.ID}, c1, c2); err != nil || r.Success || !r.Locked {
			t.Fatalf("resync of a locked device: %+v %v", r, err)
		}

		// EMAIL: the code goes by email; disabling the device kills its pending code at once.
		mail := f.enroll(t, engine.EnrollRequest{Type: "EMAIL", Email: "Alice.Work@Example.com"})
		if _, err := f.eng.ChallengeDevice(ctx, f.admin, engine.DeviceRef{ID: mail.Device.ID}, ""); err != nil {
			t.Fatal(err)
		}
		mcode := f.readCode(t, "alice.work@example.com")
		off := "D"
		if _, err := f.eng.UpdateDevice(ctx, f.admin, engine.DeviceRef{ID: mail.Device.ID}, engine.DeviceChanges{Status: &off}); err != nil {
			t.Fatal(err)
		}
		if r := f.verify(t, mail.Device.ID, mcode); r.Success || r.Device.State != "D" {
			t.Fatalf("a disabled device verified: %+v", r)
		}
		on := "V"
		if _, err := f.eng.UpdateDevice(ctx, f.admin, engine.DeviceRef{ID: mail.Device.ID}, engine.DeviceChanges{Status: &on}); err != nil {
			t.Fatal(err)
		}
		if r := f.verify(t, mail.Device.ID, mcode); r.Success {
			t.Fatal("the code sent before the device was disabled works after re-enabling it")
		}
	})
}

// Revocation is immediate on every instance (SECURITY.md 38): disable or delete on one engine,
// and the other refuses at once; the enrolment was audited and the user told.
func TestDeviceRevocationAndAudit(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := devSetup(t, b, engine.Config{})
		ctx := context.Background()
		other := f.eng
		if f.st.Dialect() == "postgres" {
			other = newEngine(t, storetest.Open(t, f.dsn), f.clk, engine.Config{})
		}
		en := f.enroll(t, engine.EnrollRequest{Type: "TOTP"})
		ref := engine.DeviceRef{ID: en.Device.ID}
		off := "D"
		if _, err := f.eng.UpdateDevice(ctx, f.admin, ref, engine.DeviceChanges{Status: &off}); err != nil {
			t.Fatal(err)
		}
		if r, err := other.VerifyDevice(ctx, f.admin, ref, totpCode(t, en.URI, f.clk.Now())); err != nil || r.Success {
			t.Fatalf("disabled on one instance, verified on the other: %+v %v", r, err)
		}
		if err := f.eng.DeleteDevice(ctx, f.admin, ref); err != nil {
			t.Fatal(err)
		}
		if _, err := other.VerifyDevice(ctx, f.admin, ref, totpCode(t, en.URI, f.clk.Now())); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("deleted on one instance, verify on the other: %v", err)
		}
		events, _ := f.st.ListAuditEvents(ctx, f.admin.TenantID, 100)
		seen := map[string]bool{}
		for _, e := range events {
			if e.Target == en.Device.ID {
				seen[e.Action] = true
			}
		}
		for _, a := range []string{"device.enroll", "device.update", "device.delete"} {
			if !seen[a] {
				t.Errorf("no %s audit event", a)
			}
		}
		// The enrolment notice went to the user's address, without any secret.
		if _, err := f.worker.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		msgs, _ := f.st.ListDevMessages(ctx, f.admin.TenantID, "alice@example.com", 10)
		if len(msgs) != 1 {
			t.Fatalf("%d enrolment notices, want 1", len(msgs))
		}
		plain, _ := f.kr.Open(msgs[0].Body, []byte("dev_messages:"+msgs[0].ID))
		k, _ := otpauth.Parse(en.URI)
		if !strings.Contains(string(plain), en.Device.Name) || strings.Contains(string(plain), otpauth.EncodeSecret(k.Secret)) {
			t.Errorf("enrolment notice: %s", plain)
		}
	})
}

func TestDeviceTenantIsolation(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := devSetup(t, b, engine.Config{})
		ctx := context.Background()
		en := f.enroll(t, engine.EnrollRequest{Type: "TOTP"})
		tid, _, err := f.eng.CreateTenant(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		them := engine.Principal{TenantID: tid, Role: store.RoleAdmin}
		for _, ref := range []engine.DeviceRef{{ID: en.Device.ID}, {Number: en.Device.Number}} {
			if _, err := f.eng.GetDevice(ctx, them, ref); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("get: %v", err)
			}
			if _, err := f.eng.VerifyDevice(ctx, them, ref, "123456"); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("verify: %v", err)
			}
			if err := f.eng.DeleteDevice(ctx, them, ref); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("delete: %v", err)
			}
		}
		if _, err := f.eng.EnrollDevice(ctx, them, engine.EnrollRequest{User: engine.UserRef{ID: f.user.ID}, Type: "TOTP"}); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("enrol for another tenant's user: %v", err)
		}
		// A device of one user is not reachable through another user.
		bob := "bob"
		u2, _ := f.eng.CreateUser(ctx, f.admin, engine.UserInput{Login: &bob})
		if _, err := f.eng.GetDevice(ctx, f.admin, engine.DeviceRef{ID: en.Device.ID, User: engine.UserRef{ID: u2.ID}}); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("through another user: %v", err)
		}
	})
}
