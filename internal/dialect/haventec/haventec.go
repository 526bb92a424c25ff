// Package haventec is the Haventec Authenticate dialect (seed "haventec-iam-user-otp.txt"):
// POST /authenticate/v1-2/iam/user/{userUuid}/otp, where an API client (x-api-key) has otpd
// generate an OTP for a user and purpose on behalf of a requestor whose token the customer's IAM
// vouches for by RFC 7662 introspection.
//
// The package only translates: it validates the wire format, calls the engine, and answers
// {..., "responseStatus": {"status": "SUCCESS"}} or {"responseStatus": {"status": "ERROR",
// "message", "code"}} with the seed's error codes (and a few otpd codes for what the seed has
// none for, prefixed OTPD-; see docs/haventec.md).
package haventec

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/otpd/otpd/internal/engine"
)

// Mounter is where the dialect is served: the native API server.
type Mounter interface {
	Handle(pattern string, h http.Handler)
}

// Error is one row of the seed's error table (or an otpd addition).
type Error struct {
	Code    string
	Message string
	Status  int
}

// The errors, by the seed's codes. Statuses are otpd's choice (the seed gives none).
var (
	ErrInvalidUserUUID   = Error{"AN-USER-1000", "Invalid UserUuid", http.StatusBadRequest}
	ErrEmptyRequest      = Error{"AN-UOTP-1006", "Empty create OTP request", http.StatusBadRequest}
	ErrInvalidAppUUID    = Error{"AN-APLI-1005", "Invalid ApplicationUuid", http.StatusBadRequest}
	ErrInvalidUsername   = Error{"AN-VALI-1003", "Invalid username format", http.StatusBadRequest}
	ErrInvalidPurpose    = Error{"AN-GOTP-1002", "Invalid OTP purpose format", http.StatusBadRequest}
	ErrInvalidTTL        = Error{"AN-GOTP-1001", "Invalid OTP TTL format", http.StatusBadRequest}
	ErrInvalidJWT        = Error{"AN-JWTT-1001", "Invalid JWT Token", http.StatusUnauthorized}
	ErrAppNotFound       = Error{"AN-VALI-1001", "Application UUID was not found", http.StatusNotFound}
	ErrIAMNotEnabled     = Error{"AN-OIAM-1001", "The application does not have IAM properties enabled", http.StatusForbidden}
	ErrIAMClientID       = Error{"AN-OIAM-1002", "IAM client_id not configured", http.StatusForbidden}
	ErrIAMClientSecret   = Error{"AN-OIAM-1003", "IAM client_secret not configured", http.StatusForbidden}
	ErrIAMURL            = Error{"AN-OIAM-1004", "IAM Introspect url not configured", http.StatusForbidden}
	ErrIAMRole           = Error{"AN-OIAM-1005", "IAM role not configured", http.StatusForbidden}
	ErrIAMRolePath       = Error{"AN-OIAM-1006", "IAM role path not configured", http.StatusForbidden}
	ErrIAMRolePathFormat = Error{"AN-OIAM-1007", "Role path format", http.StatusForbidden}
	ErrNotAllowed        = Error{"AN-UOTP-1001", "Not allowed to create an OTP for that user", http.StatusForbidden}
	ErrUserNotFound      = Error{"AN-AUTH-1017", "User not found in the application", http.StatusNotFound}
	ErrUpdateDenied      = Error{"AN-USER-1008", "Request to update user denied", http.StatusForbidden}
	ErrOTPExists         = Error{"AN-UOTP-1004", "The user has already a valid OTP assigned. Please wait till it expires or gets used", http.StatusConflict}
	ErrInvalidAPIKey     = Error{"OTPD-AUTH-1001", "Invalid API key", http.StatusUnauthorized}
	ErrMalformedBody     = Error{"OTPD-REQ-1001", "Malformed request body", http.StatusBadRequest}
	ErrIAMUnavailable    = Error{"OTPD-OIAM-1008", "IAM introspection failed; no OTP was issued", http.StatusBadGateway}
	ErrTooManyRequests   = Error{"OTPD-RATE-1001", "Too many OTPs requested; try again later", http.StatusTooManyRequests}
	ErrInternal          = Error{"OTPD-SYS-1000", "Internal error", http.StatusInternalServerError}
	ErrNoSuchEndpoint    = Error{"OTPD-REQ-1004", "No such endpoint", http.StatusNotFound}
	errMethodNotAllowed  = Error{"OTPD-REQ-1005", "Method not allowed", http.StatusMethodNotAllowed}
	iamErrors            = map[error]Error{
		engine.ErrIAMNotEnabled:          ErrIAMNotEnabled,
		engine.ErrIAMClientIDMissing:     ErrIAMClientID,
		engine.ErrIAMClientSecretMissing: ErrIAMClientSecret,
		engine.ErrIAMURLMissing:          ErrIAMURL,
		engine.ErrIAMRoleMissing:         ErrIAMRole,
		engine.ErrIAMRolePathMissing:     ErrIAMRolePath,
		engine.ErrIAMRolePathFormat:      ErrIAMRolePathFormat,
	}
)

const maxBody = 64 << 10

// Path is where the endpoint is served (the seed's base URL path plus the controller path).
const Path = "/authenticate/v1-2/iam/user/{userUuid}/otp"

type handler struct {
	eng *engine.Engine
	log *slog.Logger
}

// Mount serves the dialect on m.
func Mount(m Mounter, e *engine.Engine, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{eng: e, log: log}
	m.Handle("POST "+Path, http.HandlerFunc(h.createOTP))
	m.Handle("/authenticate/v1-2/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/authenticate/v1-2/iam/user/") && strings.HasSuffix(r.URL.Path, "/otp") {
			w.Header().Set("Allow", "POST")
			fail(w, errMethodNotAllowed)
			return
		}
		fail(w, ErrNoSuchEndpoint)
	}))
}

type responseStatus struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
	Code    string `json:"code,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, e Error) {
	writeJSON(w, e.Status, map[string]responseStatus{"responseStatus": {Status: "ERROR", Message: e.Message, Code: e.Code}})
}

// Response is the success answer.
type Response struct {
	OTP            string         `json:"otp"`
	DateCreated    int64          `json:"dateCreated"`
	DateExpired    int64          `json:"dateExpired"`
	TTL            int            `json:"ttl"`
	UserEmail      string         `json:"userEmail"`
	MobileNumber   string         `json:"mobileNumber"`
	ResponseStatus responseStatus `json:"responseStatus"`
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// jwtRE is the shape of a compact JWS: three base64url parts (the signature may be empty only
// for unsecured tokens, which an IAM does not issue).
var jwtRE = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)

func (h *handler) createOTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("x-api-key")
	if key == "" {
		fail(w, ErrInvalidAPIKey)
		return
	}
	p, err := h.eng.Authenticate(r.Context(), key)
	if err != nil {
		if errors.Is(err, engine.ErrUnauthenticated) {
			fail(w, ErrInvalidAPIKey)
		} else {
			h.internal(w, r, err)
		}
		return
	}
	userUUID := r.PathValue("userUuid")
	if !uuidRE.MatchString(userUUID) {
		fail(w, ErrInvalidUserUUID)
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		fail(w, ErrMalformedBody)
		return
	}
	body := bytes.TrimSpace(raw)
	if len(body) == 0 || string(body) == "null" || string(body) == "{}" {
		fail(w, ErrEmptyRequest)
		return
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil || dec.More() || fields == nil {
		fail(w, ErrMalformedBody)
		return
	}
	if len(fields) == 0 {
		fail(w, ErrEmptyRequest)
		return
	}
	str := func(name string) (string, bool) {
		v, ok := fields[name]
		if !ok {
			return "", false
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			return "", false
		}
		return s, true
	}
	appUUID, ok := str("applicationUuid")
	if !ok || !uuidRE.MatchString(appUUID) {
		fail(w, ErrInvalidAppUUID)
		return
	}
	username, ok := str("requestorUsername")
	if !ok || strings.TrimSpace(username) == "" {
		fail(w, ErrInvalidUsername)
		return
	}
	purpose, ok := str("purpose")
	if !ok || purpose == "" {
		fail(w, ErrInvalidPurpose)
		return
	}
	var ttl time.Duration
	if v, ok := fields["ttl"]; ok && string(bytes.TrimSpace(v)) != "null" {
		n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 32)
		if err != nil || n <= 0 {
			fail(w, ErrInvalidTTL)
			return
		}
		ttl = time.Duration(n) * time.Second
	}
	token, ok := str("requestorToken")
	if !ok || len(token) > 8192 || !jwtRE.MatchString(token) {
		fail(w, ErrInvalidJWT)
		return
	}

	otp, err := h.eng.IssueUserOTP(r.Context(), p, engine.UserOTPRequest{ApplicationID: strings.ToLower(appUUID),
		UserID: strings.ToLower(userUUID), Purpose: purpose, RequestorToken: token, RequestorUsername: username, TTL: ttl})
	if err != nil {
		h.mapError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, Response{OTP: otp.OTP, DateCreated: otp.CreatedAt.UnixMilli(),
		DateExpired: otp.ExpiresAt.UnixMilli(), TTL: int(otp.TTL / time.Second), UserEmail: otp.UserEmail,
		MobileNumber: otp.MobileNumber, ResponseStatus: responseStatus{Status: "SUCCESS"}})
}

// mapError is the one table from engine outcomes to the seed's codes.
func (h *handler) mapError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		vs engine.ValidationErrors
		ve *engine.ValidationError
		rl *engine.RateLimitError
	)
	field := ""
	if errors.As(err, &vs) && len(vs) > 0 {
		field = vs[0].Field
	} else if errors.As(err, &ve) {
		field = ve.Field
	}
	for e, code := range iamErrors {
		if errors.Is(err, e) {
			fail(w, code)
			return
		}
	}
	switch {
	case field == "purpose":
		fail(w, ErrInvalidPurpose)
	case field == "ttl":
		fail(w, ErrInvalidTTL)
	case field == "requestor_username":
		fail(w, ErrInvalidUsername)
	case field == "requestor_token":
		fail(w, ErrInvalidJWT)
	case field != "":
		fail(w, ErrMalformedBody)
	case errors.Is(err, engine.ErrUnknownApplication):
		fail(w, ErrAppNotFound)
	case errors.Is(err, engine.ErrUnknownUser):
		fail(w, ErrUserNotFound)
	case errors.Is(err, engine.ErrUserNotEligible):
		fail(w, ErrUpdateDenied)
	case errors.Is(err, engine.ErrRequestorNotAllowed):
		fail(w, ErrNotAllowed)
	case errors.Is(err, engine.ErrUserOTPExists):
		fail(w, ErrOTPExists)
	case errors.Is(err, engine.ErrIAMUnavailable):
		h.log.Warn("haventec: IAM introspection failed", iamFailure(err)...)
		fail(w, ErrIAMUnavailable)
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(rl.RetryAfter.Seconds()))))
		fail(w, ErrTooManyRequests)
	default:
		h.internal(w, r, err)
	}
}

// iamFailure describes a failed introspection for the log. A transport error (*url.Error)
// carries the whole introspection URL, and its query may hold a credential of the customer's
// IAM, so only the URL's scheme and host and the kind of failure are logged. The engine's other
// reasons (an HTTP status, an answer that is not JSON) name no URL and are logged as they are.
func iamFailure(err error) []any {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return []any{"reason", err.Error()}
	}
	iam := "(unparsable URL)"
	if u, perr := url.Parse(ue.URL); perr == nil && u.Scheme != "" {
		iam = u.Scheme + "://" + u.Host
	}
	return []any{"iam", iam, "reason", failureKind(ue)}
}

// failureKind names what went wrong with a request without quoting the request.
func failureKind(ue *url.Error) string {
	var (
		dns  *net.DNSError
		cert *tls.CertificateVerificationError
		rec  tls.RecordHeaderError
		op   *net.OpError
	)
	switch {
	case ue.Timeout():
		return "timeout"
	case errors.Is(ue.Err, context.Canceled):
		return "canceled"
	case errors.As(ue.Err, &dns):
		return "name resolution failed"
	case errors.As(ue.Err, &cert), errors.As(ue.Err, &rec):
		return "TLS failed"
	case errors.Is(ue.Err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(ue.Err, syscall.ECONNRESET), errors.Is(ue.Err, io.EOF), errors.Is(ue.Err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(ue.Err, &op):
		return "network error (" + op.Op + ")"
	case ue.Op == "parse":
		return "malformed URL"
	}
	return "request failed"
}

func (h *handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Error("haventec request failed", "route", r.Pattern, "err", err)
	fail(w, ErrInternal)
}
