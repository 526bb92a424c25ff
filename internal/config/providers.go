package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Delivery is the delivery part of the configuration file: the deployment's providers (the
// top-level `providers:` list) and the worker settings (`delivery:`).
//
//	providers:
//	  - id: twilio-main
//	    type: twilio                 # http | twilio | smpp
//	    channels: [sms, whatsapp]
//	    role: primary                # or secondary (failover)
//	    settings: {account_sid: AC…, from: "+15005550006"}
//	    secrets: {auth_token: …, receipt_token: …}
//	delivery:
//	  public_url: https://otpd.example.com   # providers call back /v1/receipts/{id}?token=…
//	  allow_private_destinations: false      # tenants' providers: public addresses only
//
// Providers here serve every tenant; a tenant may replace them for a channel with its own
// (/v1/providers). Type-specific settings are checked when the server starts.
type Delivery struct {
	Providers []Provider     `yaml:"providers"`
	Worker    DeliveryWorker `yaml:"delivery"`
}

// Provider is one deployment-wide provider.
type Provider struct {
	// ID names the provider in messages, metrics and its receipt URL; unique, not log or smtp.
	ID   string `yaml:"id"`
	Name string `yaml:"name,omitempty"`
	Type string `yaml:"type"`
	// Channels it delivers: sms, viber, voice, whatsapp.
	Channels []string `yaml:"channels"`
	// Role: primary (default) or secondary, for every channel of the provider.
	Role    string `yaml:"role,omitempty"`
	Enabled *bool  `yaml:"enabled,omitempty"`
	// Settings are the type's settings (see docs/delivery.md); nothing secret belongs here.
	Settings map[string]any `yaml:"settings,omitempty"`
	// Secrets are referenced by the settings ({secret.NAME}) or required by the type
	// (auth_token, password); receipt_token authenticates the provider's receipt callbacks.
	Secrets map[string]string `yaml:"secrets,omitempty"`
}

// DeliveryWorker tunes delivery.
type DeliveryWorker struct {
	// PublicURL is otpd's public base URL; with it, providers are told where to send receipts.
	PublicURL string `yaml:"public_url,omitempty"`
	// Channels are offered even without a deployment provider, for tenants that bring their own
	// (their messages fail when they have none).
	Channels []string `yaml:"channels,omitempty"`
	// Lease is how long a worker owns a claimed message (default 60s); a message whose worker
	// died is retried after it.
	Lease time.Duration `yaml:"lease,omitempty"`
	// SendTimeout bounds one provider call (default 30s, below the lease).
	SendTimeout time.Duration `yaml:"send_timeout,omitempty"`
	// MaxInFlight bounds the sends one instance has in flight at once (default 16); 1 sends one
	// message at a time, for a provider that allows no more.
	MaxInFlight int `yaml:"max_in_flight,omitempty"`
	// RouteRefresh is how often a tenant's providers are read again (default 5s).
	RouteRefresh time.Duration `yaml:"route_refresh,omitempty"`
	// AllowPrivateDestinations lets tenants' providers (created through the API) connect to
	// loopback, private, link-local and other non-public addresses. Off by default, so a
	// tenant admin cannot reach the deployment's own network through a provider; the providers
	// of this file are never restricted.
	AllowPrivateDestinations bool `yaml:"allow_private_destinations,omitempty"`
}

var providerIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// validate reports the structural problems of the delivery settings.
func (d Delivery) validate() []error {
	var errs []error
	ids := map[string]bool{}
	for i, p := range d.Providers {
		at := fmt.Sprintf("providers[%d]", i)
		if !providerIDRE.MatchString(p.ID) {
			errs = append(errs, fmt.Errorf("%s: id must be 1–64 letters, digits, dots, dashes or underscores", at))
		} else if ids[p.ID] {
			errs = append(errs, fmt.Errorf("%s: id %s is used twice", at, p.ID))
		}
		ids[p.ID] = true
		if p.Type == "" {
			errs = append(errs, fmt.Errorf("%s: type is required (http, twilio or smpp)", at))
		}
		if len(p.Channels) == 0 {
			errs = append(errs, fmt.Errorf("%s: channels are required", at))
		}
		switch p.Role {
		case "", "primary", "secondary":
		default:
			errs = append(errs, fmt.Errorf("%s: role must be primary or secondary", at))
		}
	}
	w := d.Worker
	if w.PublicURL != "" {
		u, err := url.Parse(w.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
			errs = append(errs, errors.New("delivery.public_url must be an absolute http(s) URL without a query"))
		}
	}
	for _, c := range w.Channels {
		switch c {
		case "sms", "viber", "voice", "whatsapp":
		default:
			errs = append(errs, fmt.Errorf("delivery.channels: %q is not sms, viber, voice or whatsapp", c))
		}
	}
	if w.Lease != 0 && w.Lease < 2*time.Second {
		errs = append(errs, errors.New("delivery.lease must be at least 2s"))
	}
	if w.SendTimeout < 0 || (w.SendTimeout > 0 && w.Lease > 0 && w.SendTimeout >= w.Lease) {
		errs = append(errs, errors.New("delivery.send_timeout must be positive and below delivery.lease"))
	}
	if w.MaxInFlight < 0 || w.MaxInFlight > 1024 {
		errs = append(errs, errors.New("delivery.max_in_flight must be 1–1024 (0: the default, 16)"))
	}
	if w.RouteRefresh < 0 {
		errs = append(errs, errors.New("delivery.route_refresh must not be negative"))
	}
	return errs
}

// secretish are setting names whose values are masked when printed, in case a secret was put
// in the settings instead of the secrets.
var secretish = regexp.MustCompile(`(?i)pass|secret|token|auth|key`)

// masked returns a copy safe to print: secret values replaced; settings that look secret too.
func (d Delivery) masked() Delivery {
	out := d
	out.Providers = make([]Provider, len(d.Providers))
	for i, p := range d.Providers {
		if p.Secrets != nil {
			sec := make(map[string]string, len(p.Secrets))
			for k := range p.Secrets {
				sec[k] = "********"
			}
			p.Secrets = sec
		}
		if p.Settings != nil {
			p.Settings, _ = maskSettings(p.Settings, false).(map[string]any)
		}
		out.Providers[i] = p
	}
	return out
}

func maskSettings(v any, hide bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = maskSettings(e, hide || secretish.MatchString(k))
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = maskSettings(e, hide)
		}
		return out
	case string:
		if hide && x != "" && !strings.Contains(x, "{secret.") {
			return "********"
		}
		return x
	}
	return v
}
