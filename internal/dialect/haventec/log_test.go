package haventec_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/otpd/otpd/internal/app"
	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/dialect/haventec"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store/storetest"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestIAMFailureLog: when the IAM cannot be reached, the log names the IAM's scheme and host
// and what went wrong — not the introspection URL, whose path and query may carry a credential
// of the customer's IAM.
func TestIAMFailureLog(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		c := config.Default()
		c.DataDir = t.TempDir()
		if b.Name == "postgres" {
			c.DatabaseURL = b.NewDSN(t)
		}
		k, _ := keys.GenerateMasterKey()
		c.MasterKey = keys.EncodeMasterKey(k)
		var logs logBuf
		log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		a, err := app.Open(context.Background(), c, log, app.Options{Clock: clock.NewFake(t0)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		srv := httptest.NewServer(a.API)
		t.Cleanup(srv.Close)
		e := &env{t: t, a: a, srv: srv, admin: a.AdminKey}
		app := e.native("POST", "/v1/applications", e.admin, map[string]string{"name": "crm"})
		e.appID, e.appKey = app.body["id"].(string), app.body["api_key"].(string)
		u := e.native("POST", "/v1/users", e.admin, map[string]string{"login": "customer"})
		e.userID = u.body["id"].(string)

		// A loopback port nobody listens on.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		const sentinel = "iam-query-credential-5f1e"
		e.configure(map[string]any{"enabled": true, "introspection_url": "http://" + addr + "/realms/acme/introspect?api_key=" + sentinel,
			"client_id": "haventec-connect", "client_secret": "iam-client-secret", "role_path": "$.realm_access.roles", "allowed_role": "otp-requestor"})
		e.create(e.userID, e.request()).fails(t, haventec.ErrIAMUnavailable)

		out := logs.String()
		var line string
		for l := range strings.SplitSeq(out, "\n") {
			if strings.Contains(l, "IAM introspection failed") {
				line = l
			}
		}
		if line == "" {
			t.Fatalf("no log line for the failed introspection:\n%s", out)
		}
		if !strings.Contains(line, `"iam":"http://`+addr+`"`) || !strings.Contains(line, `"reason":"connection refused"`) {
			t.Errorf("the log line does not name the IAM's host and the failure: %s", line)
		}
		for _, leak := range []string{sentinel, "api_key", "/realms/acme", agentToken, "iam-client-secret"} {
			if strings.Contains(out, leak) {
				t.Errorf("the log shows %q:\n%s", leak, out)
			}
		}
	})
}
