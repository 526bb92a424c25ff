package bsg

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store"
)

// BSG's error shapes, in its words:
//
//	{"message": "TwoFA Service error.", "errors": ["Authentication not found"]}       (404, 422)
//	{"message": "The given data was invalid.", "errors": ["Template is not available."]} (422)
//	{"message": "The given data was invalid.", "errors": {"channel": ["The value …"]}}  (422)
//	{"message": "Too many duplicate request detected"}                                (429)
//	{"message": "Model not found"}                                                    (404, template get)

const (
	msgService = "TwoFA Service error."
	msgInvalid = "The given data was invalid."

	msgAuthNotFound  = "Authentication not found"
	msgWrongCode     = "The code does not match the expected value"
	msgDuplicate     = "Too many duplicate request detected"
	msgTooMany       = "Too many requests"
	msgTplNotFound   = "Template not found"
	msgModelNotFound = "Model not found"
)

// apiError is an answer other than success.
type apiError struct {
	status     int
	body       any
	retryAfter time.Duration
	cause      error // logged for 5xx, never sent
}

func (e *apiError) Error() string {
	b, _ := json.Marshal(e.body)
	return strconv.Itoa(e.status) + " " + string(b)
}

type listBody struct {
	Message string   `json:"message"`
	Errors  []string `json:"errors"`
}

type fieldsBody struct {
	Message string      `json:"message"`
	Errors  fieldErrors `json:"errors"`
}

type messageBody struct {
	Message string `json:"message"`
}

// service is {"message": "TwoFA Service error.", "errors": [...]}.
func service(status int, msgs ...string) *apiError {
	return &apiError{status: status, body: listBody{msgService, msgs}}
}

// invalidData is a 422 {"message": "The given data was invalid.", "errors": [...]}.
func invalidData(msgs ...string) *apiError {
	return &apiError{status: http.StatusUnprocessableEntity, body: listBody{msgInvalid, msgs}}
}

// invalidFields is a 422 with errors per field.
func invalidFields(f fieldErrors) *apiError {
	return &apiError{status: http.StatusUnprocessableEntity, body: fieldsBody{msgInvalid, f}}
}

// invalidList is a 422 with the field errors as "field: message" in a list.
func invalidList(f fieldErrors) *apiError {
	var msgs []string
	for _, name := range sortedKeys(f) {
		for _, m := range f[name] {
			msgs = append(msgs, name+": "+m)
		}
	}
	return invalidData(msgs...)
}

func tooMany(msg string, retry time.Duration) *apiError {
	return &apiError{status: http.StatusTooManyRequests, body: messageBody{msg}, retryAfter: retry}
}

func msgAnswer(status int, msg string) *apiError {
	return &apiError{status: status, body: messageBody{msg}}
}

// badRequest answers a body that is not a JSON object at all.
func badRequest(msg string) *apiError { return msgAnswer(http.StatusBadRequest, msg) }

func internal(cause error) *apiError {
	return &apiError{status: http.StatusInternalServerError, body: messageBody{"Internal Server Error"}, cause: cause}
}

// finishedMessages are BSG's words for a session that is no longer pending.
var finishedMessages = map[string]string{
	store.StatusExpired:  "Authentication expired",
	store.StatusFailed:   "Authentication failed status",
	store.StatusCanceled: "Authentication canceled status",
	store.StatusVerified: "Authentication verified status",
}

// finished is the 422 for a session in a final status.
func finished(status string) *apiError {
	return service(http.StatusUnprocessableEntity, finishedMessages[status])
}

// engineFields maps the engine's field names to BSG's.
var engineFields = map[string]string{
	"to": "recipient", "code_length": "code_digits", "ttl_seconds": "code_lifetime",
	"max_attempts": "code_max_tries", "client_ip": "X-Otpd-Client-Ip",
}

// sendRefusals are the messaging outcomes answered as 422 "The given data was invalid.".
var sendRefusals = []struct {
	err error
	msg string
}{
	{engine.ErrTemplateNotFound, "Template is not available."},
	{engine.ErrTemplateNotApproved, "Invalid template status"},
	{engine.ErrTemplateCountry, "The recipients phone number is located in a country that is not on the list of countries allowed for the selected template. Please register new message template."},
	{engine.ErrCountryNotAllowed, "The recipients phone number is located in a country that is not on the list of countries allowed for your account."},
	{engine.ErrPendingLimit, "Authentication limit with status pending"},
	{engine.ErrDailyCap, "Total authentication limit"},
	{engine.ErrSpendCap, "Insufficient funds"},
	{engine.ErrChannelUnavailable, "User channel inactive"},
}

// fromEngine maps an engine error of a session operation to BSG's answer.
func fromEngine(err error) *apiError {
	var (
		ae *apiError
		vs engine.ValidationErrors
		ve *engine.ValidationError
		rl *engine.RateLimitError
	)
	if errors.As(err, &ae) {
		return ae
	}
	if errors.Is(err, engine.ErrDuplicateRequest) {
		return tooMany(msgDuplicate, retryOf(err))
	}
	for _, r := range sendRefusals {
		if errors.Is(err, r.err) {
			return invalidData(r.msg)
		}
	}
	if status, ok := engine.IsFinished(err); ok {
		return finished(status)
	}
	switch {
	case errors.As(err, &vs):
		f := fieldErrors{}
		for _, v := range vs {
			f.add(wireField(v.Field), v.Message)
		}
		return invalidFields(f)
	case errors.As(err, &ve):
		return invalidFields(fieldErrors{wireField(ve.Field): {ve.Message}})
	case errors.As(err, &rl):
		return tooMany(msgTooMany, rl.RetryAfter)
	case errors.Is(err, engine.ErrMaxSends):
		return service(http.StatusUnprocessableEntity, "Authentication resend limit exceeded")
	case errors.Is(err, engine.ErrNotFound):
		return service(http.StatusNotFound, msgAuthNotFound)
	case errors.Is(err, engine.ErrConflict):
		return tooMany(msgTooMany, time.Second) // the session changed under many concurrent calls: retry
	case errors.Is(err, engine.ErrUnauthenticated), errors.Is(err, engine.ErrInvalidToken):
		return msgAnswer(http.StatusUnauthorized, "Invalid JWT Token")
	case errors.Is(err, engine.ErrForbidden):
		return msgAnswer(http.StatusForbidden, "Access Denied.")
	}
	return internal(err)
}

func retryOf(err error) time.Duration {
	var rl *engine.RateLimitError
	if errors.As(err, &rl) {
		return rl.RetryAfter
	}
	return 0
}

func wireField(f string) string {
	if w, ok := engineFields[f]; ok {
		return w
	}
	return f
}

// write sends e as JSON with its status and, for 429, Retry-After.
func (e *apiError) write(w http.ResponseWriter) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.retryAfter.Seconds()))))
	}
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="otpd"`)
	}
	writeJSON(w, e.status, e.body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func sortedKeys(f fieldErrors) []string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ { // tiny maps: insertion sort
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
