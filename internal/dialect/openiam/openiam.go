// Package openiam is the OpenIAM self-service dialect (seed "openiam-selfservice-otp.txt"): send
// a verification code by email or SMS, check it by its moving factor, and revoke a token
// (logout). Answers use OpenIAM's response envelope with HTTP status 200; the envelope's own
// "status" says how the call went.
//
// The package only translates: it decodes the wire format, resolves the caller (an API key, or
// the tenant of the Host, or the default tenant), calls the engine, and encodes the envelope.
package openiam

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store"
)

// Mounter is where the dialect is served: the native API server.
type Mounter interface {
	Handle(pattern string, h http.Handler)
	// EndUserIP is the end user's address, from trusted proxies only.
	EndUserIP(r *http.Request) string
}

// AuthCookie is the cookie OpenIAM keeps its auth token in; the revoke endpoint honours it.
const AuthCookie = "OPENIAM_AUTH_TOKEN"

// Error codes in errorList[].error. CODE_NOT_EQUAL and its message are OpenIAM's; the others
// are otpd's, documented in docs/openiam.md.
const (
	CodeNotEqual         = "CODE_NOT_EQUAL"
	CodeExpired          = "CODE_EXPIRED"
	CodeAttemptsExceeded = "CODE_ATTEMPTS_EXCEEDED"
	CodeAlreadyUsed      = "CODE_ALREADY_USED"
	CodeUnknownFactor    = "MOVING_FACTOR_NOT_FOUND"
	CodeInvalidEmail     = "INVALID_EMAIL"
	CodeInvalidPhone     = "INVALID_PHONE"
	CodeInvalidRequest   = "INVALID_REQUEST"
	CodeTooManyRequests  = "TOO_MANY_REQUESTS"
	CodeUnauthorized     = "UNAUTHORIZED"
	CodeChannelOff       = "CHANNEL_UNAVAILABLE"
	CodeInternal         = "INTERNAL_ERROR"
)

// MsgCodeNotEqual is OpenIAM's message for a wrong code.
const MsgCodeNotEqual = "Sent code and input do not match"

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
	m.Handle("POST /selfservice/send-verification-code-by-email", http.HandlerFunc(h.sendEmail))
	m.Handle("POST /selfservice/send-sms-verification-code", http.HandlerFunc(h.sendSMS))
	m.Handle("POST /selfservice/check-verification-code", http.HandlerFunc(h.check))
	m.Handle("POST /idp/oauth2/revoke", http.HandlerFunc(h.revoke))
}

// ---- the envelope ---------------------------------------------------------------------------

type errorItem struct {
	I18nError       any    `json:"i18nError"`
	Error           string `json:"error"`
	ValidationError any    `json:"validationError"`
	Params          any    `json:"params"`
	Message         string `json:"message"`
}

type successToken struct {
	Message string `json:"message"`
	Params  any    `json:"params"`
}

// envelope is OpenIAM's response, members in OpenIAM's order.
type envelope struct {
	PrimaryKey     any           `json:"primaryKey"`
	Status         int           `json:"status"`
	ErrorList      []errorItem   `json:"errorList"`
	RedirectURL    any           `json:"redirectURL"`
	SuccessToken   *successToken `json:"successToken"`
	SuccessMessage any           `json:"successMessage"`
	ContextValues  any           `json:"contextValues"`
	StackTrace     any           `json:"stackTrace"`
	PossibleErrors any           `json:"possibleErrors"`
	Error          bool          `json:"error"`
}

func writeEnvelope(w http.ResponseWriter, httpStatus int, e envelope) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(httpStatus)
	_ = json.NewEncoder(w).Encode(e)
}

// fail answers an error envelope: HTTP 200, the envelope's status and one error.
func fail(w http.ResponseWriter, status int, code, msg string) {
	writeEnvelope(w, http.StatusOK, envelope{Status: status, Error: true,
		ErrorList: []errorItem{{Error: code, Message: msg}}})
}

