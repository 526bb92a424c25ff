package bsg_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/data"

	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/store/storetest"
	"github.com/otpd/otpd/internal/testsmsc"
)

// TestSMSThroughAnHTTPGateway: BSG's own SMS example from send_otp to verify_otp, delivered by
// a real HTTP SMS gateway started here. The gateway is down for the first attempt and back for
// the retry; the code it finally receives, under BSG's sender, is the code verify_otp accepts.
func TestSMSThroughAnHTTPGateway(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		type req struct{ To, Text, Sender string }
		var mu sync.Mutex
		var got []req
		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var m req
			raw, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(raw, &m); err != nil {
				http.Error(w, "bad json", http.StatusBadRequest)
				return
			}
			mu.Lock()
			got = append(got, m)
			n := len(got)
			mu.Unlock()
			if n == 1 {
				http.Error(w, "maintenance", http.StatusServiceUnavailable) // a failure worth retrying
				return
			}
			_, _ = io.WriteString(w, `{"status":"queued","id":"gw-1"}`)
		}))
		t.Cleanup(gw.Close)
		e := newEnv(t, b, func(c *config.Config) {
			c.LogProvider = "off"
			c.Delivery.Providers = []config.Provider{{ID: "sms-gw", Type: "http", Channels: []string{"sms"},
				Settings: map[string]any{"url": gw.URL + "/send",
					"body":       map[string]any{"to": "{to}", "text": "{text}", "sender": "{sender}"},
					"success":    map[string]any{"json_path": "status", "equals": "queued"},
					"message_id": map[string]any{"json_path": "id"}}}}
		})
		e.templates12()
		e.settings(`{"allowed_countries":["AU"],"min_code_length":5}`)
		id := e.sendOK(seedSMS())["id"].(string)

		e.deliver() // the gateway answers 503: the attempt is recorded, the message waits
		e.clk.Advance(3 * time.Second)
		e.deliver() // after the backoff (2 s) the retry reaches the gateway, which accepts it
		mu.Lock()
		reqs := append([]req(nil), got...)
		mu.Unlock()
		if len(reqs) != 2 || reqs[0] != reqs[1] {
			t.Fatalf("the gateway saw %+v, want the same message twice", reqs)
		}
		code := codeRE.FindString(reqs[1].Text)
		if reqs[1].To != "+61401629754" || reqs[1].Sender != "SENDER" || reqs[1].Text != "Hi {name}, your OTP is "+code || len(code) != 5 {
			t.Fatalf("the gateway got %+v", reqs[1])
		}
		st := e.bsg(call{method: "GET", tpl: statusPath, args: []string{id}, tok: "-", want: 200}).data()
		msgs := st["messages"].([]any)
		if len(msgs) != 1 || msgs[0].(map[string]any)["status"] != "sent" || msgs[0].(map[string]any)["sender"] != "SENDER" {
			t.Errorf("messages after delivery: %v", msgs)
		}
		e.bsg(call{method: "POST", tpl: verifyPath, args: []string{id}, tok: "-",
			body: map[string]string{"access_code": wrongCode(code)}, want: 404})
		if d := e.bsg(call{method: "POST", tpl: verifyPath, args: []string{id}, tok: "-",
			body: map[string]string{"access_code": code}, want: 200}).data(); d["status"] != "verified" {
			t.Errorf("verify with the delivered code: %v", d)
		}
	})
}

// TestSMSThroughAnSMSC: the same flow over SMPP 3.4 to a real SMSC on loopback (testsmsc,
// built on gosmpp's PDU package). The SMSC's first submit is refused with a transient status;
// the retry is accepted, its text carries the code verify_otp accepts, and BSG's sender is the
// source address (receipts over SMPP: TestSMPPProviderDeliversAVerifiableCode in the engine).
func TestSMSThroughAnSMSC(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		smsc := testsmsc.Start(t, testsmsc.Options{Fail: func(n int) data.CommandStatusType {
			if n == 1 {
				return data.ESME_RTHROTTLED
			}
			return data.ESME_ROK
		}})
		e := newEnv(t, b, func(c *config.Config) {
			c.LogProvider = "off"
			c.Delivery.Providers = []config.Provider{{ID: "smsc", Type: "smpp", Channels: []string{"sms"},
				Settings: map[string]any{"addr": smsc.Addr(), "system_id": "otpd", "source_addr": "OTPD"},
				Secrets:  map[string]string{"password": "secret"}}}
		})
		e.templates12()
		e.settings(`{"allowed_countries":["AU"],"min_code_length":5}`)
		id := e.sendOK(seedSMS())["id"].(string)

		e.deliver() // throttled by the SMSC
		e.clk.Advance(3 * time.Second)
		e.deliver()
		m := smsc.WaitFor(t, "61401629754", 5*time.Second)
		code := codeRE.FindString(m.Text)
		if m.From != "SENDER" || m.Text != "Hi {name}, your OTP is "+code || len(code) != 5 || smsc.Submits() != 2 {
			t.Fatalf("the SMSC got %+v after %d submits", m, smsc.Submits())
		}
		if d := e.bsg(call{method: "POST", tpl: verifyPath, args: []string{id}, tok: "-",
			body: map[string]string{"access_code": code}, want: 200}).data(); d["status"] != "verified" {
			t.Errorf("verify with the delivered code: %v", d)
		}
	})
}

// wrongCode is a code of the same length that differs from c in its last digit.
func wrongCode(c string) string {
	last := c[len(c)-1]
	return c[:len(c)-1] + string('0'+(last-'0'+1)%10)
}
