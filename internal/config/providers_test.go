package config

import (
	"strings"
	"testing"
	"time"
)

const providersYAML = `
providers:
  - id: twilio-main
    type: twilio
    channels: [sms, whatsapp]
    settings:
      account_sid: AC0123456789abcdef
      from: "+15005550006"
      timeout: 5s
    secrets:
      auth_token: tw-secret-token-value
      receipt_token: receipt-token-0123456789abcdef0123456789
  - id: smsc
    type: smpp
    channels: [sms]
    role: secondary
    enabled: false
    settings:
      addr: smsc.example.net:2775
      system_id: otpd
      headers: {Authorization: Bearer inline-secret-value, X-Trace: "{secret.x}"}
    secrets: {password: smpp-pw}
delivery:
  public_url: https://otpd.example.com
  channels: [viber]
  lease: 20s
  send_timeout: 5s
  max_in_flight: 4
  route_refresh: 2s
`

func TestProvidersFromYAML(t *testing.T) {
	c, err := load(t, []string{"--config", writeYAML(t, providersYAML)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	ps := c.Delivery.Providers
	if len(ps) != 2 || ps[0].ID != "twilio-main" || ps[0].Type != "twilio" || len(ps[0].Channels) != 2 ||
		ps[0].Settings["account_sid"] != "AC0123456789abcdef" || ps[0].Secrets["auth_token"] != "tw-secret-token-value" ||
		ps[1].Role != "secondary" || ps[1].Enabled == nil || *ps[1].Enabled {
		t.Fatalf("providers: %+v", ps)
	}
	w := c.Delivery.Worker
	if w.PublicURL != "https://otpd.example.com" || w.Lease != 20*time.Second || w.SendTimeout != 5*time.Second ||
		w.RouteRefresh != 2*time.Second || w.MaxInFlight != 4 || len(w.Channels) != 1 {
		t.Fatalf("delivery: %+v", w)
	}
	// With configured providers the log provider is off unless asked for.
	if c.LogProviderOn() {
		t.Error("auto log provider on although providers are configured")
	}
	c.LogProvider = "on"
	if !c.LogProviderOn() {
		t.Error("log provider off although asked for")
	}
}

func TestProvidersMasked(t *testing.T) {
	c, err := load(t, []string{"--config", writeYAML(t, providersYAML)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Masked().YAML()
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, secret := range []string{"tw-secret-token-value", "receipt-token-0123456789", "smpp-pw", "inline-secret-value"} {
		if strings.Contains(s, secret) {
			t.Errorf("otpd config prints %q:\n%s", secret, s)
		}
	}
	for _, kept := range []string{"auth_token: '********'", "account_sid: AC0123456789abcdef", "addr: smsc.example.net:2775", "X-Trace: '{secret.x}'", "public_url: https://otpd.example.com"} {
		if !strings.Contains(s, kept) {
			t.Errorf("otpd config lacks %q:\n%s", kept, s)
		}
	}
	// Masking works on a copy.
	if c.Delivery.Providers[0].Secrets["auth_token"] != "tw-secret-token-value" {
		t.Error("Masked changed the configuration itself")
	}
}

func TestProvidersValidation(t *testing.T) {
	c, err := load(t, []string{"--config", writeYAML(t, `
providers:
  - id: "bad id!"
    channels: []
    role: tertiary
  - id: dup
    type: http
    channels: [sms]
  - id: dup
    type: http
    channels: [sms]
delivery:
  public_url: "otpd.example.com/x?y=1"
  channels: [fax]
  lease: 1s
  send_timeout: 5s
  max_in_flight: -1
`)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"providers[0]: id must be", "providers[0]: type is required", "providers[0]: channels are required",
		"providers[0]: role must be", "providers[2]: id dup is used twice", "delivery.public_url", `delivery.channels: "fax"`,
		"delivery.lease", "delivery.send_timeout", "delivery.max_in_flight"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validation lacks %q:\n%v", want, err)
		}
	}
	if _, err := load(t, []string{"--config", writeYAML(t, "providers:\n  - id: x\n    kind: http\n")}, nil); err == nil {
		t.Error("an unknown provider key was accepted (the file is strict)")
	}
}