func (h *handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Error("openiam request failed", "route", r.Pattern, "err", err)
	writeEnvelope(w, http.StatusInternalServerError, envelope{Status: 500, Error: true,
		ErrorList: []errorItem{{Error: CodeInternal, Message: "Something went wrong on our side; it has been logged."}}})
}

// ---- callers --------------------------------------------------------------------------------

// principal resolves the caller: an x-api-key or bearer API key, a bearer access token from the
// token endpoint, or no credential (the Host's tenant, else the default tenant, unless that
// tenant requires an API key). ok is false after an error answer was written.
func (h *handler) principal(w http.ResponseWriter, r *http.Request) (engine.Principal, bool) {
	key := r.Header.Get("x-api-key")
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, tok, ok := strings.Cut(a, " ")
		tok = strings.TrimSpace(tok)
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			fail(w, 401, CodeUnauthorized, "Send an API key (x-api-key or Authorization: Bearer).")
			return engine.Principal{}, false
		}
		if _, _, isKey := keys.ParseAPIKey(tok); !isKey && strings.Count(tok, ".") == 2 {
			p, err := h.eng.VerifyAccessToken(r.Context(), tok)
			return h.authResult(w, r, p, err)
		}
		key = tok
	}
	p, err := h.eng.SelfServicePrincipal(r.Context(), key, r.Host)
	return h.authResult(w, r, p, err)
}

func (h *handler) authResult(w http.ResponseWriter, r *http.Request, p engine.Principal, err error) (engine.Principal, bool) {
	switch {
	case errors.Is(err, engine.ErrAPIKeyRequired):
		fail(w, 401, CodeUnauthorized, "An API key is required for these endpoints.")
	case errors.Is(err, engine.ErrUnauthenticated):
		fail(w, 401, CodeUnauthorized, "The API key or token is invalid.")
	case err != nil:
		h.internal(w, r, err)
	default:
		return p, true
	}
	return engine.Principal{}, false
}

// readJSON decodes the body into dst: a JSON object of at most maxBody bytes. Fields otpd does
// not use are ignored (OpenIAM clients post whole beans); a field of the wrong type is not.
func readJSON(w http.ResponseWriter, r *http.Request, dst any) (string, bool) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return "The body is too large or could not be read.", false
	}
	body := bytes.TrimSpace(raw)
	if len(body) == 0 || body[0] != '{' {
		return "The body must be a JSON object.", false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(dst); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			return fmt.Sprintf("Field %s has the wrong type.", typ.Field), false
		}
		return "The body is not valid JSON.", false
	}
	if dec.More() {
		return "The body must be one JSON object.", false
	}
	return "", true
}

// ---- sending ----------------------------------------------------------------------------------

// emailBean is OpenIAM's EmailBean, as echoed in contextValues.emailAddressForCode.
type emailBean struct {
	ID          any    `json:"id"`
	BeanType    string `json:"beanType"`
	Operation   string `json:"operation"`
	Name        any    `json:"name"`
	Type        any    `json:"type"`
	TypeID      any    `json:"typeId"`
	Active      bool   `json:"active"`
	UserID      any    `json:"userId"`
	Published   bool   `json:"published"`
	Email       string `json:"email"`
	Description any    `json:"description"`
	Default     bool   `json:"default"`
	Public      bool   `json:"public"`
}

type emailContext struct {
	EmailMovingFactor   int64     `json:"emailMovingFactor"`
	EmailAddressForCode emailBean `json:"emailAddressForCode"`
}

// phoneBean is OpenIAM's PhoneBean, echoed in contextValues.phoneForCode.
type phoneBean struct {
	ID          any    `json:"id"`
	BeanType    string `json:"beanType"`
	Operation   string `json:"operation"`
	Name        any    `json:"name"`
	Type        any    `json:"type"`
	TypeID      any    `json:"typeId"`
	Active      bool   `json:"active"`
	UserID      any    `json:"userId"`
	Published   bool   `json:"published"`
	AreaCd      string `json:"areaCd"`
	CountryCd   string `json:"countryCd"`
	PhoneNbr    string `json:"phoneNbr"`
	PhoneExt    string `json:"phoneExt"`
	MdTypeID    string `json:"mdTypeId"`
	UsedForSMS  bool   `json:"usedForSMS"`
	Description any    `json:"description"`
	Default     bool   `json:"default"`
	Public      bool   `json:"public"`
}

type smsContext struct {
	SMSMovingFactor int64     `json:"smsMovingFactor"`
	PhoneForCode    phoneBean `json:"phoneForCode"`
}

func (h *handler) sendEmail(w http.ResponseWriter, r *http.Request) {
	p, ok := h.principal(w, r)
	if !ok {
		return
	}
	var req struct {
		Email *string `json:"email"`
	}
	if msg, ok := readJSON(w, r, &req); !ok {
		fail(w, 400, CodeInvalidRequest, msg)
		return
	}
	if req.Email == nil || strings.TrimSpace(*req.Email) == "" {
		fail(w, 400, CodeInvalidEmail, "An email address is required.")
		return
	}
	email := strings.TrimSpace(*req.Email)
	if _, ok := engine.NormalizeEmail(email); !ok {
		fail(w, 400, CodeInvalidEmail, "The email address is not valid.")
		return
	}
	code, ok := h.send(w, r, p, engine.ChannelEmail, email)
	if !ok {
		return
	}
	writeEnvelope(w, http.StatusOK, envelope{Status: 200, SuccessToken: &successToken{Message: "EMAIL_SENT"},
		ContextValues: emailContext{EmailMovingFactor: code.MovingFactor, EmailAddressForCode: emailBean{
			BeanType: "EmailBean", Operation: "NO_CHANGE", Active: true, Email: email}}})
}

func (h *handler) sendSMS(w http.ResponseWriter, r *http.Request) {
	p, ok := h.principal(w, r)
	if !ok {
		return
	}
	var req struct {
		AreaCd     string `json:"areaCd"`
		PhoneNbr   string `json:"phoneNbr"`
		PhoneExt   string `json:"phoneExt"`
		MdTypeID   string `json:"mdTypeId"`
		CountryCd  string `json:"countryCd"`
		UsedForSMS *bool  `json:"usedForSMS"`
		Published  *bool  `json:"published"`
	}
	if msg, ok := readJSON(w, r, &req); !ok {
		fail(w, 400, CodeInvalidRequest, msg)
		return
	}
	phone, ok := buildPhone(req.CountryCd, req.AreaCd, req.PhoneNbr)
	if !ok {
		fail(w, 400, CodeInvalidPhone, "The phone number is not valid: give countryCd, areaCd and phoneNbr as digits.")
		return
	}
	code, ok := h.send(w, r, p, engine.ChannelSMS, phone)
	if !ok {
		return
	}
	bean := phoneBean{BeanType: "PhoneBean", Operation: "NO_CHANGE", Active: true, AreaCd: req.AreaCd,
		CountryCd: req.CountryCd, PhoneNbr: req.PhoneNbr, PhoneExt: req.PhoneExt, MdTypeID: req.MdTypeID,
		UsedForSMS: req.UsedForSMS == nil || *req.UsedForSMS, Published: req.Published != nil && *req.Published}
	writeEnvelope(w, http.StatusOK, envelope{Status: 200, SuccessToken: &successToken{Message: "SMS_SENT"},
		ContextValues: smsContext{SMSMovingFactor: code.MovingFactor, PhoneForCode: bean}})
}

