// Package api serves otpd's native HTTP API under /v1 plus the operational endpoints
// (/healthz, /readyz, /metrics, /v1/openapi.json). Handlers decode and validate the wire format,
// call the engine, and encode results; errors are RFC 9457 problem+json. No business rule lives
// here.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/otpd/otpd/internal/engine"
)

// Options configure the API handler.
type Options struct {
	Engine *engine.Engine
	Logger *slog.Logger
	// Registry receives the HTTP metrics and is served at /metrics (nil: a private one).
	Registry *prometheus.Registry
	// DevInbox enables GET /v1/dev/messages (only while the log provider is on).
	DevInbox bool
	// Ready reports whether the server can take traffic (e.g. the database answers).
	Ready func(ctx context.Context) error
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
}

// Server is the native API.
type Server struct {
	eng      *engine.Engine
	log      *slog.Logger
	devInbox bool
	ready    func(ctx context.Context) error
	trusted  []netip.Prefix
	mux      *http.ServeMux
	reqs     *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// route is one endpoint; the table is also what the OpenAPI test compares against.
type route struct {
	method, path string
	auth         bool
	h            func(w http.ResponseWriter, r *http.Request, p engine.Principal) error
}

// New builds the handler.
func New(o Options) *Server {
	s := &Server{eng: o.Engine, log: o.Logger, devInbox: o.DevInbox, ready: o.Ready,
		trusted: o.TrustedProxies, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "otpd_http_requests_total", Help: "HTTP requests by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "otpd_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	reg.MustRegister(s.reqs, s.latency)

	for _, rt := range s.routes() {
		s.mux.Handle(rt.method+" "+rt.path, s.endpoint(rt))
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /v1/openapi.json", serveOpenAPI)
	return s
}

// Handle mounts another surface (a vendor dialect) on the same mux, behind the same middleware:
// request ids, panic recovery, metrics and the access log. The dialect authenticates and writes
// its own errors; to answer unknown paths under its prefix in its own error format it mounts a
// catch-all for the prefix (more specific patterns win).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// routeSets are the groups of /v1 endpoints; each file of the package adds its own group in an
// init function, so surfaces grow without editing a shared list.
var routeSets []func(s *Server) []route

func init() {
	routeSets = append(routeSets, (*Server).coreRoutes)
}

// routes lists every /v1 endpoint.
func (s *Server) routes() []route {
	var rs []route
	for _, set := range routeSets {
		rs = append(rs, set(s)...)
	}
	return rs
}

// coreRoutes are the verification, application, user and dev-inbox endpoints.
func (s *Server) coreRoutes() []route {
	rs := []route{
		{"POST", "/v1/verifications", true, s.startVerification},
		{"GET", "/v1/verifications", true, s.listVerifications},
		{"GET", "/v1/verifications/{id}", true, s.getVerification},
		{"POST", "/v1/verifications/{id}/check", true, s.checkVerification},
		{"POST", "/v1/verifications/{id}/resend", true, s.resendVerification},
		{"POST", "/v1/verifications/{id}/cancel", true, s.cancelVerification},
		{"POST", "/v1/applications", true, s.createApplication},
		{"GET", "/v1/applications", true, s.listApplications},
		{"DELETE", "/v1/applications/{id}", true, s.deleteApplication},
		{"POST", "/v1/users", true, s.createUser},
		{"GET", "/v1/users", true, s.listUsers},
		{"GET", "/v1/users/{id}", true, s.getUser},
		{"PATCH", "/v1/users/{id}", true, s.patchUser},
		{"DELETE", "/v1/users/{id}", true, s.deleteUser},
	}
	if s.devInbox {
		rs = append(rs, route{"GET", "/v1/dev/messages", true, s.devMessages})
	}
	return rs
}

// endpoint adapts a route: authentication, then the handler; a returned error becomes a problem.
func (s *Server) endpoint(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p engine.Principal
		if rt.auth {
			var err error
			if p, err = s.authenticate(r); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		if err := rt.h(w, r, p); err != nil {
			s.fail(w, r, err)
		}
	})
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	p := toProblem(err)
	if p.Status >= 500 {
		s.log.Error("request failed", "route", r.Pattern, "request_id", requestID(r.Context()), "err", err)
	}
	writeProblem(w, p)
}

type principalKey struct{}

// WithPrincipal marks ctx as already authenticated as p. Only in-process callers (the CLI
// working on the local database) can do this; nothing from the network reaches it.
func WithPrincipal(ctx context.Context, p engine.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func (s *Server) authenticate(r *http.Request) (engine.Principal, error) {
	if p, ok := r.Context().Value(principalKey{}).(engine.Principal); ok {
		return p, nil
	}
	key := r.Header.Get("x-api-key")
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, token, ok := strings.Cut(a, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return engine.Principal{}, engine.ErrUnauthenticated
		}
		key = strings.TrimSpace(token)
	}
	return s.eng.Authenticate(r.Context(), key)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			s.log.Warn("not ready", "err", err)
			writeProblem(w, problem(http.StatusServiceUnavailable, "not_ready", "The database does not answer."))
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// ServeHTTP runs the middleware chain: request id, panic recovery, problem+json for unrouted
// requests, metrics and the access log.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	if id == "" || len(id) > 64 || strings.ContainsFunc(id, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
		id = newRequestID()
	}
	w.Header().Set("X-Request-Id", id)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}

	_, pattern := s.mux.Handler(r)
	if pattern == "" {
		// Not routed: let the mux decide 404 or 405 (with Allow), answer as problem+json.
		rec.intercept = true
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic", "request_id", id, "panic", v, "stack", string(debug.Stack()))
			if !rec.wrote {
				writeProblem(rec, problem(http.StatusInternalServerError, "internal", "Something went wrong on our side; it has been logged."))
			}
		}
		route := pattern
		if route == "" {
			route = "unmatched"
		}
		s.reqs.WithLabelValues(route, methodLabel(r.Method), strconv.Itoa(rec.status)).Inc()
		s.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		s.log.Info("request", "method", r.Method, "route", route, "status", rec.status,
			"duration_ms", float64(time.Since(start).Microseconds())/1000, "request_id", id,
			"client_ip", clientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), s.trusted))
	}()
	s.mux.ServeHTTP(rec, r)
	if rec.intercept && rec.status >= 400 {
		code := "not_found"
		detail := "No such endpoint."
		if rec.status == http.StatusMethodNotAllowed {
			code, detail = "method_not_allowed", "This endpoint does not accept "+r.Method+"."
		}
		p := problem(rec.status, code, detail)
		p.allow = rec.Header().Get("Allow")
		rec.intercept = false
		writeProblem(rec, p)
	}
}

// recorder captures the status; in intercept mode it swallows the mux's plain-text error so a
// problem+json can be written instead.
type recorder struct {
	http.ResponseWriter
	status    int
	wrote     bool
	intercept bool
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	if r.intercept && code >= 400 {
		return
	}
	r.wrote = true
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.intercept && r.status >= 400 {
		return len(b), nil
	}
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// methodLabel bounds the method label of the request metrics: a client can send any method
// token, and each new one would otherwise be a new time series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

type requestIDKey struct{}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
