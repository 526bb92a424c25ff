// Package deliver hands outgoing messages to providers. The engine writes messages into the
// outbox (the messages table) in the same transaction as the challenge they belong to; the Worker
// in this package claims them, opens the sealed body, calls the channel's Sender, and records
// every attempt, retrying with backoff up to a bound.
package deliver

import (
	"context"
	"errors"
	"fmt"
)

// Content is the plaintext of a message. It is sealed (keys.Keyring, associated data = the
// message id) before it is stored in the outbox, because it contains a code.
type Content struct {
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text"`
	HTML    string `json:"html,omitempty"`
}

// Message is what a Sender sends.
type Message struct {
	ID       string // outbox message id; providers get it as an idempotency key / Message-ID
	TenantID string
	Channel  string // email, sms, …
	To       string
	Content
}

// Sender delivers messages on one channel through one provider.
type Sender interface {
	// Name identifies the provider in attempts, metrics and logs.
	Name() string
	// Send delivers m. It returns the provider's message id when there is one. An error wrapped
	// with Permanent is not retried.
	Send(ctx context.Context, m Message) (providerID string, err error)
}

// permanentError marks errors that retrying cannot fix (bad address, rejected by policy).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err so the worker does not retry it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err (or an error it wraps) was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// ErrNoSender is returned when no Sender is configured for a channel.
var ErrNoSender = errors.New("deliver: no provider configured for channel")

// Registry maps channels to Senders.
type Registry map[string]Sender

// For returns the Sender of a channel.
func (r Registry) For(channel string) (Sender, error) {
	s, ok := r[channel]
	if !ok || s == nil {
		return nil, fmt.Errorf("%w %q", ErrNoSender, channel)
	}
	return s, nil
}
