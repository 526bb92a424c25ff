package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/engine"
)

// Problem is an RFC 9457 problem detail. Code is a stable machine-readable extension member.
type Problem struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail,omitempty"`
	Code     string       `json:"code"`
	Errors   []FieldError `json:"errors,omitempty"`
	Session  string       `json:"session_status,omitempty"` // for finished sessions
	Instance string       `json:"instance,omitempty"`

	retryAfter time.Duration
	allow      string
	cause      error // logged, never sent
}

// FieldError names one invalid field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (p *Problem) Error() string {
	if p.cause != nil {
		return p.Code + ": " + p.cause.Error()
	}
	return p.Code + ": " + p.Detail
}

func problem(status int, code, detail string) *Problem {
	return &Problem{Type: "urn:otpd:problem:" + code, Title: http.StatusText(status), Status: status, Code: code, Detail: detail}
}

// writeProblem sends p as application/problem+json.
func writeProblem(w http.ResponseWriter, p *Problem) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if p.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(p.retryAfter.Seconds()))))
	}
	if p.allow != "" {
		h.Set("Allow", p.allow)
	}
	if p.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="otpd"`)
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// toProblem maps an error from a handler (an engine outcome, a decode error, or something
// unexpected) to what the client sees. Unexpected errors become a bare 500 whose cause is only
// logged.
func toProblem(err error) *Problem {
	var (
		p  *Problem
		ve *engine.ValidationError
		vs engine.ValidationErrors
		fe *engine.FinishedError
		rl *engine.RateLimitError
	)
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &vs):
		p = problem(http.StatusBadRequest, "invalid_request", "The request has invalid fields.")
		for _, v := range vs {
			p.Errors = append(p.Errors, FieldError{v.Field, v.Message})
		}
		return p
	case errors.As(err, &ve):
		p = problem(http.StatusBadRequest, "invalid_request", "The request has invalid fields.")
		p.Errors = []FieldError{{ve.Field, ve.Message}}
		return p
	case errors.Is(err, engine.ErrMalformedCode):
		p = problem(http.StatusBadRequest, "malformed_code", strings.TrimPrefix(err.Error(), "malformed code: "))
		p.Errors = []FieldError{{"code", p.Detail}}
		return p
	case errors.As(err, &fe):
		p = problem(http.StatusConflict, "session_finished", "The verification is "+fe.Status+".")
		p.Session = fe.Status
		return p
	case errors.As(err, &rl):
		p = problem(http.StatusTooManyRequests, "rate_limited", rateDetail(rl))
		p.retryAfter = rl.RetryAfter
		return p
	case errors.Is(err, engine.ErrMaxSends):
		return problem(http.StatusTooManyRequests, "max_sends", "This verification has used all its sends; start a new one.")
	case errors.Is(err, engine.ErrNotFound):
		return problem(http.StatusNotFound, "not_found", "No such resource.")
	case errors.Is(err, engine.ErrUnauthenticated):
		return problem(http.StatusUnauthorized, "unauthorized", "A valid API key is required (Authorization: Bearer <key> or x-api-key).")
	case errors.Is(err, engine.ErrForbidden):
		return problem(http.StatusForbidden, "forbidden", "This API key may not do that; an admin key is required.")
	case errors.Is(err, engine.ErrChannelUnavailable):
		return problem(http.StatusUnprocessableEntity, "channel_unavailable", strings.TrimPrefix(err.Error(), "channel unavailable: "))
	case errors.Is(err, engine.ErrIdempotencyMismatch):
		return problem(http.StatusUnprocessableEntity, "idempotency_mismatch", "This Idempotency-Key was used with a different request.")
	case errors.Is(err, engine.ErrConflict):
		return problem(http.StatusConflict, "conflict", strings.TrimPrefix(err.Error(), "conflict: "))
	}
	p = problem(http.StatusInternalServerError, "internal", "Something went wrong on our side; it has been logged.")
	p.cause = err
	return p
}

func rateDetail(rl *engine.RateLimitError) string {
	secs := int(math.Ceil(rl.RetryAfter.Seconds()))
	if rl.Scope == "cooldown" {
		return fmt.Sprintf("A code was sent moments ago; wait %d s before asking for another.", secs)
	}
	return fmt.Sprintf("Too many codes sent (%s limit); try again in %d s.", rl.Scope, secs)
}

// maxBody bounds every JSON request body.
const maxBody = 64 << 10

// decode reads exactly one JSON object into dst, refusing anything but an object (null, arrays),
// unknown fields, wrong types, trailing data and bodies over maxBody. An empty body decodes as {}
// when allowEmpty.
func decode(w http.ResponseWriter, r *http.Request, dst any, allowEmpty bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		mt = strings.TrimSpace(strings.ToLower(mt))
		if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return problem(http.StatusUnsupportedMediaType, "unsupported_media_type", "Send the body as application/json.")
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return problem(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("The body is larger than %d bytes.", maxBody))
		}
		return problem(http.StatusBadRequest, "invalid_json", "The body could not be read.")
	}
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 {
		if allowEmpty {
			return nil
		}
		return problem(http.StatusBadRequest, "invalid_json", "The body must be a JSON object.")
	}
	if trimmed[0] != '{' {
		return problem(http.StatusBadRequest, "invalid_json", "The body must be a JSON object.")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	err = dec.Decode(dst)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil {
		return nil
	}
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &typ):
		p := problem(http.StatusBadRequest, "invalid_json", "A field has the wrong type.")
		field := typ.Field
		if field == "" {
			field = "(body)"
		}
		p.Errors = []FieldError{{field, "must be " + jsonKind(typ.Type.Kind().String())}}
		return p
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return problem(http.StatusBadRequest, "invalid_json", "The body is not valid JSON.")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		p := problem(http.StatusBadRequest, "invalid_json", "The body has a field this endpoint does not know.")
		p.Errors = []FieldError{{name, "unknown field"}}
		return p
	}
	return problem(http.StatusBadRequest, "invalid_json", "The body is not a valid JSON object: "+err.Error())
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	}
	return "of another type"
}

// query parses the query string strictly: a malformed one is an error, not silently dropped.
func query(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &engine.ValidationError{Field: "(query)", Message: "the query string is malformed"}
	}
	return q, nil
}

// pageLimit reads a list's "limit" parameter: def when it is absent, else a whole number 1–500.
func pageLimit(q url.Values, def int) (int, *engine.ValidationError) {
	v := q.Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 500 {
		return 0, &engine.ValidationError{Field: "limit", Message: "must be 1–500"}
	}
	return n, nil
}

// seconds turns a whole number of seconds from a request into a Duration, saturating instead
// of overflowing (a huge value then fails the engine's range check instead of wrapping into a
// valid-looking one).
func seconds(n int) time.Duration {
	const maxSeconds = int(math.MaxInt64 / int64(time.Second))
	switch {
	case n > maxSeconds:
		return time.Duration(math.MaxInt64)
	case n < -maxSeconds:
		return time.Duration(math.MinInt64)
	}
	return time.Duration(n) * time.Second
}

// writeJSON sends v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
