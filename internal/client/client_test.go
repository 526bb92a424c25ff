package client

import (
	"context"
	"io"
	"net/http"
	"testing"
)

// TestHandlerTransportBodyless: requests without a body reach the handler with a readable, empty
// body (as from a real server), and answers come back with status, headers and body.
func TestHandlerTransportBodyless(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body) // panics on a nil body
		if err != nil || len(b) != 0 {
			t.Errorf("body %q %v", b, err)
		}
		w.Header().Set("X-Seen", r.Header.Get("X-Mark"))
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, `{"code":"teapot","detail":"short and stout"}`)
	})
	c := &Client{BaseURL: "http://local", HTTP: &http.Client{Transport: HandlerTransport{
		Handler: h,
		Prepare: func(r *http.Request) *http.Request { r.Header.Set("X-Mark", "yes"); return r },
	}}}
	raw, err := c.Do(context.Background(), "POST", "/v1/x", nil, nil)
	e, ok := err.(*Error)
	if !ok || e.Status != http.StatusTeapot || e.Code != "teapot" || string(raw) == "" {
		t.Fatalf("answer: %v %s", err, raw)
	}
}
