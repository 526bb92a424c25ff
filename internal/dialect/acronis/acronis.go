// Package acronis is the Acronis dialect: the OAuth2 token endpoint (client credentials),
// RFC 7662 introspection and RFC 7009 revocation under /api/2/idp, the JWKS, and the one-time
// login tokens of the seed "one-time-token-login.txt" — issue (/idp/ott), exchange for the user
// account and an IdP session cookie (/idp/ott/login), and the external-login page that redeems a
// token in the browser and redirects to an allow-listed target.
//
// The package only translates: it decodes and validates the wire format, calls the engine, and
// answers in Acronis's shapes — {"error": {"code", "message", "domain", "context", "details"}}
// for the account API, {"error", "error_description"} for the OAuth endpoints.
package acronis

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/api"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
)

// Mounter is where the dialect is served: the native API server.
type Mounter interface {
	Handle(pattern string, h http.Handler)
	// ViaTLS reports whether the end user reached otpd over TLS (directly or via a trusted proxy).
	ViaTLS(r *http.Request) bool
}

// SessionCookie is the name of the IdP session cookie /idp/ott/login sets.
const SessionCookie = "otpd_idp_session"

// IdpID is the identity provider id in account JSON: the platform's built-in IdP.
const IdpID = "11111111-1111-1111-1111-111111111111"

// domain names otpd's account service in Acronis error bodies.
const domain = "PlatformAccountServer"

// maxBody bounds request bodies.
const maxBody = 64 << 10

type handler struct {
	eng *engine.Engine
	m   Mounter
	log *slog.Logger
}

// Mount serves the dialect on m.
func Mount(m Mounter, e *engine.Engine, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{eng: e, m: m, log: log}
	m.Handle("POST /api/2/idp/token", http.HandlerFunc(h.token))
	m.Handle("POST /api/2/idp/introspect_token", http.HandlerFunc(h.introspect))
	m.Handle("POST /api/2/idp/revoke_token", http.HandlerFunc(h.revoke))
	m.Handle("GET /.well-known/jwks.json", http.HandlerFunc(h.jwks))
	m.Handle("POST /api/2/idp/ott", http.HandlerFunc(h.issueOTT))
	m.Handle("POST /api/2/idp/ott/login", http.HandlerFunc(h.ottLogin))
	m.Handle("GET /api/2/idp/external-login", http.HandlerFunc(h.externalLoginPage))
	m.Handle("POST /api/2/idp/external-login", http.HandlerFunc(h.externalLogin))
	m.Handle("GET /api/2/users/me", http.HandlerFunc(h.me))
	m.Handle("/api/2/", http.HandlerFunc(h.notFound))
}

// ---- error shapes ---------------------------------------------------------------------------

type apiError struct {
	Code    int               `json:"code"`
	Message string            `json:"message"`
	Domain  string            `json:"domain"`
	Context map[string]string `json:"context"`
	Details map[string]string `json:"details"`
}

// fail answers in the account API's error shape. code is the platform code, or the HTTP status.
func (h *handler) fail(w http.ResponseWriter, status, code int, msg string, details map[string]string) {
	if details == nil {
		details = map[string]string{}
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="otpd"`)
	}
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: msg, Domain: domain,
		Context: map[string]string{}, Details: details}})
}

// internal logs err and answers 500 with platform code 1000 ("Internal system error").
func (h *handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Error("acronis request failed", "route", r.Pattern, "err", err)
	h.fail(w, http.StatusInternalServerError, 1000, "Internal system error", nil)
}

// oauthFail answers in the OAuth 2.0 error shape (RFC 6749 §5.2).
func oauthFail(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="otpd"`)
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.fail(w, http.StatusNotFound, http.StatusNotFound, "Not found", nil)
}

// ---- OAuth 2.0 ------------------------------------------------------------------------------

// readForm parses an application/x-www-form-urlencoded body (never the query string: RFC 6749
// keeps credentials out of URLs). ok is false after an error answer was written.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	if !strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded") {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "The body must be application/x-www-form-urlencoded.")
		return nil, false
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "The body could not be read or is too large.")
		return nil, false
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "The body is not a valid form.")
		return nil, false
	}
	for k, v := range form {
		if len(v) > 1 {
			oauthFail(w, http.StatusBadRequest, "invalid_request", "Parameter "+k+" is repeated.")
			return nil, false
		}
	}
	return form, true
}

