// Package testiam is a real OAuth 2.0 token introspection server (RFC 7662) for tests: an
// httptest server on loopback that authenticates its protected-resource client by HTTP Basic
// (RFC 6749 §2.3.1 form-encoding), reads the form body, and answers from a table of tokens.
// It records every request, so tests can check what otpd sent and that it sent nothing when it
// should not have asked.
package testiam

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Request is what the server received.
type Request struct {
	ClientID, ClientSecret string
	Token, TokenTypeHint   string
	ContentType, Accept    string
}

// Server is the introspection endpoint.
type Server struct {
	*httptest.Server
	ClientID, ClientSecret string

	mu       sync.Mutex
	tokens   map[string]map[string]any
	requests []Request
	status   int           // forced status, 0: normal
	raw      string        // forced body, "": normal
	delay    time.Duration // before answering
}

// New starts a server that accepts clientID/clientSecret and stops it when t ends.
func New(t testing.TB, clientID, clientSecret string) *Server {
	s := &Server{ClientID: clientID, ClientSecret: clientSecret, tokens: map[string]map[string]any{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// URL of the introspection endpoint.
func (s *Server) IntrospectURL() string { return s.Server.URL + "/oauth2/introspect" }

// SetToken makes token introspect as claims (which should carry "active").
func (s *Server) SetToken(token string, claims map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = claims
}

// Force makes every answer status with body raw (status 0 and raw "" restore normal answers).
func (s *Server) Force(status int, raw string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.raw = status, raw
}

// Delay makes the server wait d before answering.
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Requests returns what the server received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := Request{ContentType: r.Header.Get("Content-Type"), Accept: r.Header.Get("Accept")}
	if id, secret, ok := r.BasicAuth(); ok {
		rec.ClientID, _ = url.QueryUnescape(id)
		rec.ClientSecret, _ = url.QueryUnescape(secret)
	}
	if err := r.ParseForm(); err == nil {
		rec.Token, rec.TokenTypeHint = r.PostForm.Get("token"), r.PostForm.Get("token_type_hint")
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	status, raw, delay := s.status, s.raw, s.delay
	claims, known := s.tokens[rec.Token]
	s.mu.Unlock()

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if status != 0 {
		w.WriteHeader(status)
		_, _ = w.Write([]byte(raw))
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/oauth2/introspect" {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"not_found"}`))
		return
	}
	if rec.ClientID != s.ClientID || rec.ClientSecret != s.ClientSecret {
		w.Header().Set("WWW-Authenticate", `Basic realm="iam"`)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	if rec.Token == "" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_request"}`))
		return
	}
	if !known {
		claims = map[string]any{"active": false}
	}
	_ = json.NewEncoder(w).Encode(claims)
}
