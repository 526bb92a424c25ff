package main

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var lineRE = regexp.MustCompile(`^scenario=([a-z_]+) rps=(\d+) p50_ms=(\d+\.\d{3}) p99_ms=(\d+\.\d{3}) baseline_rps=(\d+) ratio=(\d+\.\d{3})$`)

// TestSmoke runs the baseline and every scenario briefly against the in-process server: each
// must succeed without errors and print a line in the documented format.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and drives load for a few seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-duration", "300ms", "-warmup", "100ms", "-concurrency", "4"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	seen := map[string]bool{}
	for line := range strings.Lines(stdout.String()) {
		line = strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(line, "#") {
			if strings.Contains(line, "!!!") {
				t.Errorf("warning: %s", line)
			}
			continue
		}
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("line does not parse: %q", line)
			continue
		}
		seen[m[1]] = true
		if rps, _ := strconv.Atoi(m[2]); rps <= 0 {
			t.Errorf("%s: rps %s, want > 0", m[1], m[2])
		}
		if p50, _ := strconv.ParseFloat(m[3], 64); p50 <= 0 {
			t.Errorf("%s: p50 %s, want > 0", m[1], m[3])
		}
	}
	for _, name := range append([]string{"baseline"}, allScenarios...) {
		if !seen[name] {
			t.Errorf("no line for scenario %s in:\n%s", name, stdout.String())
		}
	}
	if !strings.HasPrefix(stdout.String(), "# bench GOMAXPROCS=") {
		t.Errorf("no header line first:\n%s", stdout.String())
	}
}

// TestErrorsAreLoud points the check load at the baseline server with a wrong expectation: every
// request is an error, reported with its status and a sample.
func TestErrorsAreLoud(t *testing.T) {
	ctx := context.Background()
	addr, stop, err := startBaseline(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tr := newTransport(2)
	defer tr.CloseIdleConnections()
	tg := target{rt: tr, scheme: "http", host: addr, headers: http.Header{"Content-Type": {"application/json"}}}
	l := baselineLoad()
	l.want = http.StatusCreated
	r := generate(ctx, tg, l, 2, 100*time.Millisecond)
	if r.ok != 0 || r.errs == 0 {
		t.Fatalf("ok=%d errs=%d, want only errors", r.ok, r.errs)
	}
	if s := r.errorSummary(); !strings.Contains(s, "status 200") || !strings.Contains(s, "valid") {
		t.Errorf("summary %q names neither the status nor a sample", s)
	}
}

// TestPoolRunsDry checks that a pool hands out each session once and then reports exhaustion.
func TestPoolRunsDry(t *testing.T) {
	p := &pool{items: []checkItem{{path: "/a"}, {path: "/b"}}}
	for _, want := range []string{"/a", "/b"} {
		it, ok := p.take()
		if !ok || it.path != want {
			t.Fatalf("take = %q, %v; want %q", it.path, ok, want)
		}
	}
	if _, ok := p.take(); ok {
		t.Fatal("a third take succeeded on a pool of two")
	}
	if p.left() != 0 {
		t.Fatalf("left = %d", p.left())
	}
}

func TestQuantile(t *testing.T) {
	r := &result{}
	for i := 1; i <= 100; i++ {
		r.lat = append(r.lat, time.Duration(i)*time.Millisecond)
	}
	if got := r.quantile(0.5); got != 50*time.Millisecond {
		t.Errorf("p50 = %v", got)
	}
	if got := r.quantile(0.99); got != 99*time.Millisecond {
		t.Errorf("p99 = %v", got)
	}
}

// TestStarterUnique: every start body of a worker names a new recipient and stays valid JSON.
func TestStarterUnique(t *testing.T) {
	s := newStarter("abcd", 3)
	a := string(s.body())
	b := string(s.body())
	if a == b || a != `{"channel":"none","to":"bench-abcd-3-1@example.com"}` {
		t.Errorf("bodies %q, %q", a, b)
	}
}

// BenchmarkGenerator measures what the load generator itself costs per request against the
// baseline handler (allocations here are shared by the baseline and every scenario).
func BenchmarkGenerator(b *testing.B) {
	ctx := context.Background()
	addr, stop, err := startBaseline(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	tr := newTransport(1)
	defer tr.CloseIdleConnections()
	tg := target{rt: tr, scheme: "http", host: addr, headers: http.Header{"Content-Type": {"application/json"}}}
	src := baselineLoad().worker(0)
	w := &worker{src: src, buf: make([]byte, 0, 4096), errKinds: map[string]*errKind{}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", nil)
	req.Header = tg.headers.Clone()
	w.rs.req = req
	req.Body = &w.rs.body
	b.ReportAllocs()
	for b.Loop() {
		w.src.next(&w.rs)
		resp, err := tr.RoundTrip(w.rs.req)
		if err != nil {
			b.Fatal(err)
		}
		w.buf, _ = readAll(resp.Body, w.buf[:0])
		resp.Body.Close()
	}
}
