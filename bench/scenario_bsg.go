package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The BSG 2FA surface under load, with the log provider (the dev inbox):
//
//   - bsg_send: POST /api/2fa/authentications/otp (channel sms, the tenant's default template) to
//     an Australian number no other request of the run uses → 201. Every send passes the
//     SMS-pumping defences (allow-list, number-block limit, calling-code cap) and enqueues a
//     message that the outbox worker delivers to the dev inbox while the run goes on.
//   - bsg_verify: POST /api/2fa/authentications/otp/{id}/verify with the right code → 200, each
//     on a session created for it before the timed phase, its code read from the dev inbox.
//
// Both first set the tenant's messaging settings through the native API (admin key): Australia
// allowed, and the calling-code cap raised so a benchmark's thousands of sends a second are not
// refused by it; the other defences keep their defaults and run on every send. The bearer token
// comes from POST /api/auth/login with the benchmark's API key.

func init() {
	register("bsg_send", func(ctx context.Context, o options, t target, tag string, progress func(string, ...any)) (*result, error) {
		bt, tpl, err := bsgSetup(ctx, t, "")
		if err != nil {
			return nil, err
		}
		progress("bsg_send: %s warm-up, %s timed", o.warmup, o.duration)
		return timed(ctx, o, "bsg_send", bt, bsgSendLoad(newNumbers("6140"), tpl))
	})
	register("bsg_verify", bsgVerifyScenario)
}

const (
	bsgSendPath  = "/api/2fa/authentications/otp"
	bsgLoginPath = "/api/auth/login"
)

var bsgVerified = []byte(`"status":"verified"`)

