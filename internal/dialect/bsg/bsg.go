// Package bsg serves BSG's 2FA API (SPEC.md §2.1) wire-compatibly, so that a client written for
// https://one-api.bsg.world — BSG's generated SDKs included — works against otpd by changing only
// the host: POST /api/auth/login and /api/auth/refresh (bearer JWTs signed by otpd), the six
// verification operations under /api/2fa/authentications and the four template operations under
// /api/2fa/authentications/templates, with BSG's paths, fields, statuses, error shapes and words
// (reference/bsg-one-api-openapi.yaml, tags TwoFA and TwoFA Templates).
//
// The package only translates: it decodes and validates the wire format, calls the engine, and
// encodes the answer. Sessions, codes, templates, prices, limits and every SMS-pumping defence
// are the engine's (internal/engine: bsg.go, bsg_auth.go, messaging*.go). docs/bsg.md lists the
// choices made where BSG's documents are silent.
package bsg

import (
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"github.com/otpd/otpd/internal/engine"
)

// Mux is where the surface mounts its routes (api.Server.Handle).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Handler is the BSG surface.
type Handler struct {
	eng *engine.Engine
	log *slog.Logger
}

// route is one operation.
type route struct {
	method, path string
	auth         bool
	h            func(w http.ResponseWriter, r *http.Request, p engine.Principal) *apiError
}

// New returns the surface over eng.
func New(eng *engine.Engine, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{eng: eng, log: log}
}

func (h *Handler) routes() []route {
	const auth = "/api/auth"
	const base = "/api/2fa/authentications"
	return []route{
		{"POST", auth + "/login", false, h.login},
		{"POST", auth + "/refresh", true, h.refresh},
		{"POST", base + "/otp", true, h.send},
		{"POST", base + "/otp/{id}/resend", true, h.resend},
		{"POST", base + "/otp/{id}/verify", true, h.verify},
		{"POST", base + "/{id}/cancel", true, h.cancel},
		{"GET", base + "/{id}", true, h.status},
		{"GET", base, true, h.list},
		{"GET", base + "/templates", true, h.templateList},
		{"POST", base + "/templates", true, h.templateCreate},
		{"GET", base + "/templates/{templateId}", true, h.templateGet},
		{"DELETE", base + "/templates/{templateId}", true, h.templateDelete},
	}
}

// Mount serves the BSG surface over eng on m.
func Mount(m Mux, eng *engine.Engine, log *slog.Logger) { New(eng, log).Mount(m) }

// Mount registers the surface's routes on m, plus catch-alls under /api/2fa/ and /api/auth/ that
// answer unknown paths (404) and methods (405) in BSG's shape.
func (h *Handler) Mount(m Mux) {
	rs := h.routes()
	for _, rt := range rs {
		m.Handle(rt.method+" "+rt.path, h.endpoint(rt))
	}
	// A known path with another method is a 405, anything else a 404.
	unrouted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, rt := range rs {
			if pathMatches(rt.path, r.URL.Path) {
				w.Header().Add("Allow", rt.method)
			}
		}
		if w.Header().Get("Allow") != "" {
			msgAnswer(http.StatusMethodNotAllowed, "Method Not Allowed").write(w)
			return
		}
		msgAnswer(http.StatusNotFound, "Not Found").write(w)
	})
	m.Handle("/api/2fa/", unrouted)
	m.Handle("/api/auth/", unrouted)
}

// pathMatches reports whether path fits the route template tpl ({name} matches one segment).
func pathMatches(tpl, path string) bool {
	ts, ps := strings.Split(tpl, "/"), strings.Split(path, "/")
	if len(ts) != len(ps) {
		return false
	}
	for i, t := range ts {
		if !(strings.HasPrefix(t, "{") && ps[i] != "") && t != ps[i] {
			return false
		}
	}
	return true
}

// endpoint authenticates (a bearer token from /api/auth/login) and runs the handler.
func (h *Handler) endpoint(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p engine.Principal
		if rt.auth {
			var e *apiError
			if p, e = h.authenticate(r); e != nil {
				e.write(w)
				return
			}
		}
		if e := rt.h(w, r, p); e != nil {
			if e.status >= 500 {
				h.log.Error("bsg request failed", "route", r.Pattern, "err", e.cause)
			}
			e.write(w)
		}
	})
}

// bearer returns the token of "Authorization: Bearer <t>" (BSG's documents also show
// "Bearer: <t>").
func bearer(r *http.Request) string {
	a := strings.TrimSpace(r.Header.Get("Authorization"))
	scheme, tok, ok := strings.Cut(a, " ")
	if !ok || !strings.EqualFold(strings.TrimSuffix(scheme, ":"), "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

func (h *Handler) authenticate(r *http.Request) (engine.Principal, *apiError) {
	tok := bearer(r)
	if tok == "" {
		return engine.Principal{}, msgAnswer(http.StatusUnauthorized, "JWT Token not found")
	}
	p, err := h.eng.AuthenticateBSG(r.Context(), tok)
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, engine.ErrTokenExpired):
		return p, msgAnswer(http.StatusUnauthorized, "Expired JWT Token")
	case errors.Is(err, engine.ErrInvalidToken):
		return p, msgAnswer(http.StatusUnauthorized, "Invalid JWT Token")
	}
	return p, internal(err)
}

type tokenAnswer struct {
	Bearer string `json:"bearer"`
}

// login exchanges an otpd API key for a bearer token (TokenSchema).
func (h *Handler) login(w http.ResponseWriter, r *http.Request, _ engine.Principal) *apiError {
	raw, e := readRaw(w, r)
	if e != nil {
		return e
	}
	key, e := decodeLogin(raw)
	if e != nil {
		return e
	}
	tok, _, err := h.eng.LoginBSG(r.Context(), key)
	if errors.Is(err, engine.ErrUnauthenticated) {
		return msgAnswer(http.StatusUnauthorized, "Invalid API key")
	}
	if err != nil {
		return internal(err)
	}
	writeJSON(w, http.StatusOK, tokenAnswer{tok})
	return nil
}

// refresh issues a fresh token for the caller's token (TokenSchema).
func (h *Handler) refresh(w http.ResponseWriter, r *http.Request, p engine.Principal) *apiError {
	if _, e := readBody(w, r, true); e != nil {
		return e
	}
	tok, _, err := h.eng.RefreshBSG(r.Context(), p)
	if err != nil {
		return fromEngine(err)
	}
	writeJSON(w, http.StatusOK, tokenAnswer{tok})
	return nil
}

// ClientIPHeader optionally carries the end user's address on send_otp, for the per-IP limit
// (BSG's body has no such field; the caller is a backend, whose own address says nothing).
const ClientIPHeader = "X-Otpd-Client-Ip"

func clientIP(r *http.Request) (string, *apiError) {
	v := strings.TrimSpace(r.Header.Get(ClientIPHeader))
	if v == "" {
		return "", nil
	}
	if _, err := netip.ParseAddr(v); err != nil {
		return "", invalidFields(fieldErrors{ClientIPHeader: {msgNotValid}})
	}
	return v, nil
}