// clientCredentials reads the client id and secret from HTTP Basic (form-urlencoded inside, as
// RFC 6749 §2.3.1 says) or from the body; using both is an error.
func clientCredentials(r *http.Request, form url.Values) (id, secret string, errDesc string) {
	bid, bsecret, basic := r.BasicAuth()
	fid, fsecret := form.Get("client_id"), form.Get("client_secret")
	switch {
	case basic && (fid != "" || fsecret != ""):
		return "", "", "Use one client authentication method, not both."
	case basic:
		id, err1 := url.QueryUnescape(bid)
		secret, err2 := url.QueryUnescape(bsecret)
		if err1 != nil || err2 != nil {
			return "", "", "Malformed client credentials."
		}
		return id, secret, ""
	}
	return fid, fsecret, ""
}

// authClient authenticates the calling client by its credentials, or by a bearer access token
// (for introspection and revocation). ok is false after an error answer was written.
func (h *handler) authClient(w http.ResponseWriter, r *http.Request, form url.Values) (engine.Principal, bool) {
	if tok, ok := bearer(r); ok {
		p, err := h.eng.VerifyAccessToken(r.Context(), tok)
		if err != nil {
			if !errors.Is(err, engine.ErrUnauthenticated) {
				h.log.Error("acronis: verify access token", "err", err)
				oauthFail(w, http.StatusInternalServerError, "server_error", "Something went wrong on our side.")
				return engine.Principal{}, false
			}
			oauthFail(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed.")
			return engine.Principal{}, false
		}
		return p, true
	}
	id, secret, bad := clientCredentials(r, form)
	if bad != "" {
		oauthFail(w, http.StatusBadRequest, "invalid_request", bad)
		return engine.Principal{}, false
	}
	if id == "" {
		oauthFail(w, http.StatusUnauthorized, "invalid_client", "Client authentication is required (HTTP Basic or client_id and client_secret).")
		return engine.Principal{}, false
	}
	p, err := h.eng.AuthenticateClient(r.Context(), id, secret)
	if errors.Is(err, engine.ErrUnauthenticated) {
		oauthFail(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed.")
		return engine.Principal{}, false
	}
	if err != nil {
		h.log.Error("acronis: authenticate client", "err", err)
		oauthFail(w, http.StatusInternalServerError, "server_error", "Something went wrong on our side.")
		return engine.Principal{}, false
	}
	return p, true
}

func bearer(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(a, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// token is POST /api/2/idp/token: the client-credentials grant.
func (h *handler) token(w http.ResponseWriter, r *http.Request) {
	form, ok := readForm(w, r)
	if !ok {
		return
	}
	switch gt := form.Get("grant_type"); gt {
	case "":
		oauthFail(w, http.StatusBadRequest, "invalid_request", "grant_type is required.")
		return
	case "client_credentials":
	default:
		oauthFail(w, http.StatusBadRequest, "unsupported_grant_type", "Only the client_credentials grant is supported.")
		return
	}
	if _, ok := bearer(r); ok {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "Authenticate with client credentials, not a bearer token.")
		return
	}
	p, ok := h.authClient(w, r, form)
	if !ok {
		return
	}
	t, err := h.eng.IssueAccessToken(r.Context(), p)
	if errors.Is(err, engine.ErrUnauthenticated) {
		oauthFail(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed.")
		return
	}
	if err != nil {
		h.log.Error("acronis: issue access token", "err", err)
		oauthFail(w, http.StatusInternalServerError, "server_error", "Something went wrong on our side.")
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": t.AccessToken,
		"token_type":   t.TokenType,
		"expires_in":   int64(t.ExpiresIn / time.Second),
		"expires_on":   t.ExpiresAt.Unix(),
		"id_token":     t.IDToken,
	})
}

// introspect is POST /api/2/idp/introspect_token (RFC 7662).
func (h *handler) introspect(w http.ResponseWriter, r *http.Request) {
	form, ok := readForm(w, r)
	if !ok {
		return
	}
	p, ok := h.authClient(w, r, form)
	if !ok {
		return
	}
	tok := form.Get("token")
	if tok == "" {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "token is required.")
		return
	}
	in, err := h.eng.IntrospectToken(r.Context(), p, tok)
	if err != nil {
		h.log.Error("acronis: introspect", "err", err)
		oauthFail(w, http.StatusInternalServerError, "server_error", "Something went wrong on our side.")
		return
	}
	if !in.Active {
		writeJSON(w, http.StatusOK, map[string]bool{"active": false})
		return
	}
	out := map[string]any{"active": true, "token_type": in.TokenType, "sub": in.Subject, "iss": in.Issuer,
		"exp": in.ExpiresAt.Unix(), "iat": in.IssuedAt.Unix(), "tenant_id": in.TenantID}
	if in.ClientID != "" {
		out["client_id"] = in.ClientID
	}
	if in.Username != "" {
		out["username"] = in.Username
	}
	if len(in.Audience) > 0 {
		out["aud"] = in.Audience
	}
	if in.JTI != "" {
		out["jti"] = in.JTI
	}
	if in.Scope != "" {
		out["scope"] = in.Scope
	}
	writeJSON(w, http.StatusOK, out)
}

// revoke is POST /api/2/idp/revoke_token (RFC 7009): 200 with an empty body, also for tokens
// that are unknown, expired or not the client's.
func (h *handler) revoke(w http.ResponseWriter, r *http.Request) {
	form, ok := readForm(w, r)
	if !ok {
		return
	}
	p, ok := h.authClient(w, r, form)
	if !ok {
		return
	}
	tok := form.Get("token")
	if tok == "" {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "token is required.")
		return
	}
	if err := h.eng.RevokeToken(r.Context(), &p, tok); err != nil {
		h.log.Error("acronis: revoke", "err", err)
		oauthFail(w, http.StatusServiceUnavailable, "temporarily_unavailable", "The token could not be revoked now; retry.")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

func (h *handler) jwks(w http.ResponseWriter, r *http.Request) {
	b, err := h.eng.JWKS(r.Context())
	if err != nil {
		h.internal(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(b)
}

// ---- one-time tokens ------------------------------------------------------------------------

// authBearer authenticates POST /idp/ott: an access token from /idp/token, or an otpd API key
// presented as a bearer token. ok is false after an error answer was written.
func (h *handler) authBearer(w http.ResponseWriter, r *http.Request) (engine.Principal, bool) {
	tok, ok := bearer(r)
	if !ok {
		h.fail(w, http.StatusUnauthorized, http.StatusUnauthorized, "Authorization required", nil)
		return engine.Principal{}, false
	}
	var (
		p   engine.Principal
		err error
	)
	if _, _, isKey := keys.ParseAPIKey(tok); isKey {
		p, err = h.eng.Authenticate(r.Context(), tok)
	} else {
		p, err = h.eng.VerifyAccessToken(r.Context(), tok)
	}
	if errors.Is(err, engine.ErrUnauthenticated) {
		h.fail(w, http.StatusUnauthorized, http.StatusUnauthorized, "The access token is invalid, expired or revoked", nil)
		return engine.Principal{}, false
	}
	if err != nil {
		h.internal(w, r, err)
		return engine.Principal{}, false
	}
	return p, true
}

// ottRequest is the body of POST /idp/ott; any other field is refused.
type ottRequest struct {
	Purpose    *string         `json:"purpose"`
	Login      *string         `json:"login"`
	ExternalID *string         `json:"external_id"`
	UserID     *string         `json:"user_id"`
	AuditData  json.RawMessage `json:"audit_data"`
}

func (h *handler) issueOTT(w http.ResponseWriter, r *http.Request) {
	p, ok := h.authBearer(w, r)
	if !ok {
		return
	}
	var req ottRequest
	if err := api.DecodeJSON(w, r, &req, false); err != nil {
		h.badBody(w, r, err)
		return
	}
	in := engine.OTTRequest{Purpose: deref(req.Purpose), Login: deref(req.Login),
		ExternalID: deref(req.ExternalID), UserID: deref(req.UserID), AuditData: req.AuditData}
	if in.Purpose == "" {
		h.fail(w, http.StatusBadRequest, http.StatusBadRequest, "purpose is required", map[string]string{"field": "purpose"})
		return
	}
	t, err := h.eng.IssueOneTimeToken(r.Context(), p, in)
	var ve engine.ValidationErrors
	switch {
	case errors.As(err, &ve):
		h.fail(w, http.StatusBadRequest, http.StatusBadRequest, ve[0].Message, map[string]string{"field": ve[0].Field})
	case errors.Is(err, engine.ErrUserDisabled):
		h.fail(w, http.StatusForbidden, 1018, "The user is disabled", nil)
	case errors.Is(err, engine.ErrNotFound):
		h.fail(w, http.StatusNotFound, http.StatusNotFound, "User not found", nil)
	case err != nil:
		h.internal(w, r, err)
	default:
		writeJSON(w, http.StatusOK, map[string]string{"ott": t.Token})
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// badBody answers a decode error of api.DecodeJSON in the account API's shape.
func (h *handler) badBody(w http.ResponseWriter, r *http.Request, err error) {
	var p *api.Problem
	if !errors.As(err, &p) {
		h.internal(w, r, err)
		return
	}
	details := map[string]string{}
	msg := p.Detail
	if len(p.Errors) > 0 {
		details["field"] = p.Errors[0].Field
		msg = p.Errors[0].Field + ": " + p.Errors[0].Message
	}
	h.fail(w, p.Status, p.Status, msg, details)
}

// readOTT reads {"ott": "…"} from the login body. The seed's own client sends the dictionary
// with requests' data= argument, which form-encodes it ("ott=…") even under a JSON content
// type, so a body that is not a JSON object is read as a form.
func readOTT(w http.ResponseWriter, r *http.Request) (string, int, string) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return "", http.StatusRequestEntityTooLarge, "The body is too large"
	}
	body := bytes.TrimSpace(raw)
	if len(body) > 0 && body[0] == '{' {
		var req struct {
			OTT *string `json:"ott"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || dec.More() {
			return "", http.StatusBadRequest, "The body must be {\"ott\": \"…\"}"
		}
		if req.OTT == nil || *req.OTT == "" {
			return "", http.StatusBadRequest, "ott is required"
		}
		return *req.OTT, 0, ""
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || len(form["ott"]) != 1 || len(form) != 1 || form.Get("ott") == "" {
		return "", http.StatusBadRequest, "The body must be {\"ott\": \"…\"}"
	}
	return form.Get("ott"), 0, ""
}

// ottLogin is POST /api/2/idp/ott/login: the token for the user account and a session cookie.
func (h *handler) ottLogin(w http.ResponseWriter, r *http.Request) {
	tok, status, msg := readOTT(w, r)
	if status != 0 {
		h.fail(w, status, status, msg, nil)
		return
	}
	red, err := h.eng.RedeemOneTimeToken(r.Context(), "", tok, engine.OTTPurposeLogin) // the token is the credential
	if errors.Is(err, engine.ErrUnauthenticated) {
		h.fail(w, http.StatusUnauthorized, http.StatusUnauthorized, "The one-time token is invalid, expired or already used", nil)
		return
	}
	if err != nil {
		h.internal(w, r, err)
		return
	}
	h.setSession(w, r, red)
	writeJSON(w, http.StatusOK, toAccount(red.User))
}

func (h *handler) setSession(w http.ResponseWriter, r *http.Request, red *engine.Redemption) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: red.SessionToken, Path: "/",
		Expires: red.SessionExpiresAt, MaxAge: max(1, int((red.SessionExpiresAt.Sub(h.eng.Now())+time.Second-1)/time.Second)),
		HttpOnly: true, Secure: h.m.ViaTLS(r), SameSite: http.SameSiteLaxMode})
}

// me is GET /api/2/users/me: the account of the session cookie's user.
func (h *handler) me(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		h.fail(w, http.StatusUnauthorized, http.StatusUnauthorized, "Authorization required", nil)
		return
	}
	u, err := h.eng.SessionUser(r.Context(), c.Value)
	if errors.Is(err, engine.ErrUnauthenticated) {
		h.fail(w, http.StatusUnauthorized, http.StatusUnauthorized, "The session is invalid, expired or ended", nil)
		return
	}
	if err != nil {
		h.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toAccount(u))
}

// ---- the user account -----------------------------------------------------------------------

type contact struct {
	Address1  string `json:"address1"`
	Address2  string `json:"address2"`
	City      string `json:"city"`
	Country   string `json:"country"`
	Email     string `json:"email"`
	Firstname string `json:"firstname"`
	Lastname  string `json:"lastname"`
	Phone     string `json:"phone"`
	State     string `json:"state"`
	Zipcode   string `json:"zipcode"`
}

// account is the user account JSON of the seed. otpd keeps no password, address, product
// notifications or business types, so activated is false, the address fields are empty and
// the lists are empty, as for a fresh account.
type account struct {
	Activated        bool     `json:"activated"`
	BusinessTypes    []string `json:"business_types"`
	Contact          contact  `json:"contact"`
	CreatedAt        string   `json:"created_at"`
	Enabled          bool     `json:"enabled"`
	ID               string   `json:"id"`
	IdpID            string   `json:"idp_id"`
	Language         string   `json:"language"`
	Login            string   `json:"login"`
	MfaStatus        string   `json:"mfa_status"`
	Notifications    []string `json:"notifications"`
	PersonalTenantID *string  `json:"personal_tenant_id"`
	TenantID         string   `json:"tenant_id"`
	TermsAccepted    bool     `json:"terms_accepted"`
	Version          int64    `json:"version"`
}

// createdAtLayout is Python's isoformat with microseconds, as in the seed.
const createdAtLayout = "2006-01-02T15:04:05.000000-07:00"

func toAccount(u *store.User) account {
	return account{
		BusinessTypes: []string{},
		Contact:       contact{Email: u.Email, Firstname: u.FirstName, Lastname: u.LastName, Phone: u.Phone},
		CreatedAt:     u.CreatedAt.UTC().Format(createdAtLayout),
		Enabled:       u.Enabled,
		ID:            u.ID,
		IdpID:         IdpID,
		Language:      u.Language,
		Login:         u.Login,
		MfaStatus:     "disabled",
		Notifications: []string{},
		TenantID:      u.TenantID,
		TermsAccepted: true,
		Version:       u.Version,
	}
}
