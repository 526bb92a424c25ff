package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"
)

// The ott scenario: one-time login tokens, issued and redeemed the way the Acronis seed's
// client does it. Each operation is a pair of requests on one worker's connection:
//
//	POST /api/2/idp/ott        Authorization: Bearer <access token from /api/2/idp/token>
//	                           {"login": <the scenario's user>, "purpose": "user_login"} → 200 {"ott"}
//	POST /api/2/idp/ott/login  {"ott": <that token>} → 200 with the user account
//
// and its latency is the pair's, from before the first request to the last byte of the second
// answer. rps counts pairs; every pair is two HTTP requests, so the ratio to the baseline (one
// request per operation) is at most about 0.5 for a server as fast as the baseline.

func init() { register("ott", ottScenario) }

// ottSetup creates the scenario's user and application through the native API and gets an
// access token for the application.
func ottSetup(ctx context.Context, t target, tag string) (login, access string, err error) {
	c := &http.Client{Transport: newTransport(1), Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	base := t.scheme + "://" + t.host
	call := func(method, path string, body []byte, h http.Header, want int) (map[string]any, error) {
		req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header = h
		res, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			return nil, fmt.Errorf("%s %s: status %d: %s", method, path, res.StatusCode, snippet(raw))
		}
		var out map[string]any
		return out, json.Unmarshal(raw, &out)
	}
	login = "bench-ott-" + tag
	if _, err := call("POST", "/v1/users", []byte(`{"login":"`+login+`"}`), t.headers.Clone(), http.StatusCreated); err != nil {
		return "", "", err
	}
	app, err := call("POST", "/v1/applications", []byte(`{"name":"bench ott `+tag+`"}`), t.headers.Clone(), http.StatusCreated)
	if err != nil {
		return "", "", err
	}
	id, _ := app["client_id"].(string)
	secret, _ := app["client_secret"].(string)
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"},
		"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))}}
	tok, err := call("POST", "/api/2/idp/token", []byte("grant_type=client_credentials"), h, http.StatusOK)
	if err != nil {
		return "", "", err
	}
	access, _ = tok["access_token"].(string)
	if access == "" {
		return "", "", fmt.Errorf("no access token from /api/2/idp/token")
	}
	return login, access, nil
}

func ottScenario(ctx context.Context, o options, t target, tag string, progress func(string, ...any)) (*result, error) {
	login, access, err := ottSetup(ctx, t, tag)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	progress("ott: %s warm-up, %s timed (each operation: issue + redeem, two requests)", o.warmup, o.duration)
	issueBody := []byte(`{"login":"` + login + `","purpose":"user_login"}`)
	if o.warmup > 0 {
		generatePairs(ctx, t, o.concurrency, o.warmup, access, issueBody)
	}
	if o.cpuprofile != "" {
		ext := filepath.Ext(o.cpuprofile)
		f, err := os.Create(strings.TrimSuffix(o.cpuprofile, ext) + ".ott" + ext)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	before := sampleCPU()
	r := generatePairs(ctx, t, o.concurrency, o.duration, access, issueBody)
	after := sampleCPU()
	if wall := after.at.Sub(before.at).Seconds(); wall > 0 {
		r.cpuSelf = (after.self - before.self).Seconds() / wall
		if before.hasBusy && after.hasBusy {
			r.cpuOthers = max(0, (after.busy-before.busy).Seconds()/wall-r.cpuSelf)
			r.hasOthers = true
		}
	}
	return r, ctx.Err()
}

var (
	ottKey     = []byte(`"ott":"`)
	loginKey   = []byte(`"login":"`)
	ottPathIss = "/api/2/idp/ott"
	ottPathRed = "/api/2/idp/ott/login"
)

// generatePairs runs concurrency workers for d, each issuing and redeeming tokens back to back
// on its own keep-alive connection.
func generatePairs(ctx context.Context, t target, concurrency int, d time.Duration, access string, issueBody []byte) *result {
	runCtx, cancel := context.WithTimeout(ctx, d+hangGrace)
	defer cancel()
	type pairWorker struct {
		issue, redeem reqState
		buf, rbody    []byte
		lat           []time.Duration
		errs          int64
		errKinds      map[string]*errKind
	}
	newReq := func(path string, h http.Header, body *bodyReader) *http.Request {
		req := &http.Request{Method: http.MethodPost, URL: &url.URL{Scheme: t.scheme, Host: t.host, Path: path},
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, Host: t.host, Body: body}
		return req.WithContext(runCtx)
	}
	ws := make([]*pairWorker, concurrency)
	for i := range ws {
		w := &pairWorker{buf: make([]byte, 0, 4096), rbody: make([]byte, 0, 128), errKinds: map[string]*errKind{},
			lat: make([]time.Duration, 0, 1024)}
		w.issue.req = newReq(ottPathIss, http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + access}}, &w.issue.body)
		w.redeem.req = newReq(ottPathRed, http.Header{"Content-Type": {"application/json"}}, &w.redeem.body)
		ws[i] = w
	}
	fail := func(w *pairWorker, kind, sample string) {
		w.errs++
		if e := w.errKinds[kind]; e != nil {
			e.n++
			return
		}
		w.errKinds[kind] = &errKind{n: 1, sample: sample}
	}
	// do sends one request of the pair and reads its answer into w.buf.
	do := func(w *pairWorker, rs *reqState, body []byte) (int, error) {
		rs.setBody(body)
		res, err := t.rt.RoundTrip(rs.req)
		if err != nil {
			return 0, err
		}
		w.buf, err = readAll(res.Body, w.buf[:0])
		res.Body.Close()
		return res.StatusCode, err
	}
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	pprof.Do(runCtx, pprof.Labels("side", "client"), func(runCtx context.Context) {
		for _, w := range ws {
			wg.Go(func() {
				for runCtx.Err() == nil {
					t0 := time.Now()
					if !t0.Before(end) {
						return
					}
					st, err := do(w, &w.issue, issueBody)
					if err != nil {
						if ctx.Err() == nil {
							fail(w, "transport error (issue)", err.Error())
						}
						continue
					}
					i := bytes.Index(w.buf, ottKey)
					if st != http.StatusOK || i < 0 {
						fail(w, fmt.Sprintf("issue: status %d", st), snippet(w.buf))
						continue
					}
					tok := w.buf[i+len(ottKey):]
					j := bytes.IndexByte(tok, '"')
					if j < 0 {
						fail(w, "issue: malformed answer", snippet(w.buf))
						continue
					}
					w.rbody = append(append(append(w.rbody[:0], `{"ott":"`...), tok[:j]...), `"}`...)
					st, err = do(w, &w.redeem, w.rbody)
					lat := time.Since(t0)
					switch {
					case err != nil:
						if ctx.Err() == nil {
							fail(w, "transport error (redeem)", err.Error())
						}
					case st != http.StatusOK || !bytes.Contains(w.buf, loginKey):
						fail(w, fmt.Sprintf("redeem: status %d", st), snippet(w.buf))
					default:
						w.lat = append(w.lat, lat)
					}
				}
			})
		}
		wg.Wait()
	})
	res := &result{elapsed: time.Since(start), errKinds: map[string]*errKind{}}
	for _, w := range ws {
		res.lat = append(res.lat, w.lat...)
		res.errs += w.errs
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