// buildPhone makes "+<countryCd><areaCd><phoneNbr>" from OpenIAM's phone parts; separators
// people type (spaces, dashes, dots, parentheses) are dropped, anything else is refused. The
// extension is not part of an SMS address.
func buildPhone(country, area, number string) (string, bool) {
	digits := func(s string, min, max int) (string, bool) {
		var b strings.Builder
		for _, c := range s {
			switch {
			case c >= '0' && c <= '9':
				b.WriteRune(c)
			case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
			default:
				return "", false
			}
		}
		return b.String(), b.Len() >= min && b.Len() <= max
	}
	cc, ok1 := digits(strings.TrimPrefix(strings.TrimSpace(country), "+"), 1, 3)
	ac, ok2 := digits(area, 0, 8)
	nb, ok3 := digits(number, 3, 14)
	if !ok1 || !ok2 || !ok3 {
		return "", false
	}
	e164, _, ok := engine.NormalizePhone("+" + cc + ac + nb)
	return e164, ok
}

// send starts the session and maps refusals; ok is false after an error answer was written.
func (h *handler) send(w http.ResponseWriter, r *http.Request, p engine.Principal, channel, to string) (*engine.SelfServiceCode, bool) {
	code, err := h.eng.SendSelfServiceCode(r.Context(), p, channel, to, h.m.EndUserIP(r))
	var (
		rl *engine.RateLimitError
		ve *engine.ValidationError
		vs engine.ValidationErrors
	)
	switch {
	case err == nil:
		return code, true
	case errors.Is(err, engine.ErrCountryNotAllowed):
		// The number is fine but its country may not receive codes: waiting will not help.
		fail(w, 400, CodeInvalidPhone, "The phone number is in a country that may not receive codes.")
	case errors.As(err, &rl):
		tooMany(w, rl, "Too many codes were requested")
	case errors.As(err, &vs), errors.As(err, &ve):
		if channel == engine.ChannelEmail {
			fail(w, 400, CodeInvalidEmail, "The email address is not valid.")
		} else {
			fail(w, 400, CodeInvalidPhone, "The phone number is not valid or may not receive codes.")
		}
	case errors.Is(err, engine.ErrChannelUnavailable):
		fail(w, 500, CodeChannelOff, "No delivery provider is configured for "+channel+".")
	default:
		h.internal(w, r, err)
	}
	return nil, false
}

