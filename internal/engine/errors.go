package engine

import (
	"errors"
	"fmt"
	"time"
)

// Domain outcomes. Each surface maps them to its own codes and words in one table.
var (
	// ErrNotFound: the thing does not exist in the caller's tenant (other tenants' rows are
	// indistinguishable from missing ones).
	ErrNotFound = errors.New("not found")
	// ErrInvalid wraps validation failures; see ValidationError for the field.
	ErrInvalid = errors.New("invalid request")
	// ErrMalformedCode: the submitted code is not exactly the session's number of ASCII digits.
	// No try is spent.
	ErrMalformedCode = errors.New("malformed code")
	// ErrFinished: the session is no longer pending; see FinishedError for its status.
	ErrFinished = errors.New("session finished")
	// ErrMaxSends: the session has used all its sends.
	ErrMaxSends = errors.New("send limit of this session reached")
	// ErrRateLimited: a send limit or the resend cooldown refused the request; see RateLimitError.
	ErrRateLimited = errors.New("rate limited")
	// ErrChannelUnavailable: no delivery provider is configured for the channel.
	ErrChannelUnavailable = errors.New("channel unavailable")
	// ErrIdempotencyMismatch: the Idempotency-Key was used before with a different request.
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	// ErrForbidden: the credential's role may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthenticated: missing, unknown, malformed or revoked credential.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrConflict: a unique attribute is taken, or the resource changed concurrently.
	ErrConflict = errors.New("conflict")
)

// ValidationError names the offending field.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }
func (e *ValidationError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// ValidationErrors collects several field errors.
type ValidationErrors []*ValidationError

func (e ValidationErrors) Error() string {
	if len(e) == 0 {
		return "invalid request"
	}
	return e[0].Error()
}
func (e ValidationErrors) Unwrap() error { return ErrInvalid }

// FinishedError says why a session can no longer be used.
type FinishedError struct{ Status string }

func (e *FinishedError) Error() string { return "session " + e.Status }
func (e *FinishedError) Unwrap() error { return ErrFinished }

// RateLimitError says which limit refused and when to try again.
type RateLimitError struct {
	Scope      string // recipient | ip | application | tenant | cooldown
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%s limit reached, retry after %s", e.Scope, e.RetryAfter.Round(time.Second))
}
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }
