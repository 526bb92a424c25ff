package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/engine"
)

// The token surfaces' part of the native API: one-time login tokens, the tenant's token
// settings (external-login allow-list, self-service access), applications' IAM introspection
// settings, and the verification of user OTPs — plus the helpers the vendor dialects mounted
// with Handle share with the native API (end-user IP, TLS detection, strict JSON decoding).

func init() { routeSets = append(routeSets, (*Server).tokenRoutes) }

func (s *Server) tokenRoutes() []route {
	return []route{
		{"POST", "/v1/login-tokens", true, s.issueLoginToken},
		{"POST", "/v1/login-tokens/redeem", true, s.redeemLoginToken},
		{"GET", "/v1/token-settings", true, s.getTokenSettings},
		{"PUT", "/v1/token-settings", true, s.putTokenSettings},
		{"GET", "/v1/applications/{id}/iam", true, s.getIAM},
		{"PUT", "/v1/applications/{id}/iam", true, s.putIAM},
		{"DELETE", "/v1/applications/{id}/iam", true, s.deleteIAM},
		{"POST", "/v1/users/{id}/otp/verify", true, s.verifyUserOTP},
	}
}

// EndUserIP is the address of the end user behind r: the TCP peer, or the first untrusted hop
// of X-Forwarded-For when the peer is a trusted proxy (SECURITY.md 25).
func (s *Server) EndUserIP(r *http.Request) string {
	return clientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), s.trusted)
}

// ViaTLS reports whether the end user reached otpd over TLS: the connection itself, or a trusted
// proxy that says so in X-Forwarded-Proto.
func (s *Server) ViaTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	peer, err := netip.ParseAddr(clientIP(r.RemoteAddr, nil, nil))
	if err != nil || !isTrusted(peer, s.trusted) {
		return false
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	return strings.EqualFold(strings.TrimSpace(proto), "https")
}

// DecodeJSON reads exactly one JSON object into dst with the native API's rules (size limit,
// unknown fields and trailing data refused, application/json when a Content-Type is sent). Its
// errors are *Problem values: a dialect reads Status and Errors from them and answers in its
// own format.
func DecodeJSON(w http.ResponseWriter, r *http.Request, dst any, allowEmpty bool) error {
	return decode(w, r, dst, allowEmpty)
}

// ---- one-time login tokens ------------------------------------------------------------------

type loginTokenRequest struct {
	Purpose    string          `json:"purpose"`
	UserID     string          `json:"user_id"`
	Login      string          `json:"login"`
	ExternalID string          `json:"external_id"`
	AuditData  json.RawMessage `json:"audit_data"`
}

func (s *Server) issueLoginToken(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req loginTokenRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if req.Purpose == "" {
		req.Purpose = engine.OTTPurposeLogin
	}
	t, err := s.eng.IssueOneTimeToken(r.Context(), p, engine.OTTRequest{Purpose: req.Purpose,
		Login: req.Login, ExternalID: req.ExternalID, UserID: req.UserID, AuditData: req.AuditData})
	if errors.Is(err, engine.ErrUserDisabled) {
		return problem(http.StatusConflict, "conflict", "The user is disabled.")
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": t.Token, "purpose": t.Purpose,
		"user_id": t.UserID, "expires_at": t.ExpiresAt})
	return nil
}

func (s *Server) redeemLoginToken(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req struct {
		Token   string `json:"token"`
		Purpose string `json:"purpose"`
	}
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if req.Purpose == "" {
		req.Purpose = engine.OTTPurposeVerify
	}
	if req.Purpose != engine.OTTPurposeVerify && req.Purpose != engine.OTTPurposeLogin {
		return &engine.ValidationError{Field: "purpose", Message: "must be verify or user_login"}
	}
	// The caller's tenant is part of the redemption: another tenant's token is refused unspent.
	red, err := s.eng.RedeemOneTimeToken(r.Context(), p.TenantID, req.Token, req.Purpose)
	if errors.Is(err, engine.ErrUnauthenticated) {
		return &engine.ValidationError{Field: "token", Message: "is unknown, used, expired or for another purpose"}
	}
	if err != nil {
		return err
	}
	out := map[string]any{"purpose": red.Purpose, "user": toUser(red.User)}
	if red.SessionToken != "" {
		out["session"] = red.SessionToken
		out["session_expires_at"] = red.SessionExpiresAt
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ---- token settings -------------------------------------------------------------------------

type tokenSettingsJSON struct {
	RedirectTargets []string        `json:"redirect_targets"`
	SelfService     selfServiceJSON `json:"self_service"`
	UpdatedAt       *time.Time      `json:"updated_at,omitempty"`
}

type selfServiceJSON struct {
	RequireAPIKey bool     `json:"require_api_key"`
	Hosts         []string `json:"hosts"`
}

func toTokenSettings(t *engine.TokenSettings) tokenSettingsJSON {
	out := tokenSettingsJSON{RedirectTargets: t.RedirectTargets,
		SelfService: selfServiceJSON{RequireAPIKey: t.SelfServiceRequireKey, Hosts: t.SelfServiceHosts}}
	if !t.UpdatedAt.IsZero() {
		at := t.UpdatedAt
		out.UpdatedAt = &at
	}
	return out
}

func (s *Server) getTokenSettings(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	t, err := s.eng.GetTokenSettings(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toTokenSettings(t))
	return nil
}

func (s *Server) putTokenSettings(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req struct {
		RedirectTargets []string        `json:"redirect_targets"`
		SelfService     selfServiceJSON `json:"self_service"`
	}
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	t, err := s.eng.SetTokenSettings(r.Context(), p, engine.TokenSettings{RedirectTargets: req.RedirectTargets,
		SelfServiceRequireKey: req.SelfService.RequireAPIKey, SelfServiceHosts: req.SelfService.Hosts})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toTokenSettings(t))
	return nil
}

// ---- IAM introspection settings -------------------------------------------------------------

// maskedSecret stands for a stored client secret, which is never shown again.
const maskedSecret = "********"

type iamJSON struct {
	ApplicationID    string       `json:"application_id"`
	Enabled          bool         `json:"enabled"`
	IntrospectionURL string       `json:"introspection_url"`
	ClientID         string       `json:"client_id"`
	ClientSecret     string       `json:"client_secret"`
	RolePath         string       `json:"role_path"`
	AllowedRole      string       `json:"allowed_role"`
	UpdatedAt        *time.Time   `json:"updated_at,omitempty"`
	Ready            bool         `json:"ready"`
	Problems         []iamProblem `json:"problems"`
}

type iamProblem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// iamProblemFields names the setting behind each misconfiguration.
var iamProblemFields = []struct {
	err   error
	field string
}{
	{engine.ErrIAMNotEnabled, "enabled"},
	{engine.ErrIAMClientIDMissing, "client_id"},
	{engine.ErrIAMClientSecretMissing, "client_secret"},
	{engine.ErrIAMURLMissing, "introspection_url"},
	{engine.ErrIAMRolePathMissing, "role_path"},
	{engine.ErrIAMRoleMissing, "allowed_role"},
	{engine.ErrIAMRolePathFormat, "role_path"},
}

func toIAM(v *engine.IAMSettings) iamJSON {
	out := iamJSON{ApplicationID: v.ApplicationID, Enabled: v.Enabled, IntrospectionURL: v.IntrospectionURL,
		ClientID: v.ClientID, RolePath: v.RolePath, AllowedRole: v.AllowedRole,
		Ready: len(v.Problems) == 0, Problems: []iamProblem{}}
	if v.ClientSecretSet {
		out.ClientSecret = maskedSecret
	}
	if !v.UpdatedAt.IsZero() {
		at := v.UpdatedAt
		out.UpdatedAt = &at
	}
	for _, e := range v.Problems {
		for _, f := range iamProblemFields {
			if errors.Is(e, f.err) {
				out.Problems = append(out.Problems, iamProblem{f.field, e.Error()})
			}
		}
	}
	return out
}

func (s *Server) getIAM(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	v, err := s.eng.GetIAMSettings(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toIAM(v))
	return nil
}

func (s *Server) putIAM(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req struct {
		Enabled          bool    `json:"enabled"`
		IntrospectionURL string  `json:"introspection_url"`
		ClientID         string  `json:"client_id"`
		ClientSecret     *string `json:"client_secret"`
		RolePath         string  `json:"role_path"`
		AllowedRole      string  `json:"allowed_role"`
	}
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if req.ClientSecret != nil && *req.ClientSecret == maskedSecret {
		req.ClientSecret = nil // the masked value read back: keep the stored secret
	}
	v, err := s.eng.SetIAMSettings(r.Context(), p, r.PathValue("id"), engine.IAMInput{Enabled: req.Enabled,
		IntrospectionURL: req.IntrospectionURL, ClientID: req.ClientID, ClientSecret: req.ClientSecret,
		RolePath: req.RolePath, AllowedRole: req.AllowedRole})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toIAM(v))
	return nil
}

func (s *Server) deleteIAM(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	if err := s.eng.DeleteIAMSettings(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- user OTP verification ------------------------------------------------------------------

func (s *Server) verifyUserOTP(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req struct {
		Purpose string `json:"purpose"`
		OTP     string `json:"otp"`
	}
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	res, err := s.eng.VerifyUserOTP(r.Context(), p, r.PathValue("id"), req.Purpose, req.OTP)
	if errors.Is(err, engine.ErrMalformedCode) {
		p := toProblem(err)
		p.Errors = []FieldError{{"otp", p.Detail}}
		return p
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"valid": res.Valid(), "status": res.Session.Status,
		"attempts_left": res.Session.AttemptsLeft()})
	return nil
}
