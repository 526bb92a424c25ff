package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/sqlstore"
	"github.com/otpd/otpd/internal/testpg"
)

// smsPeer is the SMS gateway the binary delivers to, on loopback. It counts deliveries by
// idempotency key: a request whose key it has accepted before is acknowledged with the first
// answer and not delivered again — the provider behaviour otpd's in-doubt repeats rely on.
type smsPeer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	requests []peerRequest
	accepted map[string]string // idempotency key → provider message id
	hold     bool              // accept, then do not answer (until the client goes away)
	down     bool              // answer 503
	arrived  chan string
}

type peerRequest struct{ Key, To, Text string }

func newSMSPeer(t *testing.T) *smsPeer {
	p := &smsPeer{accepted: map[string]string{}, arrived: make(chan string, 100)}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ To, Text string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			w.WriteHeader(400)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		p.mu.Lock()
		p.requests = append(p.requests, peerRequest{key, body.To, body.Text})
		if p.down {
			p.mu.Unlock()
			p.arrived <- key
			w.WriteHeader(503)
			return
		}
		id, seen := p.accepted[key]
		if !seen {
			id = fmt.Sprintf("gw-%d", len(p.accepted)+1)
			p.accepted[key] = id
		}
		hold := p.hold
		p.mu.Unlock()
		p.arrived <- key
		if hold {
			<-r.Context().Done() // accepted, but the answer never reaches otpd
			return
		}
		fmt.Fprintf(w, `{"status":"queued","id":%q}`, id)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *smsPeer) set(hold, down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold, p.down = hold, down
}

