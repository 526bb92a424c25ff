// Package client is a small Go client of otpd's native /v1 API. The CLI uses it both against a
// running server and, through an in-process transport, against the local database — so every
// operator command goes through the same handlers, validation and rules as the API.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls one otpd server.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	APIKey  string
	HTTP    *http.Client
}

// New returns a client with a bounded timeout.
func New(baseURL, apiKey string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), APIKey: apiKey, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Error is a non-2xx answer, carrying the server's problem+json.
type Error struct {
	Status  int
	Code    string `json:"code"`
	Title   string `json:"title"`
	Detail  string `json:"detail"`
	Errors  []struct{ Field, Message string }
	Session string `json:"session_status"`
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.Status, e.Title)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	for _, f := range e.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", f.Field, f.Message)
	}
	return b.String()
}

// Do sends body (JSON-encoded unless nil) and decodes a 2xx answer into out (unless nil). It
// returns the raw answer body too, for callers that print it.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
		_ = json.Unmarshal(raw, e)
		return raw, e
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("decode answer: %w", err)
		}
	}
	return raw, nil
}

// HandlerTransport is an http.RoundTripper that serves requests with an in-process handler,
// after letting prepare adjust each request (e.g. mark it authenticated).
type HandlerTransport struct {
	Handler http.Handler
	Prepare func(*http.Request) *http.Request
}

// RoundTrip serves req in process.
func (t HandlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil {
		// A server always hands handlers a non-nil body; an in-process request must too.
		req.Body = http.NoBody
	}
	if t.Prepare != nil {
		req = t.Prepare(req)
	}
	w := &memWriter{header: http.Header{}, status: http.StatusOK}
	t.Handler.ServeHTTP(w, req)
	return &http.Response{
		StatusCode: w.status, Status: fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.header, Body: io.NopCloser(&w.body), ContentLength: int64(w.body.Len()), Request: req,
	}, nil
}

type memWriter struct {
	header http.Header
	body   bytes.Buffer
	status int
	wrote  bool
}

func (w *memWriter) Header() http.Header { return w.header }
func (w *memWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
}
func (w *memWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.body.Write(b)
}
