package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/otp"
	"github.com/otpd/otpd/internal/otpauth"
	"github.com/otpd/otpd/internal/store"
)

// UserRef names a user of the caller's tenant by id or by login (one of them).
type UserRef struct {
	ID    string
	Login string
}

// DeviceRef names a device by its id or its public number. When User is set, the device must
// belong to that user (else ErrNotFound).
type DeviceRef struct {
	ID     string
	Number int64
	User   UserRef
}

// Device is a device as surfaces see it: the stored row plus what follows from it now.
type Device struct {
	store.Device
	// State is the effective status now: C, V, D or L (a timed lock that ran out reads as the
	// status before it).
	State string
	// AttemptsLeft is how many failures the device takes before it locks (0 while locked or
	// disabled).
	AttemptsLeft int
}

// Locked reports whether the device is locked now.
func (d *Device) Locked() bool { return d.State == store.DeviceLocked }

// TargetLabel is what the Soffid dialect calls the device's "cardNumber": the device name for
// TOTP, HOTP and PIN, and "SMS message to 66*****22" / "Email message to pg*****@so****.co*"
// built from the current target for SMS and EMAIL devices.
func (d *Device) TargetLabel() string {
	switch d.Type {
	case store.DeviceSMS:
		return "SMS message to " + MaskPhone(d.Phone)
	case store.DeviceEMAIL:
		return "Email message to " + MaskEmail(d.Email)
	}
	return d.Name
}

func (e *Engine) deviceView(d *store.Device, now time.Time) *Device {
	v := &Device{Device: *d, State: d.StatusAt(now)}
	v.Secret = nil // never leaves the engine
	if v.State != store.DeviceLocked && v.State != store.DeviceDisabled {
		left := e.cfg.Devices.MaxFails - d.Fails
		if left < 1 {
			left = 1 // a timed lock ran out: the next failure locks again
		}
		v.AttemptsLeft = min(left, HardMaxFails-d.Fails)
	}
	return v
}

// deviceAAD binds a device's sealed secret to its row.
func deviceAAD(id string) []byte { return []byte("devices:" + id) }

// SealDeviceSecret seals a seed (or a PIN's hash) for the device with this id exactly as
// EnrollDevice stores it, for tools that write devices straight into the store (bulk imports,
// the benchmark).
func (e *Engine) SealDeviceSecret(id string, secret []byte) ([]byte, error) {
	return e.keys.Seal(secret, deviceAAD(id))
}

// MaskPhone hides the middle of a phone number as the Soffid dialect does: the first two and
// last two characters around five stars ("666555444" → "66*****44"), whatever its length.
func MaskPhone(s string) string {
	s = strings.TrimSpace(s)
	r := []rune(s)
	if len(r) <= 4 {
		return "*****"
	}
	return string(r[:2]) + "*****" + string(r[len(r)-2:])
}

// MaskEmail hides most of an address as the Soffid dialect does: the first two characters of
// the local part and five stars, then each domain label's first two characters with a star for
// every other one ("pgarcia@soffid.com" → "pg*****@so****.co*").
func MaskEmail(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return MaskPhone(s)
	}
	keep := func(p string, stars int) string {
		r := []rune(p)
		n := min(2, len(r))
		if stars < 0 {
			stars = len(r) - n
		}
		return string(r[:n]) + strings.Repeat("*", stars)
	}
	labels := strings.Split(s[at+1:], ".")
	for i, l := range labels {
		labels[i] = keep(l, -1)
	}
	return keep(s[:at], 5) + "@" + strings.Join(labels, ".")
}

// normalizeDevicePhone reads an SMS device's number: "+…" and "00…" are international; other
// digits are a national number of region when one is configured and the number fits it, and
// otherwise international digits (as everywhere else in otpd).
func normalizeDevicePhone(s, region string) (string, bool) {
	t := strings.TrimSpace(s)
	if region != "" && !strings.HasPrefix(t, "+") && !strings.HasPrefix(t, "00") {
		if n, ok := nationalPhone(t, region); ok {
			return n, true
		}
	}
	n, _, ok := NormalizePhone(t)
	return n, ok
}

