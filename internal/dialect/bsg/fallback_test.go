package bsg_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/store/storetest"
)

// TestViberFallbackToSMS: BSG's Viber example against a real HTTP Viber gateway (started here)
// that refuses the message for good. The outbox worker then sends the same code by SMS under
// sender_alt (here through the log provider), and that code verifies. The gateway saw the
// message with the Viber sender and the code, and nothing else.
func TestViberFallbackToSMS(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		var mu sync.Mutex
		var seen []map[string]string
		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var m map[string]string
			raw, _ := io.ReadAll(r.Body)
			_ = json.Unmarshal(raw, &m)
			mu.Lock()
			seen = append(seen, m)
			mu.Unlock()
			http.Error(w, `{"error":"not a viber user"}`, http.StatusUnprocessableEntity) // permanent
		}))
		t.Cleanup(gw.Close)
		e := newEnv(t, b, func(c *config.Config) {
			c.LogProvider = "on" // SMS (and the fallback) go to the dev inbox
			c.Delivery.Providers = []config.Provider{{ID: "viber-gw", Type: "http", Channels: []string{"viber"},
				Settings: map[string]any{"url": gw.URL + "/send",
					"body": map[string]any{"to": "{to}", "text": "{text}", "sender": "{sender}"}}}}
		})
		e.templates12()
		e.settings(`{"allowed_countries":["AU"],"min_code_length":5}`)
		id := e.sendOK(seedViber())["id"].(string)

		e.deliver() // Viber: refused for good; the SMS fallback is queued with it
		code := e.code("61401629754")
		texts := e.inboxTexts()
		if len(texts) != 1 || texts[0] != "Hi {name}, your OTP is "+code || len(code) != 5 {
			t.Fatalf("SMS fallback: %q", texts)
		}
		mu.Lock()
		if len(seen) != 1 || seen[0]["sender"] != "VIBER_SENDER" || seen[0]["to"] != "+61401629754" ||
			!strings.HasSuffix(seen[0]["text"], code) {
			t.Errorf("the Viber gateway got %v", seen)
		}
		mu.Unlock()
		st := e.bsg(call{method: "GET", tpl: statusPath, args: []string{id}, tok: "-", want: 200}).data()
		msgs := st["messages"].([]any)
		if len(msgs) != 2 {
			t.Fatalf("messages: %v", msgs)
		}
		viber, sms := msgs[0].(map[string]any), msgs[1].(map[string]any)
		if viber["channel"] != "viber" || viber["sender"] != "VIBER_SENDER" || viber["status"] != "accepted" ||
			sms["channel"] != "sms" || sms["sender"] != "SMS_SENDER" || sms["status"] != "sent" {
			t.Errorf("messages: %v", msgs)
		}
		if d := e.bsg(call{method: "POST", tpl: verifyPath, args: []string{id}, tok: "-",
			body: map[string]string{"access_code": code}, want: 200}).data(); d["status"] != "verified" {
			t.Errorf("verify with the SMS code: %v", d)
		}
	})
}
