package engine

// TokenPolicy is the engine policy for one-time login tokens, OAuth tokens, user OTPs for a purpose.
// Zero values take the defaults of withDefaults.
type TokenPolicy struct{}

// withDefaults fills zero fields.
func (p TokenPolicy) withDefaults() TokenPolicy { return p }

// validate reports values outside what otpd allows.
func (p TokenPolicy) validate() []error { return nil }
