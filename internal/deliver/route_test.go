package deliver_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/deliver"
)

// countingSender is a provider type registered for the router tests: it counts how often it was
// built and closed.
type countingSender struct {
	name   string
	closed atomic.Bool
}

func (s *countingSender) Name() string { return s.name }
func (s *countingSender) Send(context.Context, deliver.Message) (string, error) {
	return "", errors.New("not used")
}
func (s *countingSender) Close() error { s.closed.Store(true); return nil }

var built atomic.Int32

func init() {
	deliver.RegisterProviderType(deliver.ProviderType{Name: "router-test", Channels: []string{"sms", "viber"},
		New: func(cfg deliver.ProviderConfig) (deliver.Sender, error) {
			if strings.Contains(string(cfg.Settings), "broken") {
				return nil, errors.New("broken settings")
			}
			built.Add(1)
			return &countingSender{name: cfg.ID}, nil
		}})
}

func TestProviderTypeRegistry(t *testing.T) {
	if _, ok := deliver.LookupProviderType("router-test"); !ok {
		t.Fatal("registered type not found")
	}
	if _, err := deliver.NewSender(deliver.ProviderConfig{ID: "x", Type: "nope"}); err == nil || !strings.Contains(err.Error(), "unknown provider type") {
		t.Errorf("unknown type: %v", err)
	}
	if _, err := deliver.NewSender(deliver.ProviderConfig{ID: "x", Type: "router-test", Channels: []string{"voice"}}); err == nil {
		t.Error("a channel the type does not serve was accepted")
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a type twice did not panic")
		}
	}()
	deliver.RegisterProviderType(deliver.ProviderType{Name: "router-test", New: func(deliver.ProviderConfig) (deliver.Sender, error) { return nil, nil }})
}

func TestDecodeSettings(t *testing.T) {
	var st struct {
		URL     string           `json:"url"`
		Timeout deliver.Duration `json:"timeout"`
	}
	if err := deliver.DecodeSettings(json.RawMessage(`{"url":"u","timeout":"1m30s"}`), &st); err != nil || st.URL != "u" || time.Duration(st.Timeout) != 90*time.Second {
		t.Errorf("decode: %v %+v", err, st)
	}
	if err := deliver.DecodeSettings(json.RawMessage(`{"timeout":2.5}`), &st); err != nil || time.Duration(st.Timeout) != 2500*time.Millisecond {
		t.Errorf("seconds: %v %+v", err, st)
	}
	for raw, want := range map[string]string{`{"x":1}`: `unknown setting "x"`, `{"url":1}`: `setting "url" has the wrong type`,
		`{"timeout":"soon"}`: "duration", `{} {}`: "trailing data", `[1]`: "wrong type"} {
		if err := deliver.DecodeSettings(json.RawMessage(raw), &st); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", raw, err, want)
		}
	}
	if err := deliver.DecodeSettings(nil, &st); err != nil {
		t.Errorf("empty settings: %v", err)
	}
}

// The router asks its source once per TTL, builds a provider once and keeps it while its
// configuration stays, rebuilds (and closes the old one) when it changes, and routes channels
// without a configured provider to the built-ins.
func TestCachedRouter(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	settings := `{"v":1}`
	src := func(ctx context.Context, tenant string) (map[string][]deliver.ProviderConfig, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if tenant == "failing" {
			return nil, errors.New("database down")
		}
		return map[string][]deliver.ProviderConfig{
			"sms": {{ID: "p1", Type: "router-test", Channels: []string{"sms"}, Settings: json.RawMessage(settings)},
				{ID: "p2", Type: "router-test", Channels: []string{"sms"}, Settings: json.RawMessage(`{}`)}},
		}, nil
	}
	builtin := &countingSender{name: "log"}
	r := &deliver.CachedRouter{Source: src, Builtin: deliver.Registry{"email": builtin}, TTL: time.Hour}
	ctx := context.Background()
	before := built.Load()
	route, err := r.Route(ctx, "t1", "sms")
	if err != nil || len(route) != 2 || route[0].Name() != "p1" || route[1].Name() != "p2" {
		t.Fatalf("route: %v %v", route, err)
	}
	again, _ := r.Route(ctx, "t1", "sms")
	if again[0] != route[0] || calls != 1 {
		t.Errorf("not cached: %d source calls", calls)
	}
	if em, err := r.Route(ctx, "t1", "email"); err != nil || em[0] != builtin {
		t.Errorf("built-in: %v %v", em, err)
	}
	if _, err := r.Route(ctx, "t1", "voice"); !errors.Is(err, deliver.ErrNoSender) {
		t.Errorf("no provider: %v", err)
	}
	if _, err := r.Route(ctx, "failing", "sms"); err == nil {
		t.Error("a failing source routed")
	}
	// Another tenant with the same providers shares the built Senders.
	other, _ := r.Route(ctx, "t2", "sms")
	if other[0] != route[0] || built.Load()-before != 2 {
		t.Errorf("built %d senders for two tenants, want 2 shared", built.Load()-before)
	}
	// A changed configuration is rebuilt after Invalidate; the old Sender is closed.
	mu.Lock()
	settings = `{"v":2}`
	mu.Unlock()
	r.Invalidate("t1")
	changed, _ := r.Route(ctx, "t1", "sms")
	if changed[0] == route[0] || !route[0].(*countingSender).closed.Load() || changed[1] != route[1] {
		t.Errorf("rebuild: same %v, old closed %v", changed[0] == route[0], route[0].(*countingSender).closed.Load())
	}
	mu.Lock()
	settings = `"broken"`
	mu.Unlock()
	r.Invalidate("t1")
	if _, err := r.Route(ctx, "t1", "sms"); err == nil || !strings.Contains(err.Error(), "provider p1") {
		t.Errorf("a provider that does not build: %v", err)
	}
	r.Close()
	if !changed[1].(*countingSender).closed.Load() {
		t.Error("Close did not close the built Senders")
	}
	// Without a source only the built-ins route.
	bare := &deliver.CachedRouter{Builtin: deliver.Registry{"sms": builtin}}
	if got, err := bare.Route(ctx, "t", "sms"); err != nil || got[0] != builtin {
		t.Errorf("no source: %v %v", got, err)
	}
}
