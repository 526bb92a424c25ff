package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// load is one kind of request the generator issues back to back.
type load struct {
	// worker returns the per-worker request source for worker i. It is called before the
	// clock starts, so it may allocate freely.
	worker func(i int) source
	// want is the expected status; anything else is an error.
	want int
	// wantBody, when set, must occur in the answer, or the request is an error.
	wantBody []byte
}

// source prepares a worker's next request in place.
type source interface {
	// next points r at the next request (path and body) and reports false when there is no
	// more work (a pre-created pool ran dry).
	next(r *reqState) bool
}

// reqState is one worker's reusable request. The transport documents that a request may be
// reused once the response body is closed, so each worker builds its *http.Request once and
// only swaps the path and the body bytes between requests.
type reqState struct {
	req  *http.Request
	body bodyReader
}

// setBody points the request at b (which must stay unchanged until the response is read).
func (r *reqState) setBody(b []byte) {
	r.body.b, r.body.off = b, 0
	r.req.ContentLength = int64(len(b))
}

// bodyReader is a rewindable request body that allocates nothing per request.
type bodyReader struct {
	b   []byte
	off int
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.off >= len(b.b) {
		return 0, io.EOF
	}
	n := copy(p, b.b[b.off:])
	b.off += n
	return n, nil
}

func (b *bodyReader) Close() error { return nil }

// target is where requests go.
type target struct {
	rt      http.RoundTripper
	scheme  string
	host    string
	headers http.Header // copied into every worker's request
}

// newTransport returns a keep-alive HTTP/1.1 transport with room for one idle connection per
// worker, so no request pays for a new connection once the run is warm.
func newTransport(concurrency int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        2 * concurrency,
		MaxIdleConnsPerHost: 2 * concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// result is what one generator run measured.
type result struct {
	lat       []time.Duration // latencies of the successful requests, sorted
	ok        int64
	errs      int64
	errKinds  map[string]*errKind
	elapsed   time.Duration
	exhausted bool // a worker found no more work before the time was up
	// CPU use while the run lasted, in cores: this process (generator and server together)
	// and, where the machine reports it, everything else.
	cpuSelf, cpuOthers float64
	hasOthers          bool
}

type errKind struct {
	n      int64
	sample string
}

// rps is successful requests per second.
func (r *result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// quantile returns the latency below or at which a fraction q of the successful requests
// completed (nearest rank over the exact, sorted sample).
func (r *result) quantile(q float64) time.Duration {
	n := len(r.lat)
	if n == 0 {
		return 0
	}
	i := int(float64(n)*q+0.999999999) - 1
	return r.lat[min(max(i, 0), n-1)]
}

// errorSummary lists the error kinds, most frequent first, with one sample each.
func (r *result) errorSummary() string {
	kinds := make([]string, 0, len(r.errKinds))
	for k := range r.errKinds {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return r.errKinds[kinds[i]].n > r.errKinds[kinds[j]].n })
	var b strings.Builder
	for i, k := range kinds {
		if i > 0 {
			b.WriteString("; ")
		}
		e := r.errKinds[k]
		fmt.Fprintf(&b, "%s ×%d", k, e.n)
		if e.sample != "" {
			fmt.Fprintf(&b, " (e.g. %q)", e.sample)
		}
	}
	return b.String()
}

// hangGrace is how long after the end of a run an unanswered request is waited for.
const hangGrace = 10 * time.Second

// worker is one goroutine's state; nothing in it is shared while the run lasts.
type worker struct {
	rs       reqState
	src      source
	buf      []byte
	lat      []time.Duration
	errs     int64
	errKinds map[string]*errKind
	dry      bool
}

// generate runs concurrency workers against t for d, each issuing l's requests back to back
// over its own keep-alive connection, and measures every request from just before it is sent
// to the last byte of its answer.
func generate(ctx context.Context, t target, l load, concurrency int, d time.Duration) *result {
	// A request still unanswered well after the end is abandoned, and counted as an error.
	runCtx, cancel := context.WithTimeout(ctx, d+hangGrace)
	defer cancel()
	ws := make([]*worker, concurrency)
	for i := range ws {
		req := &http.Request{
			Method:     http.MethodPost,
			URL:        &url.URL{Scheme: t.scheme, Host: t.host, Path: "/"},
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
			Header:     t.headers.Clone(),
			Host:       t.host,
		}
		req = req.WithContext(runCtx)
		w := &worker{src: l.worker(i), buf: make([]byte, 0, 4096), errKinds: map[string]*errKind{},
			lat: make([]time.Duration, 0, 1024)}
		w.rs.req = req
		req.Body = &w.rs.body
		ws[i] = w
	}
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	pprof.Do(runCtx, pprof.Labels("side", "client"), func(runCtx context.Context) {
		for _, w := range ws {
			wg.Go(func() { w.loop(ctx, runCtx, t, l, end) })
		}
		wg.Wait()
	})
	res := &result{elapsed: time.Since(start), errKinds: map[string]*errKind{}}
	n := 0
	for _, w := range ws {
		n += len(w.lat)
	}
	res.lat = make([]time.Duration, 0, n)
	for _, w := range ws {
		res.lat = append(res.lat, w.lat...)
		res.errs += w.errs
		res.exhausted = res.exhausted || w.dry
		for k, e := range w.errKinds {
			if m := res.errKinds[k]; m != nil {
				m.n += e.n
			} else {
				res.errKinds[k] = e
			}
		}
	}
	slices.Sort(res.lat)
	res.ok = int64(len(res.lat))
	return res
}

// loop issues requests until end. ctx is the caller's (cancelled: stop quietly); runCtx also
// ends hangGrace after the run (an error: the server did not answer).
func (w *worker) loop(ctx, runCtx context.Context, t target, l load, end time.Time) {
	for runCtx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		if !w.src.next(&w.rs) {
			w.dry = true
			return
		}
		resp, err := t.rt.RoundTrip(w.rs.req)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if runCtx.Err() != nil {
				w.fail(fmt.Sprintf("no answer %s after the end of the run", hangGrace), err.Error())
				return
			}
			w.fail("transport error", err.Error())
			continue
		}
		w.buf, err = readAll(resp.Body, w.buf[:0])
		resp.Body.Close()
		lat := time.Since(t0)
		switch {
		case err != nil:
			w.fail("reading the answer", err.Error())
		case resp.StatusCode != l.want:
			w.fail(fmt.Sprintf("status %d", resp.StatusCode), snippet(w.buf))
		case l.wantBody != nil && !bytes.Contains(w.buf, l.wantBody):
			w.fail(fmt.Sprintf("status %d without %s", resp.StatusCode, l.wantBody), snippet(w.buf))
		default:
			w.lat = append(w.lat, lat)
		}
	}
}

func (w *worker) fail(kind, sample string) {
	w.errs++
	if e := w.errKinds[kind]; e != nil {
		e.n++
		return
	}
	w.errKinds[kind] = &errKind{n: 1, sample: sample}
}

// readAll reads r to the end into buf, growing it only when an answer is larger than any before.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf)+512)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func snippet(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