// EnrollRequest asks for a new device.
type EnrollRequest struct {
	User UserRef
	Type string // TOTP, HOTP, SMS, EMAIL, PIN (any case)
	Name string // "": TOTP00000035, "SMS message to 66*****44", …
	// TOTP/HOTP; zero values take the policy's defaults.
	Algorithm string
	Digits    int
	Period    time.Duration
	// Secret imports a seed (at least MinImportedSeed bytes); nil generates one.
	Secret []byte
	Phone  string // SMS
	Email  string // EMAIL
	PIN    string // PIN
	// ClientIP is recorded in the audit event.
	ClientIP string
}

// Enrollment is a new device. URI and QR (a PNG of the URI) are set only for a TOTP/HOTP device
// whose seed otpd generated: they carry the seed and are shown this once.
type Enrollment struct {
	Device *Device
	URI    string
	QR     []byte
}

// EnrollDevice creates a device for a user of the caller's tenant. TOTP and HOTP seeds are
// generated (as long as the HMAC digest) or imported (at least 128 bits) and stored sealed;
// PINs are hashed with argon2id and sealed. The device starts in status C; its first correct
// code validates it (V). The user is told by email, when they have an address and email
// delivery is configured, and the enrolment is audited.
func (e *Engine) EnrollDevice(ctx context.Context, p Principal, r EnrollRequest) (*Enrollment, error) {
	pol := e.cfg.Devices
	now := e.clock.Now()
	d := &store.Device{ID: newID(), TenantID: p.TenantID, Type: strings.ToUpper(strings.TrimSpace(r.Type)),
		Status: store.DeviceCreated, LastStep: -1, CreatedAt: now, UpdatedAt: now}
	var (
		errs   ValidationErrors
		secret []byte
		key    *otpauth.Key
	)
	add := func(field, format string, a ...any) {
		errs = append(errs, &ValidationError{Field: field, Message: fmt.Sprintf(format, a...)})
	}
	if r.User.ID == "" && r.User.Login == "" {
		add("user", "is required")
	}
	if r.Name != "" {
		if err := validName("name", r.Name); err != nil {
			add("name", "must be 1–128 printable characters")
		}
		d.Name = strings.TrimSpace(r.Name)
	}
	switch d.Type {
	case store.DeviceTOTP, store.DeviceHOTP:
		alg, err := otp.ParseAlgorithm(cmpOr(r.Algorithm, pol.Algorithm))
		if err != nil {
			add("algorithm", "must be SHA1, SHA256 or SHA512")
		}
		d.Algorithm = string(alg)
		d.Digits = cmpOr(r.Digits, pol.Digits)
		if d.Digits < otp.MinDigits || d.Digits > otp.MaxDigits {
			add("digits", "must be %d–%d", otp.MinDigits, otp.MaxDigits)
		}
		if d.Type == store.DeviceTOTP {
			d.Period = cmpOr(r.Period, pol.Period)
			if d.Period != 30*time.Second && d.Period != 60*time.Second {
				add("period", "must be 30 or 60 seconds")
			}
		} else if r.Period != 0 {
			add("period", "applies to TOTP devices only")
		}
		switch {
		case r.Secret != nil:
			if len(r.Secret) < MinImportedSeed || len(r.Secret) > MaxImportedSeed {
				add("secret", "must be %d–%d bytes (at least 128 bits)", MinImportedSeed, MaxImportedSeed)
			}
			secret, d.Imported = r.Secret, true
		case err == nil:
			if secret, err = otp.GenerateSecret(alg); err != nil {
				return nil, err
			}
		}
	case store.DeviceSMS:
		if _, ok := normalizeDevicePhone(r.Phone, pol.PhoneRegion); !ok {
			add("phone", "must be a phone number (international, or national in the configured region)")
		}
		d.Phone = strings.TrimSpace(r.Phone)
	case store.DeviceEMAIL:
		n, ok := NormalizeEmail(r.Email)
		if !ok {
			add("email", "must be an email address")
		}
		d.Email = n
	case store.DevicePIN:
		if err := validPIN(r.PIN); err != nil {
			errs = append(errs, err.(*ValidationError))
		}
	default:
		add("type", "must be one of TOTP, HOTP, SMS, EMAIL, PIN")
	}
	if d.Type != store.DeviceTOTP && d.Type != store.DeviceHOTP {
		if r.Secret != nil {
			add("secret", "applies to TOTP and HOTP devices only")
		}
		if r.Algorithm != "" || r.Digits != 0 || r.Period != 0 {
			add("algorithm", "algorithm, digits and period apply to TOTP and HOTP devices only")
		}
	}
	if d.Type != store.DeviceSMS && r.Phone != "" {
		add("phone", "applies to SMS devices only")
	}
	if d.Type != store.DeviceEMAIL && r.Email != "" {
		add("email", "applies to EMAIL devices only")
	}
	if d.Type != store.DevicePIN && r.PIN != "" {
		add("pin", "applies to PIN devices only")
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if d.Type == store.DevicePIN {
		phc, err := hashPIN(ctx, r.PIN)
		if err != nil {
			return nil, err
		}
		secret = []byte(phc)
	}
	if secret != nil {
		sealed, err := e.keys.Seal(secret, deviceAAD(d.ID))
		if err != nil {
			return nil, err
		}
		d.Secret = sealed
	}
	var notified bool
	err := e.inTx(ctx, func(q store.Queries) error {
		u, err := e.resolveUser(ctx, q, p, r.User)
		if err != nil {
			return err
		}
		d.UserID, d.UserLogin = u.ID, u.Login
		if err := q.CreateDevice(ctx, d); err != nil {
			return err
		}
		if d.Name == "" {
			d.Name = defaultDeviceName(d)
			if err := q.UpdateDevice(ctx, d); err != nil {
				return err
			}
		}
		if err := e.audit(ctx, q, p, "device.enroll", d.ID, "ok:"+d.Type, r.ClientIP); err != nil {
			return err
		}
		notified, err = e.notifyEnrol(ctx, q, u, d, now)
		return err
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	if notified {
		e.notify()
	}
	out := &Enrollment{Device: e.deviceView(d, now)}
	if secret != nil && !d.Imported && (d.Type == store.DeviceTOTP || d.Type == store.DeviceHOTP) {
		key = &otpauth.Key{Type: strings.ToLower(d.Type), Issuer: pol.Issuer, Account: d.UserLogin, Secret: secret,
			Algorithm: d.Algorithm, Digits: d.Digits, Period: int(d.Period / time.Second)}
		out.URI = key.URI()
		if out.QR, err = otpauth.PNG(out.URI, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func validPIN(pin string) error {
	n := utf8.RuneCountInString(pin)
	if !utf8.ValidString(pin) || n < MinPINLength || n > MaxPINLength || containsControl(pin) {
		return &ValidationError{Field: "pin", Message: fmt.Sprintf("must be %d–%d printable characters", MinPINLength, MaxPINLength)}
	}
	return nil
}

// defaultDeviceName names a device as the Soffid dialect does.
func defaultDeviceName(d *store.Device) string {
	switch d.Type {
	case store.DeviceSMS:
		return "SMS message to " + MaskPhone(d.Phone)
	case store.DeviceEMAIL:
		return "Email message to " + MaskEmail(d.Email)
	}
	return fmt.Sprintf("%s%08d", d.Type, d.Number)
}

// notifyEnrol queues the "a device was added to your account" email (SECURITY.md 37).
func (e *Engine) notifyEnrol(ctx context.Context, q store.Queries, u *store.User, d *store.Device, now time.Time) (bool, error) {
	if e.cfg.Devices.SilentEnrol || u.Email == "" || !e.channels[ChannelEmail] {
		return false, nil
	}
	kind := map[string]string{store.DeviceTOTP: "an authenticator app (TOTP)", store.DeviceHOTP: "a hardware token (HOTP)",
		store.DeviceSMS: "text messages to " + MaskPhone(d.Phone), store.DeviceEMAIL: "email to " + MaskEmail(d.Email),
		store.DevicePIN: "a PIN"}[d.Type]
	text := fmt.Sprintf("A new sign-in method was added to your account: %s (%s), on %s UTC. "+
		"If this was not you, contact your administrator.", kind, d.Name, now.UTC().Format("2006-01-02 15:04"))
	plain, err := json.Marshal(deliver.Content{Subject: "A sign-in method was added to your account", Text: text})
	if err != nil {
		return false, err
	}
	id := newID()
	body, err := e.keys.Seal(plain, []byte("messages:"+id))
	if err != nil {
		return false, err
	}
	err = q.CreateMessage(ctx, &store.Message{ID: id, TenantID: d.TenantID, Channel: ChannelEmail,
		Recipient: u.Email, Body: body, Status: store.MsgQueued, MaxAttempts: e.cfg.MessageAttempts,
		NextAttemptAt: now, CreatedAt: now, UpdatedAt: now})
	return err == nil, err
}

// resolveUser finds the referenced user in p's tenant.
func (e *Engine) resolveUser(ctx context.Context, q store.Queries, p Principal, r UserRef) (*store.User, error) {
	switch {
	case r.ID != "":
		u, err := q.GetUser(ctx, p.TenantID, r.ID)
		if err == nil && r.Login != "" && u.Login != r.Login {
			return nil, fmt.Errorf("%w: user", ErrNotFound)
		}
		return u, err
	case r.Login != "":
		return q.GetUserByLogin(ctx, p.TenantID, r.Login)
	}
	return nil, invalid("user", "is required")
}

// resolveDevice finds the referenced device in p's tenant.
func (e *Engine) resolveDevice(ctx context.Context, q store.Queries, p Principal, r DeviceRef) (*store.Device, error) {
	var (
		d   *store.Device
		err error
	)
	switch {
	case r.ID != "":
		d, err = q.GetDevice(ctx, p.TenantID, r.ID)
	case r.Number > 0:
		d, err = q.GetDeviceByNumber(ctx, p.TenantID, r.Number)
	default:
		return nil, fmt.Errorf("%w: device", ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if (r.User.ID != "" && d.UserID != r.User.ID) || (r.User.Login != "" && d.UserLogin != r.User.Login) {
		return nil, fmt.Errorf("%w: device", ErrNotFound)
	}
	return d, nil
}

// GetDevice returns a device.
func (e *Engine) GetDevice(ctx context.Context, p Principal, r DeviceRef) (*Device, error) {
	d, err := e.resolveDevice(ctx, e.store, p, r)
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return e.deviceView(d, e.clock.Now()), nil
}

// UserDevices lists a user's devices, oldest first.
func (e *Engine) UserDevices(ctx context.Context, p Principal, u UserRef) ([]Device, error) {
	usr, err := e.resolveUser(ctx, e.store, p, u)
	if err != nil {
		return nil, mapStoreErr(err)
	}
	ds, err := e.store.ListUserDevices(ctx, p.TenantID, usr.ID)
	if err != nil {
		return nil, err
	}
	now := e.clock.Now()
	out := make([]Device, len(ds))
	for i := range ds {
		out[i] = *e.deviceView(&ds[i], now)
	}
	return out, nil
}

// QueryDevices returns a page of the tenant's devices matching q (status judged now) and the
// number that match. A filter or sort outside the allow-list is ErrInvalidFilter.
func (e *Engine) QueryDevices(ctx context.Context, p Principal, q store.DeviceQuery) ([]Device, int, error) {
	now := e.clock.Now()
	q.Now = now
	ds, total, err := e.store.QueryDevices(ctx, p.TenantID, q)
	if errors.Is(err, store.ErrInvalidFilter) {
		return nil, 0, fmt.Errorf("%w: %s", ErrInvalidFilter, strings.TrimPrefix(err.Error(), "sqlstore: query devices: store: invalid filter: "))
	}
	if err != nil {
		return nil, 0, err
	}
	out := make([]Device, len(ds))
	for i := range ds {
		out[i] = *e.deviceView(&ds[i], now)
	}
	return out, total, nil
}

// QueryUsers returns a page of the tenant's users matching q and the number that match.
func (e *Engine) QueryUsers(ctx context.Context, p Principal, q store.UserQuery) ([]store.User, int, error) {
	us, total, err := e.store.QueryUsers(ctx, p.TenantID, q)
	if errors.Is(err, store.ErrInvalidFilter) {
		return nil, 0, fmt.Errorf("%w: %s", ErrInvalidFilter, strings.TrimPrefix(err.Error(), "sqlstore: query users: store: invalid filter: "))
	}
	return us, total, err
}

// DeviceChanges are an operator's changes to a device; nil fields stay.
type DeviceChanges struct {
	Name *string
	// Status: V validates (or re-enables) the device and clears any lock, C returns it to
	// "created", D disables it (its pending challenge is cancelled), L locks it until an
	// operator unlocks it.
	Status *string
	Phone  *string // SMS devices
	Email  *string // EMAIL devices
	PIN    *string // PIN devices
}

// UpdateDevice applies an operator's changes.
func (e *Engine) UpdateDevice(ctx context.Context, p Principal, r DeviceRef, c DeviceChanges) (*Device, error) {
	var errs ValidationErrors
	if c.Name != nil {
		if err := validName("name", *c.Name); err != nil {
			errs = append(errs, err.(*ValidationError))
		}
	}
	if c.Status != nil && !strings.Contains("CVDL", *c.Status) || c.Status != nil && len(*c.Status) != 1 {
		errs = append(errs, &ValidationError{Field: "status", Message: "must be one of C, V, D, L"})
	}
	if c.Email != nil {
		if n, ok := NormalizeEmail(*c.Email); ok {
			c.Email = &n
		} else {
			errs = append(errs, &ValidationError{Field: "email", Message: "must be an email address"})
		}
	}
	if c.Phone != nil {
		if _, ok := normalizeDevicePhone(*c.Phone, e.cfg.Devices.PhoneRegion); !ok {
			errs = append(errs, &ValidationError{Field: "phone", Message: "must be a phone number (international, or national in the configured region)"})
		}
	}
	var phc string
	if c.PIN != nil {
		if err := validPIN(*c.PIN); err != nil {
			errs = append(errs, err.(*ValidationError))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if c.PIN != nil {
		var err error
		if phc, err = hashPIN(ctx, *c.PIN); err != nil { // outside the transaction: it is slow
			return nil, err
		}
	}
	now := e.clock.Now()
	var d *store.Device
	err := e.inTx(ctx, func(q store.Queries) error {
		var err error
		if d, err = e.resolveDevice(ctx, q, p, r); err != nil {
			return err
		}
		var changed []string
		retarget := false
		if c.Name != nil {
			d.Name = strings.TrimSpace(*c.Name)
			changed = append(changed, "name")
		}
		if c.Phone != nil {
			if d.Type != store.DeviceSMS {
				return invalid("phone", "only SMS devices have a phone")
			}
			d.Phone, retarget = strings.TrimSpace(*c.Phone), true
			changed = append(changed, "phone")
		}
		if c.Email != nil {
			if d.Type != store.DeviceEMAIL {
				return invalid("email", "only EMAIL devices have an email")
			}
			d.Email, retarget = *c.Email, true
			changed = append(changed, "email")
		}
		if c.PIN != nil {
			if d.Type != store.DevicePIN {
				return invalid("pin", "only PIN devices have a PIN")
			}
			sealed, err := e.keys.Seal([]byte(phc), deviceAAD(d.ID))
			if err != nil {
				return err
			}
			d.Secret = sealed
			changed = append(changed, "pin")
		}
		if c.Status != nil {
			// Leaving a lock in any direction (even by way of D, then V) is an operator's act, as
			// UnlockDevice is; so is clearing the fail count. Anyone else's status change keeps
			// the count and the lock history, so re-stating a status opens no guessing window.
			if d.StatusAt(now) == store.DeviceLocked && *c.Status != store.DeviceLocked {
				if err := requireAdmin(p); err != nil {
					return err
				}
			}
			setDeviceStatus(d, *c.Status, now, p.IsAdmin())
			changed = append(changed, "status:"+*c.Status)
			retarget = retarget || *c.Status == store.DeviceDisabled
		}
		if retarget { // a code sent to the old target, or to a disabled device, must not work
			if err := e.cancelDeviceChallenge(ctx, q, d, now); err != nil {
				return err
			}
		}
		d.UpdatedAt = now
		if err := q.UpdateDevice(ctx, d); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "device.update", d.ID, "ok:"+strings.Join(changed, ","), "")
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return e.deviceView(d, now), nil
}

// setDeviceStatus applies a status change. Only an operator's (admin key's) change to V or C
// clears the fail count, the lockout history and the lock.
func setDeviceStatus(d *store.Device, status string, now time.Time, operator bool) {
	switch status {
	case store.DeviceValidated:
		if d.ValidatedAt == nil {
			d.ValidatedAt = &now
		}
		d.Status = status
		if operator {
			d.Fails, d.Lockouts, d.LockedUntil = 0, 0, nil
		}
	case store.DeviceCreated:
		d.Status, d.ValidatedAt = status, nil
		if operator {
			d.Fails, d.Lockouts, d.LockedUntil = 0, 0, nil
		}
	case store.DeviceDisabled:
		d.Status = status
	case store.DeviceLocked:
		d.Status, d.LockedUntil = status, nil
	}
}

// cancelDeviceChallenge ends the device's pending SMS/EMAIL challenge, so its code stops working.
func (e *Engine) cancelDeviceChallenge(ctx context.Context, q store.Queries, d *store.Device, now time.Time) error {
	if d.ChallengeID == "" {
		return nil
	}
	c, err := q.GetChallengeForUpdate(ctx, d.TenantID, d.ChallengeID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // purged
	}
	if err != nil {
		return err
	}
	if c.Status == store.StatusPending {
		c.Status, c.FinishedAt = store.StatusCanceled, &now
		if err := q.UpdateChallenge(ctx, c); err != nil {
			return err
		}
	}
	d.ChallengeID = ""
	return nil
}

// DeleteDevice deletes a device at once (every instance reads devices from the database, so
// no instance accepts its codes afterwards) and cancels its pending challenge.
func (e *Engine) DeleteDevice(ctx context.Context, p Principal, r DeviceRef) error {
	now := e.clock.Now()
	return mapStoreErr(e.inTx(ctx, func(q store.Queries) error {
		d, err := e.resolveDevice(ctx, q, p, r)
		if err != nil {
			return err
		}
		if err := e.cancelDeviceChallenge(ctx, q, d, now); err != nil {
			return err
		}
		if err := q.DeleteDevice(ctx, p.TenantID, d.ID); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "device.delete", d.ID, "ok", "")
	}))
}

// UnlockDevice lifts a lock (timed or not) and resets the failure count and the escalation. It
// is an operator's act (SECURITY.md 19): it needs an admin credential, as does a status change
// that lifts a lock.
func (e *Engine) UnlockDevice(ctx context.Context, p Principal, r DeviceRef) (*Device, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	now := e.clock.Now()
	var d *store.Device
	err := e.inTx(ctx, func(q store.Queries) error {
		var err error
		if d, err = e.resolveDevice(ctx, q, p, r); err != nil {
			return err
		}
		if d.Status == store.DeviceLocked {
			d.Status = store.DeviceCreated
			if d.ValidatedAt != nil {
				d.Status = store.DeviceValidated
			}
		}
		d.Fails, d.Lockouts, d.LockedUntil, d.UpdatedAt = 0, 0, nil, now
		if err := q.UpdateDevice(ctx, d); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "device.unlock", d.ID, "ok", "")
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return e.deviceView(d, now), nil
}