// waitFor waits until the peer has seen n requests for recipient to (and, when accepted, that
// it accepted one), and returns them.
func (p *smsPeer) waitFor(t *testing.T, to string, n int, accepted bool) []peerRequest {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.mu.Lock()
		var got []peerRequest
		ok := false
		for _, r := range p.requests {
			if r.To == to {
				got = append(got, r)
				if _, yes := p.accepted[r.Key]; yes {
					ok = true
				}
			}
		}
		p.mu.Unlock()
		if len(got) >= n && (!accepted || ok) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway saw %d requests for %s within 20s, want %d (accepted %v)", len(got), to, n, accepted)
		}
		select {
		case <-p.arrived:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

const receiptToken = "e2e-receipt-token-0123456789abcdef0123"

// deliveryConfig writes a configuration file with the peer as the deployment's SMS provider, a
// short lease, so a message whose worker was killed is retried within seconds, and one send in
// flight at a time, so a message can be made to wait in the outbox behind a held one.
func deliveryConfig(t *testing.T, peer *smsPeer) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "otpd.yaml")
	yaml := `providers:
  - id: gw
    type: http
    channels: [sms]
    settings:
      url: ` + peer.srv.URL + `/send
      body: {to: "{to}", text: "{text}"}
      success: {json_path: status, equals: queued}
      message_id: {json_path: id}
      receipts: {id: id, status: status}
    secrets:
      receipt_token: ` + receiptToken + `
delivery:
  lease: 3s
  send_timeout: 2s
  max_in_flight: 1
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestKilledMidDelivery kills otpd (SIGKILL) while a send is in flight and while another message
// waits in the outbox, and again while a message waits for a retry; after each restart every
// message is delivered, and the gateway accepts each exactly once: the one in flight at the kill
// (which the gateway had accepted) is repeated with the same idempotency key, and nothing that
// was recorded as sent goes out again. Every delivered code verifies. On SQLite and PostgreSQL.
func TestKilledMidDelivery(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			peer := newSMSPeer(t)
			admin := "e2e-admin-key-delivery-0123456789abcdef"
			mk, _ := keys.GenerateMasterKey()
			dir := t.TempDir()
			env := []string{"OTPD_DATA_DIR=" + dir, "OTPD_CONFIG=" + deliveryConfig(t, peer), "OTPD_BOOTSTRAP_API_KEY=" + admin,
				"OTPD_MASTER_KEY=" + keys.EncodeMasterKey(mk)}
			dsn := filepath.Join(dir, "otpd.db")
			if backend == "postgres" {
				dsn = testpg.New(t)
				env = append(env, "OTPD_DATABASE_URL="+dsn)
			}
			sessions := map[string]string{} // recipient → session id
			startSMS := func(p *proc, to string) {
				t.Helper()
				st, v := p.call("POST", "/v1/verifications", admin, map[string]string{"channel": "sms", "to": to})
				if st != 201 {
					t.Fatalf("start %s: %d %v", to, st, v)
				}
				sessions[to] = v["id"].(string)
			}

			// 1. A message delivered normally.
			a := start(t, env)
			startSMS(a, "+15550100101")
			peer.waitFor(t, "+15550100101", 1, true)

			// 2. The gateway accepts the next message but its answer never arrives; while it is in
			// flight, another message waits in the outbox. Kill -9.
			peer.set(true, false)
			startSMS(a, "+15550100102")
			peer.waitFor(t, "+15550100102", 1, true)
			startSMS(a, "+15550100103")
			waitMessage(t, dsn, sessions["+15550100102"], func(m store.Message) bool { return m.Status == store.MsgSending })
			waitMessage(t, dsn, sessions["+15550100103"], func(m store.Message) bool { return m.Status == store.MsgQueued })
			a.kill()

			// Restart: the waiting message goes out, and after the lease the one in doubt is
			// repeated — to the same gateway, with the same key.
			peer.set(false, false)
			b := start(t, env)
			peer.waitFor(t, "+15550100103", 1, true)
			repeat := peer.waitFor(t, "+15550100102", 2, true)
			if repeat[0].Key != repeat[1].Key || repeat[0].Text != repeat[1].Text {
				t.Errorf("the repeat of the in-doubt send differs: %+v", repeat)
			}

			// 3. The gateway is down; a message waits for its retry. Kill -9, restart with the
			// gateway back.
			peer.set(false, true)
			startSMS(b, "+15550100104")
			peer.waitFor(t, "+15550100104", 1, false)
			waitMessage(t, dsn, sessions["+15550100104"], func(m store.Message) bool {
				return m.Status == store.MsgQueued && m.Attempts == 1 // the failure is recorded
			})
			b.kill()
			peer.set(false, false)
			c := start(t, env)
			peer.waitFor(t, "+15550100104", 2, true)

			// Nothing more arrives: give a wrongful repeat time to show up.
			time.Sleep(4 * time.Second)
			peer.mu.Lock()
			perKey := map[string]int{}
			for _, r := range peer.requests {
				perKey[r.Key]++
			}
			accepted := len(peer.accepted)
			texts := map[string]string{}
			for _, r := range peer.requests {
				texts[r.To] = r.Text
			}
			peer.mu.Unlock()
			if accepted != 4 {
				t.Errorf("the gateway accepted %d messages, want 4 (one per message)", accepted)
			}
			for to, want := range map[string]int{"+15550100101": 1, "+15550100102": 2, "+15550100103": 1, "+15550100104": 2} {
				reqs := peer.waitFor(t, to, 1, true)
				if len(reqs) != want {
					t.Errorf("%s: %d requests, want %d", to, len(reqs), want)
				}
				if perKey[reqs[0].Key] != want {
					t.Errorf("%s: key %s seen %d times", to, reqs[0].Key, perKey[reqs[0].Key])
				}
			}

			// Every code that arrived verifies.
			for to, id := range sessions {
				code := codeRE.FindString(texts[to])
				st, v := c.call("POST", "/v1/verifications/"+id+"/check", admin, map[string]string{"code": code})
				if st != 200 || v["valid"] != true {
					t.Errorf("%s: the delivered code does not verify: %d %v", to, st, v)
				}
			}

			// A receipt on the public callback: the gateway says the first message was delivered
			// and the third undelivered; a wrong token changes nothing.
			post := func(token, body string) int {
				res, err := http.Post(c.url+"/v1/receipts/gw?token="+token, "application/json", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res.StatusCode
			}
			ids := map[string]string{}
			peer.mu.Lock()
			for _, r := range peer.requests {
				ids[r.To] = peer.accepted[r.Key]
			}
			peer.mu.Unlock()
			if st := post("wrong", `{"id":"`+ids["+15550100101"]+`","status":"undelivered"}`); st != 404 {
				t.Errorf("receipt with a wrong token: %d", st)
			}
			if st := post(receiptToken, `{"id":"`+ids["+15550100101"]+`","status":"DELIVRD"}`); st != 204 {
				t.Errorf("receipt: %d", st)
			}
			if st := post(receiptToken, `{"id":"`+ids["+15550100103"]+`","status":"undelivered"}`); st != 204 {
				t.Errorf("receipt: %d", st)
			}
			if st, v := c.call("GET", "/v1/verifications/"+sessions["+15550100103"], admin, nil); st != 200 || v["delivery"] != "failed" {
				t.Errorf("session after an undelivered receipt: %d %v", st, v)
			}
			c.stop()
			if strings.Contains(c.stderr.String(), receiptToken) {
				t.Error("the log holds the receipt token")
			}

			// What the database recorded: statuses, providers and the interrupted attempt.
			st, err := sqlstore.Open(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			tenant, err := st.GetTenantByName(context.Background(), engine.DefaultTenantName)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"+15550100101": store.MsgDelivered, "+15550100102": store.MsgSent,
				"+15550100103": store.MsgUndelivered, "+15550100104": store.MsgSent}
			for to, id := range sessions {
				msgs, err := st.ListMessagesByChallenge(context.Background(), tenant.ID, id)
				if err != nil || len(msgs) != 1 {
					t.Fatalf("%s: %d messages, %v", to, len(msgs), err)
				}
				m := msgs[0]
				if m.Status != want[to] || m.Provider != "gw" || m.Body != nil {
					t.Errorf("%s: status %s provider %q body %d bytes", to, m.Status, m.Provider, len(m.Body))
				}
				as, _ := st.ListAttempts(context.Background(), m.ID)
				var got []string
				for _, a := range as {
					got = append(got, a.Provider+":"+a.Outcome)
				}
				if to == "+15550100102" && strings.Join(got, ",") != "gw:started,gw:ok" {
					t.Errorf("attempts of the interrupted send: %v", got)
				}
				if to == "+15550100104" && strings.Join(got, ",") != "gw:error,gw:ok" {
					t.Errorf("attempts of the retried send: %v", got)
				}
			}
		})
	}
}

// waitMessage waits until the message of session id, read straight from the database the server
// runs on, satisfies ok.
func waitMessage(t *testing.T, dsn, sessionID string, ok func(store.Message) bool) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tenant, err := st.GetTenantByName(ctx, engine.DefaultTenantName)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		msgs, err := st.ListMessagesByChallenge(ctx, tenant.ID, sessionID)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 && ok(msgs[0]) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("message of %s: %+v", sessionID, msgs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProviderCLI adds, lists and tests a provider with the CLI against a running server; the
// secret never comes back, not in the CLI's output and not from `otpd config`.
func TestProviderCLI(t *testing.T) {
	peer := newSMSPeer(t)
	dir := t.TempDir()
	admin := "e2e-admin-key-cli-provider-0123456789ab"
	// The peer listens on loopback, where tenants' providers may not connect unless the
	// operator allows it.
	cfgFile := filepath.Join(t.TempDir(), "otpd.yaml")
	if err := os.WriteFile(cfgFile, []byte("delivery:\n  allow_private_destinations: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, []string{"OTPD_DATA_DIR=" + dir, "OTPD_BOOTSTRAP_API_KEY=" + admin, "OTPD_LOG_PROVIDER=on", "OTPD_CONFIG=" + cfgFile})
	secretFile := filepath.Join(t.TempDir(), "api_key")
	const secret = "cli-provider-secret-value-42"
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(binary, append(args, "--server", p.url, "--api-key", admin)...)
		cmd.Env = append(os.Environ(), "OTPD_DATA_DIR="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	settings := `{"url":"` + peer.srv.URL + `/send","headers":{"X-Api-Key":"{secret.api_key}"},"body":{"to":"{to}","text":"{text}"},` +
		`"success":{"json_path":"status","equals":"queued"},"message_id":{"json_path":"id"}}`
	out, err := run("provider", "add", "--name", "peer", "--type", "http", "--channel", "sms", "--settings", settings, "--secret", "api_key=@"+secretFile)
	if err != nil || !strings.Contains(out, `"receipt_token"`) || strings.Contains(out, secret) || !strings.Contains(out, `"api_key": "********"`) {
		t.Fatalf("provider add: %v\n%s", err, out)
	}
	var created struct{ ID string }
	json.Unmarshal([]byte(out), &created)
	out, err = run("provider", "list")
	if err != nil || !strings.Contains(out, created.ID) || strings.Contains(out, secret) || strings.Contains(out, "receipt_token\": \"") && !strings.Contains(out, `"receipt_token": "********"`) {
		t.Fatalf("provider list: %v\n%s", err, out)
	}
	out, err = run("provider", "test", created.ID, "--to", "+15550100199")
	if err != nil || !strings.Contains(out, `"sent": true`) {
		t.Fatalf("provider test: %v\n%s", err, out)
	}
	if got := peer.waitFor(t, "+15550100199", 1, true); !strings.Contains(got[0].Text, "test message") {
		t.Errorf("test message %q", got[0].Text)
	}
	// An SMS verification now goes to the tenant's provider, with its secret in the header.
	st, v := p.call("POST", "/v1/verifications", admin, map[string]string{"channel": "sms", "to": "+15550100198"})
	if st != 201 {
		t.Fatalf("start: %d %v", st, v)
	}
	got := peer.waitFor(t, "+15550100198", 1, true)
	st, v = p.call("POST", "/v1/verifications/"+v["id"].(string)+"/check", admin, map[string]string{"code": codeRE.FindString(got[0].Text)})
	if st != 200 || v["valid"] != true {
		t.Errorf("check: %d %v", st, v)
	}
	if out, err := run("provider", "test", created.ID); err == nil || !strings.Contains(out, "--to") {
		t.Errorf("test without --to: %v %s", err, out)
	}
	if out, err := run("provider", "delete", created.ID); err != nil {
		t.Errorf("provider delete: %v %s", err, out)
	}
	p.stop()
	if leaks(p.stderr.String(), secret) {
		t.Error("the server log holds the provider secret")
	}

	// otpd config masks the configuration file's provider secrets.
	cfg := deliveryConfig(t, peer)
	cmd := exec.Command(binary, "config", "--config", cfg)
	cmd.Env = append(os.Environ(), "OTPD_DATA_DIR="+dir)
	cout, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(cout), receiptToken) || !strings.Contains(string(cout), "receipt_token: '********'") {
		t.Errorf("otpd config: %v\n%s", err, cout)
	}
}
