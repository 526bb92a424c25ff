package engine

// MessagingPolicy is the engine policy for the BSG verification surface, templates, prices, SMS-pumping defences.
// Zero values take the defaults of withDefaults.
type MessagingPolicy struct{}

// withDefaults fills zero fields.
func (p MessagingPolicy) withDefaults() MessagingPolicy { return p }

// validate reports values outside what otpd allows.
func (p MessagingPolicy) validate() []error { return nil }