// tooMany answers a limit's refusal: envelope status 429 and Retry-After.
func tooMany(w http.ResponseWriter, rl *engine.RateLimitError, what string) {
	secs := int(math.Ceil(rl.RetryAfter.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	fail(w, 429, CodeTooManyRequests, fmt.Sprintf("%s; try again in %d s.", what, secs))
}

// ---- checking ---------------------------------------------------------------------------------

// movingFactor accepts the moving factor as a JSON number or a string of digits.
type movingFactor struct {
	set   bool
	value int64
	ok    bool
}

func (m *movingFactor) UnmarshalJSON(b []byte) error {
	m.set = true
	s := string(bytes.TrimSpace(b))
	if s == "null" {
		m.set = false
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return nil
		}
		s = strings.TrimSpace(str)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	m.value, m.ok = v, err == nil && v > 0
	return nil
}

// codeText accepts the code as a JSON string or number (its digits as written).
type codeText struct {
	set bool
	s   string
}

func (c *codeText) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if s == "null" {
		return nil
	}
	c.set = true
	if strings.HasPrefix(s, `"`) {
		return json.Unmarshal(b, &c.s)
	}
	if _, err := strconv.ParseUint(s, 10, 64); err != nil {
		return &json.UnmarshalTypeError{Value: "non-numeric " + s, Type: reflect.TypeOf("")}
	}
	c.s = s
	return nil
}

func (h *handler) check(w http.ResponseWriter, r *http.Request) {
	p, ok := h.principal(w, r)
	if !ok {
		return
	}
	var req struct {
		EmailCode         codeText     `json:"emailCode"`
		EmailMovingFactor movingFactor `json:"emailMovingFactor"`
		SMSCode           codeText     `json:"smsCode"`
		SMSMovingFactor   movingFactor `json:"smsMovingFactor"`
	}
	if msg, ok := readJSON(w, r, &req); !ok {
		fail(w, 400, CodeInvalidRequest, msg)
		return
	}
	email := req.EmailCode.set || req.EmailMovingFactor.set
	sms := req.SMSCode.set || req.SMSMovingFactor.set
	var (
		channel string
		code    codeText
		mf      movingFactor
	)
	switch {
	case email && sms:
		fail(w, 400, CodeInvalidRequest, "Send either emailCode and emailMovingFactor or smsCode and smsMovingFactor.")
		return
	case email:
		channel, code, mf = engine.ChannelEmail, req.EmailCode, req.EmailMovingFactor
	case sms:
		channel, code, mf = engine.ChannelSMS, req.SMSCode, req.SMSMovingFactor
	default:
		fail(w, 400, CodeInvalidRequest, "Send emailCode and emailMovingFactor, or smsCode and smsMovingFactor.")
		return
	}
	if !code.set || !mf.set {
		fail(w, 400, CodeInvalidRequest, "Both the code and its moving factor are required.")
		return
	}
	if !mf.ok {
		fail(w, 400, CodeUnknownFactor, "The moving factor is not known.")
		return
	}
	res, err := h.eng.CheckSelfServiceCode(r.Context(), p, channel, mf.value, code.s, h.m.EndUserIP(r))
	var rl *engine.RateLimitError
	switch {
	case errors.As(err, &rl):
		tooMany(w, rl, "Too many codes were checked from this address")
		return
	case errors.Is(err, engine.ErrNotFound):
		fail(w, 500, CodeUnknownFactor, "The moving factor is not known.")
		return
	case errors.Is(err, engine.ErrMalformedCode):
		// It cannot match; no try is spent on it.
		fail(w, 500, CodeNotEqual, MsgCodeNotEqual)
		return
	case err != nil:
		h.internal(w, r, err)
		return
	}
	switch res.Outcome {
	case engine.OutcomeVerified:
		writeEnvelope(w, http.StatusOK, envelope{Status: 200})
	case engine.OutcomeWrong, engine.OutcomeExhausted:
		fail(w, 500, CodeNotEqual, MsgCodeNotEqual)
	default:
		switch res.Session.Status {
		case store.StatusFailed:
			fail(w, 500, CodeAttemptsExceeded, "Too many wrong codes were entered; ask for a new code.")
		case store.StatusVerified:
			fail(w, 500, CodeAlreadyUsed, "This code was used already; ask for a new code.")
		default: // expired, canceled
			fail(w, 500, CodeExpired, "The code has expired; ask for a new code.")
		}
	}
}

// ---- logout -----------------------------------------------------------------------------------

// revoke is POST /idp/oauth2/revoke: RFC 7009 with the token in the form body, and the
// OPENIAM_AUTH_TOKEN cookie revoked too. Holding a token is enough to revoke it; unknown tokens
// are ignored, as RFC 7009 asks.
func (h *handler) revoke(w http.ResponseWriter, r *http.Request) {
	var tokens []string
	if mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded") {
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			oauthFail(w, "invalid_request", "The body is too large or could not be read.")
			return
		}
		form, err := url.ParseQuery(string(raw))
		if err != nil || len(form["token"]) > 1 {
			oauthFail(w, "invalid_request", "The body is not a valid form.")
			return
		}
		if t := form.Get("token"); t != "" {
			tokens = append(tokens, t)
		}
	}
	if c, err := r.Cookie(AuthCookie); err == nil && c.Value != "" {
		tokens = append(tokens, c.Value)
	}
	if len(tokens) == 0 {
		oauthFail(w, "invalid_request", "Send the token in the form body (token=…) or the "+AuthCookie+" cookie.")
		return
	}
	for _, t := range tokens {
		if err := h.eng.RevokeToken(r.Context(), nil, t); err != nil {
			h.internal(w, r, err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: AuthCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	writeEnvelope(w, http.StatusOK, envelope{Status: 200})
}

func oauthFail(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
