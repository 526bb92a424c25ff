package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/storetest"
)

func TestMessagingPolicyValidate(t *testing.T) {
	if err := (engine.Config{}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, p := range map[string]engine.MessagingPolicy{
		"min code length 2":     {MinCodeLength: 2},
		"min code length 11":    {MinCodeLength: 11},
		"unknown country":       {AllowedCountries: []string{"XX"}},
		"token ttl over 7 days": {TokenTTL: 8 * 24 * time.Hour},
		"token ttl under 1m":    {TokenTTL: time.Second},
		"spend cap":             {DailySpendCap: "1,5"},
		"currency":              {Currency: "euro"},
		"prefix window":         {PrefixLimit: engine.Limit{Count: 5}},
		"prefix digits":         {PrefixBlockDigits: 9},
		"pending limit":         {PendingLimit: 101},
	} {
		err := engine.Config{Messaging: p}.Validate()
		if err == nil || !strings.Contains(err.Error(), "messaging.") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The documented ways to switch a default off are accepted.
	off := engine.MessagingPolicy{PendingLimit: -1, DuplicateWindow: -time.Second, PrefixLimit: engine.Limit{Count: -1},
		DialCodeDailyCap: -1, DailySpendCap: "0", AllowedCountries: []string{"*"}, MinCodeLength: 3}
	if err := (engine.Config{Messaging: off}).Validate(); err != nil {
		t.Errorf("switched off: %v", err)
	}
}

func TestAmounts(t *testing.T) {
	for in, want := range map[string]string{"0": "0", "0.0642918": "0.0642918", "12.50": "12.5", "007": "7",
		"999999999.999999999": "999999999.999999999", "0.000000001": "0.000000001"} {
		if got, ok := engine.NormalizeAmount(in); !ok || got != want {
			t.Errorf("NormalizeAmount(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", ".5", "5.", "-1", "1,5", "1e3", "0.0000000001", "1000000000", " 1", "0x10", "１"} {
		if got, ok := engine.NormalizeAmount(in); ok {
			t.Errorf("NormalizeAmount(%q) = %q, want refusal", in, got)
		}
	}
	if got := engine.SumAmounts("0.0642918", "0.0642918", "0.1", "nonsense"); got != "0.2285836" {
		t.Errorf("sum: %s", got)
	}
}

// msgFixture is an engine with SMS and Viber providers over a real store.
func msgFixture(t *testing.T, b storetest.Backend) (*engine.Engine, store.Store, *clock.Fake, engine.Principal, string) {
	t.Helper()
	dsn := b.NewDSN(t)
	st := storetest.Open(t, dsn)
	clk := clock.NewFake(t0)
	e := newEngine(t, st, clk, engine.Config{}, engine.ChannelSMS, engine.ChannelViber)
	tid, _, err := e.Bootstrap(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return e, st, clk, engine.Principal{TenantID: tid, Role: store.RoleAdmin, KeyID: "k"}, dsn
}

// TestComposeMessage: a BSG session's message is the template's text with the code, its sender,
// the Viber→SMS fallback, and the price fixed at the start — for the first send and a resend —
// and the code is nowhere at rest but inside the sealed body.
func TestComposeMessage(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e, st, clk, p, dsn := msgFixture(t, b)
		ctx := context.Background()
		if _, err := e.UpdateMessagingSettings(ctx, p, []byte(`{"allowed_countries":["AU"],"currency":"USD"}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.SetPrice(ctx, p, "viber", "au", "0.05"); err != nil {
			t.Fatal(err)
		}
		tpl, err := e.CreateTemplate(ctx, p, engine.TemplateInput{Name: strp("viber"), Text: strp("Code {code2fa}, do not share")})
		if err != nil {
			t.Fatal(err)
		}
		s, err := e.SendBSG(ctx, p, engine.BSGSend{Recipient: "+61401629754", Channel: "viber", Sender: "VIBER_SENDER",
			SenderAlt: "SMS_SENDER", TemplateID: tpl.ID, Lifetime: 5 * time.Minute, MaxTries: 3, Digits: 6})
		if err != nil {
			t.Fatal(err)
		}
		if s.Country != "AU" || s.Currency != "USD" || s.Price != "0" || s.BSG.Text != "Code {code2fa}, do not share" {
			t.Errorf("session: %+v", s)
		}
		clk.Advance(31 * time.Second)
		if _, err := e.ResendBSG(ctx, p, s.ID); err != nil {
			t.Fatal(err)
		}
		// A price change does not reprice a running session.
		if _, err := e.SetPrice(ctx, p, "viber", "AU", "9"); err != nil {
			t.Fatal(err)
		}
		msgs, err := st.ListMessagesByChallenge(ctx, p.TenantID, s.ID)
		if err != nil || len(msgs) != 2 {
			t.Fatalf("messages: %v %v", msgs, err)
		}
		kr, err := keys.NewKeyring(testKey)
		if err != nil {
			t.Fatal(err)
		}
		var codes []string
		for _, m := range msgs {
			if m.Sender != "VIBER_SENDER" || m.FallbackChannel != "sms" || m.FallbackSender != "SMS_SENDER" || m.Price != "0.05" || m.Currency != "USD" {
				t.Errorf("message: %+v", m)
			}
			plain, err := kr.Open(m.Body, []byte("messages:"+m.ID))
			if err != nil {
				t.Fatal(err)
			}
			var c deliver.Content
			if err := json.Unmarshal(plain, &c); err != nil {
				t.Fatal(err)
			}
			code, ok := strings.CutSuffix(strings.TrimPrefix(c.Text, "Code "), ", do not share")
			if !ok || len(code) != 6 {
				t.Fatalf("text %q", c.Text)
			}
			codes = append(codes, code)
		}
		dump := storetest.Dump(t, st, dsn)
		for _, code := range codes {
			if bytes.Contains(dump, []byte("Code "+code)) {
				t.Errorf("the message text with code %s is stored in the clear", code)
			}
		}
	})
}

// TestMessagingSettingsUpdate: a merge patch over the deployment's policy, null restoring the
// default, unknown members and invalid values refused, admin only.
func TestMessagingSettingsUpdate(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e, _, _, p, _ := msgFixture(t, b)
		ctx := context.Background()
		v, err := e.UpdateMessagingSettings(ctx, p, []byte(`{"allowed_countries":["fr","FR","de"],"min_code_length":4}`))
		if err != nil || strings.Join(v.AllowedCountries, ",") != "FR,DE" || v.MinCodeLength != 4 || v.PendingLimit != 1 {
			t.Fatalf("patch: %+v %v", v, err)
		}
		v, err = e.UpdateMessagingSettings(ctx, p, []byte(`{"min_code_length":null}`))
		if err != nil || v.MinCodeLength != 6 || strings.Join(v.Overrides, ",") != "allowed_countries" {
			t.Fatalf("null: %+v %v", v, err)
		}
		for _, bad := range []string{`{"min_code_length":2}`, `{"bogus":1}`, `{"moderation":"yes"}`, `[1]`, `{"allowed_countries":"FR"}`} {
			var ve engine.ValidationErrors
			var v1 *engine.ValidationError
			if _, err := e.UpdateMessagingSettings(ctx, p, []byte(bad)); !errors.As(err, &ve) && !errors.As(err, &v1) {
				t.Errorf("%s: %v", bad, err)
			}
		}
		app := engine.Principal{TenantID: p.TenantID, Role: store.RoleApp}
		if _, err := e.UpdateMessagingSettings(ctx, app, []byte(`{}`)); !errors.Is(err, engine.ErrForbidden) {
			t.Errorf("app key: %v", err)
		}
		if _, err := e.GetMessagingSettings(ctx, app); !errors.Is(err, engine.ErrForbidden) {
			t.Errorf("app key reads: %v", err)
		}
	})
}

func strp(s string) *string { return &s }
