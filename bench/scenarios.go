package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Paths and bodies of the native API the scenarios use.
const (
	startPath = "/v1/verifications"
	// A check-shaped path for the baseline, so the request line has the size of a real check.
	baselinePath = "/v1/verifications/019ab3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b/check"
)

var validTrue = []byte(`"valid":true`)

// fixed sends the same request again and again (the baseline).
type fixed struct {
	path string
	body []byte
}

func (f *fixed) next(r *reqState) bool {
	r.req.URL.Path = f.path
	r.setBody(f.body)
	return true
}

func baselineLoad() load {
	return load{
		worker:   func(int) source { return &fixed{path: baselinePath, body: []byte(`{"code":"123456"}`)} },
		want:     http.StatusOK,
		wantBody: validTrue,
	}
}

// starter builds start bodies with a recipient no other request of this run (or of any other
// run: the prefix is random) uses, in a buffer it reuses.
type starter struct {
	prefix []byte // {"channel":"none","to":"bench-<run>-<worker>-
	n      int64
	buf    []byte
}

func newStarter(run string, worker int) *starter {
	p := fmt.Appendf(nil, `{"channel":"none","to":"bench-%s-%d-`, run, worker)
	return &starter{prefix: p, buf: make([]byte, 0, len(p)+40)}
}

func (s *starter) body() []byte {
	s.n++
	b := append(s.buf[:0], s.prefix...)
	b = strconv.AppendInt(b, s.n, 10)
	b = append(b, `@example.com"}`...)
	s.buf = b
	return b
}

func (s *starter) next(r *reqState) bool {
	r.req.URL.Path = startPath
	r.setBody(s.body())
	return true
}

func startLoad(run string) load {
	return load{
		worker: func(i int) source { return newStarter(run, i) },
		want:   http.StatusCreated,
	}
}

// pool holds pre-created sessions, each checked once with its right code.
type pool struct {
	items []checkItem
	next  atomic.Int64
}

type checkItem struct {
	path string
	body []byte
}

// take hands out the next unused session.
func (p *pool) take() (checkItem, bool) {
	i := p.next.Add(1) - 1
	if i >= int64(len(p.items)) {
		return checkItem{}, false
	}
	return p.items[i], true
}

func (p *pool) left() int { return max(0, len(p.items)-int(p.next.Load())) }

type checker struct{ p *pool }

func (c checker) next(r *reqState) bool {
	it, ok := c.p.take()
	if !ok {
		return false
	}
	r.req.URL.Path = it.path
	r.setBody(it.body)
	return true
}

func checkLoad(p *pool) load {
	return load{
		worker:   func(int) source { return checker{p} },
		want:     http.StatusOK,
		wantBody: validTrue,
	}
}

// creator makes sessions for the check scenario through the API, outside any timed phase.
type creator struct {
	client  *http.Client
	base    string
	headers http.Header
	run     string
	seq     atomic.Int64
	// ttl asks for the longest lifetime otpd allows by default, so sessions created ahead of a
	// long run are still pending when their turn comes; 0 after a server refused it.
	ttl atomic.Int64
}

func newCreator(t target, run string, concurrency int) *creator {
	c := &creator{
		client:  &http.Client{Transport: newTransport(concurrency), Timeout: 30 * time.Second},
		base:    t.scheme + "://" + t.host,
		headers: t.headers,
		run:     run,
	}
	c.ttl.Store(600)
	return c
}

type startAnswer struct {
	ID   string `json:"id"`
	Code string `json:"code"`
}

// one creates one session and returns its check item.
func (c *creator) one(ctx context.Context) (checkItem, error) {
	for {
		n := c.seq.Add(1)
		ttl := c.ttl.Load()
		body := fmt.Sprintf(`{"channel":"none","to":"bench-%s-c-%d@example.com"`, c.run, n)
		if ttl > 0 {
			body += `,"ttl_seconds":` + strconv.FormatInt(ttl, 10)
		}
		body += "}"
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+startPath, strings.NewReader(body))
		if err != nil {
			return checkItem{}, err
		}
		req.Header = c.headers.Clone()
		resp, err := c.client.Do(req)
		if err != nil {
			return checkItem{}, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return checkItem{}, err
		}
		if resp.StatusCode == http.StatusUnprocessableEntity && ttl > 0 && bytes.Contains(b, []byte("ttl_seconds")) {
			c.ttl.Store(0) // a server with a shorter max_ttl: use its default lifetime
			continue
		}
		if resp.StatusCode != http.StatusCreated {
			return checkItem{}, fmt.Errorf("creating a session: status %d: %s", resp.StatusCode, snippet(b))
		}
		var a startAnswer
		if err := json.Unmarshal(b, &a); err != nil || a.ID == "" || a.Code == "" {
			return checkItem{}, fmt.Errorf("creating a session: unexpected answer %s", snippet(b))
		}
		return checkItem{path: startPath + "/" + a.ID + "/check", body: []byte(`{"code":"` + a.Code + `"}`)}, nil
	}
}

// fill appends n new sessions to p, concurrency at a time.
func (c *creator) fill(ctx context.Context, p *pool, n, concurrency int) error {
	items := make([]checkItem, n)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range concurrency {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				it, err := c.one(ctx)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					next.Store(int64(n)) // stop everyone
					return
				}
				items[i] = it
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return firstErr
	}
	p.items = append(p.items, items...)
	return nil
}

func (c *creator) close() { c.client.CloseIdleConnections() }

// runID is a random prefix that keeps this run's recipients apart from earlier runs' (which
// matters against a long-running server, whose recipient limit remembers them).
func runID() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