// bsgSetup opens the tenant to Australian numbers, logs in, and returns a target that sends the
// bearer token, and the id of the tenant's default template.
func bsgSetup(ctx context.Context, t target, extra string) (target, int64, error) {
	c := &http.Client{Transport: t.rt, Timeout: 30 * time.Second}
	base := t.scheme + "://" + t.host
	do := func(method, path string, h http.Header, body string, want int) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header = h.Clone()
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != want {
			err = fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, snippet(b))
		}
		return b, err
	}
	if _, err := do("PATCH", "/v1/settings/messaging", t.headers,
		`{"allowed_countries":["AU"],"dial_code_daily_cap":1000000000`+extra+`}`, 200); err != nil {
		return target{}, 0, err
	}
	key := t.headers.Get("X-Api-Key")
	b, err := do("POST", bsgLoginPath, t.headers, `{"api_key":"`+key+`"}`, 200)
	if err != nil {
		return target{}, 0, err
	}
	var tok struct {
		Bearer string `json:"bearer"`
	}
	if err := json.Unmarshal(b, &tok); err != nil || tok.Bearer == "" {
		return target{}, 0, fmt.Errorf("login: unexpected answer %s", snippet(b))
	}
	bt := t
	bt.headers = t.headers.Clone()
	bt.headers.Del("X-Api-Key")
	bt.headers.Set("Authorization", "Bearer "+tok.Bearer)
	b, err = do("GET", "/api/2fa/authentications/templates", bt.headers, "", 200)
	if err != nil {
		return target{}, 0, err
	}
	var list struct {
		Data struct {
			List []struct {
				ID   int64  `json:"template_id"`
				Text string `json:"text"`
			} `json:"list"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil || len(list.Data.List) == 0 {
		return target{}, 0, fmt.Errorf("templates: unexpected answer %s", snippet(b))
	}
	return bt, list.Data.List[0].ID, nil
}

// numbers hands out Australian mobile numbers, each once per run (up to a million): "+61 40" (or
// 42), six digits, "0". The six digits step through a permutation of 0–999999 from a random start, so
// a run's numbers spread over the 10,000 number blocks (all but the last three digits) — a
// hundred thousand sends put about ten in each, inside the default limit of 20 per block per
// hour — as real traffic does, instead of filling one block after another.
type numbers struct {
	prefix string // "6140" (bsg_send) or "6142" (bsg_verify): the two never collide
	start  uint64
	n      atomic.Uint64
}

func newNumbers(prefix string) *numbers {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &numbers{prefix: prefix, start: binary.LittleEndian.Uint64(b[:]) % 1_000_000}
}

// next appends the next number's BSG digits to dst.
func (ns *numbers) next(dst []byte) []byte {
	i := (ns.start + ns.n.Add(1)*7919) % 1_000_000 // 7919 is prime to 10^6: a permutation
	dst = append(dst, ns.prefix...)
	s := strconv.AppendUint(nil, i, 10)
	for range 6 - len(s) {
		dst = append(dst, '0')
	}
	dst = append(dst, s...)
	return append(dst, '0')
}

// bsgSender builds send bodies in a buffer it reuses.
type bsgSender struct {
	ns   *numbers
	tail []byte // the body after the recipient
	buf  []byte
}

func (s *bsgSender) body() []byte {
	b := append(s.buf[:0], `{"recipient":"`...)
	b = s.ns.next(b)
	b = append(b, s.tail...)
	s.buf = b
	return b
}

func (s *bsgSender) next(r *reqState) bool {
	r.req.URL.Path = bsgSendPath
	r.setBody(s.body())
	return true
}

func bsgSendLoad(ns *numbers, template int64) load {
	tail := []byte(fmt.Sprintf(`","channel":"sms","sender":"otpd","template_id":%d,"code_lifetime":300,"code_max_tries":3,"code_digits":6}`, template))
	return load{
		worker: func(int) source { return &bsgSender{ns: ns, tail: tail, buf: make([]byte, 0, 256)} },
		want:   http.StatusCreated,
	}
}

// bsgVerifyScenario pre-creates the sessions the verify run will use, reading their codes from
// the dev inbox, calibrates like the check scenario, and runs.
func bsgVerifyScenario(ctx context.Context, o options, t target, tag string, progress func(string, ...any)) (*result, error) {
	// Sessions are made ahead for the whole run, a hundred thousand and more: the number-block
	// limit is raised so their numbers (about 20 per block) are not refused before the run.
	bt, tpl, err := bsgSetup(ctx, t, `,"prefix_limit":{"count":1000,"window_seconds":3600}`)
	if err != nil {
		return nil, err
	}
	c := &bsgCreator{t: t, bt: bt, ns: newNumbers("6142"), client: &http.Client{Transport: newTransport(o.concurrency), Timeout: 30 * time.Second},
		tail: fmt.Sprintf(`","channel":"sms","sender":"otpd","template_id":%d,"code_lifetime":300,"code_max_tries":3,"code_digits":6}`, tpl)}
	defer c.client.CloseIdleConnections()
	p := &pool{}
	calibN := max(96*o.concurrency, 1500)
	progress("bsg_verify: creating %d sessions (codes from the dev inbox) for a 1s calibration", calibN)
	t0 := time.Now()
	if err := c.fill(ctx, p, calibN, o.concurrency); err != nil {
		return nil, err
	}
	createRate := float64(calibN) / time.Since(t0).Seconds()
	// Calibrate, make sessions for the run, then once more: calibrate on the fuller (and warm)
	// pool and top it up for the higher of the two rates. A rate measured while the machine was
	// busier, or the outbox still delivering, would run the pool dry. A calibration that runs
	// the pool dry still measures a rate (over the time it ran); the last step is a top-up.
	var rate float64
	for range 2 {
		cal := generate(ctx, bt, bsgVerifyLoad(p), o.concurrency, min(time.Second, o.duration))
		if cal.errs > 0 {
			return nil, fmt.Errorf("calibration failed: %s", cal.errorSummary())
		}
		rate = max(rate, float64(cal.ok)/cal.elapsed.Seconds())
		need := int(math.Ceil(rate*(o.warmup+o.duration).Seconds()*1.3)) + 4*o.concurrency - p.left()
		if need <= 0 {
			continue
		}
		progress("bsg_verify: calibration %.0f verifies/s; creating %d more sessions (about %.0fs at %.0f/s)",
			rate, need, float64(need)/createRate, createRate)
		t1 := time.Now()
		if err := c.fill(ctx, p, need, o.concurrency); err != nil {
			return nil, err
		}
		createRate = float64(need) / time.Since(t1).Seconds()
	}
	progress("bsg_verify: %d sessions ready; %s warm-up, %s timed", p.left(), o.warmup, o.duration)
	return timed(ctx, o, "bsg_verify", bt, bsgVerifyLoad(p))
}

func bsgVerifyLoad(p *pool) load {
	return load{worker: func(int) source { return checker{p} }, want: http.StatusOK, wantBody: bsgVerified}
}

// bsgCreator makes BSG sessions outside any timed phase, 50 at a time: it sends them, waits for
// the outbox to deliver, and reads their codes from the 50 newest messages of the dev inbox
// (GET /v1/dev/messages, admin key).
type bsgCreator struct {
	t, bt  target
	ns     *numbers
	client *http.Client
	tail   string
}

const bsgBatch = 50 // the dev inbox answers the 50 newest messages

func (c *bsgCreator) fill(ctx context.Context, p *pool, n, concurrency int) error {
	for made := 0; made < n; {
		batch := min(bsgBatch, n-made)
		items, err := c.batch(ctx, batch, concurrency)
		if err != nil {
			return err
		}
		p.items = append(p.items, items...)
		made += batch
	}
	return nil
}

func (c *bsgCreator) batch(ctx context.Context, n, concurrency int) ([]checkItem, error) {
	ids := make(map[string]string, n) // +E.164 recipient → session id
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
		next     atomic.Int64
	)
	for range n { // one sender per session of the batch: the batch's sends overlap fully
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				num := string(c.ns.next(nil))
				id, err := c.send(ctx, num)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				ids["+"+num] = id
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	// The outbox may still be delivering an earlier scenario's messages: wait up to two minutes.
	// A code pushed out of the newest 50 by a late message is looked up by its recipient.
	deadline := time.Now().Add(2 * time.Minute)
	for round := 0; ; round++ {
		codes, err := c.inbox(ctx, "")
		if err != nil {
			return nil, err
		}
		items := make([]checkItem, 0, n)
		for to, id := range ids {
			code, ok := codes[to]
			if !ok && round > 0 && round%20 == 0 {
				one, err := c.inbox(ctx, to)
				if err != nil {
					return nil, err
				}
				code, ok = one[to]
			}
			if ok {
				items = append(items, checkItem{path: bsgSendPath + "/" + id + "/verify", body: []byte(`{"access_code":"` + code + `"}`)})
			}
		}
		if len(items) == n {
			return items, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d of %d codes reached the dev inbox within 2 minutes (is the log provider on?)", len(items), n)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (c *bsgCreator) send(ctx context.Context, number string) (string, error) {
	body := `{"recipient":"` + number + c.tail
	b, status, err := c.do(ctx, c.bt, "POST", bsgSendPath, body)
	if err != nil {
		return "", err
	}
	if status != http.StatusCreated {
		return "", fmt.Errorf("creating a session: status %d: %s", status, snippet(b))
	}
	var a struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &a); err != nil || a.Data.ID == "" {
		return "", fmt.Errorf("creating a session: unexpected answer %s", snippet(b))
	}
	return a.Data.ID, nil
}

// inbox returns the codes of the 50 newest dev inbox messages (to one recipient, if to is set)
// by recipient.
func (c *bsgCreator) inbox(ctx context.Context, to string) (map[string]string, error) {
	path := "/v1/dev/messages"
	if to != "" {
		path += "?to=" + url.QueryEscape(to)
	}
	b, status, err := c.do(ctx, c.t, "GET", path, "")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("dev inbox: status %d: %s (bsg_verify needs the log provider)", status, snippet(b))
	}
	var in struct {
		Messages []struct {
			To   string `json:"to"`
			Body string `json:"body"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, err
	}
	codes := make(map[string]string, len(in.Messages))
	for _, m := range in.Messages {
		// The default template: "Your code is 123456".
		if code, ok := strings.CutPrefix(m.Body, "Your code is "); ok {
			codes[m.To] = code
		}
	}
	return codes, nil
}

func (c *bsgCreator) do(ctx context.Context, t target, method, path, body string) ([]byte, int, error) {
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, t.scheme+"://"+t.host+path, rd)
	if err != nil {
		return nil, 0, err
	}
	req.Header = t.headers.Clone()
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}
