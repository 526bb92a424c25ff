package deliver

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of one delivery attempt, as counted in metrics.
const (
	OutcomeSent   = "sent"   // the provider accepted the message
	OutcomeRetry  = "retry"  // failed, will be tried again
	OutcomeFailed = "failed" // failed for good
)

// Metrics counts delivery attempts. A nil *Metrics counts nothing, so the worker needs no checks.
// Labels are low-cardinality (channel, provider, outcome): never a recipient or a tenant.
type Metrics struct {
	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics creates the delivery metrics and registers them with reg (nil: not registered).
// Registering twice with one registry reuses the collectors registered first.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "otpd",
			Subsystem: "delivery",
			Name:      "attempts_total",
			Help:      "Delivery attempts by channel, provider and outcome (sent, retry, failed).",
		}, []string{"channel", "provider", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "otpd",
			Subsystem: "delivery",
			Name:      "send_duration_seconds",
			Help:      "Time spent in a provider's Send, by channel and provider.",
			Buckets:   []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"channel", "provider"}),
	}
	if reg != nil {
		m.attempts = register(reg, m.attempts)
		m.duration = register(reg, m.duration)
	}
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a programming error: a clashing metric of another shape
	}
	return c
}

// Attempt counts one attempt's outcome. provider is "" when no provider was found.
func (m *Metrics) Attempt(channel, provider, outcome string) {
	if m == nil {
		return
	}
	if provider == "" {
		provider = "none"
	}
	m.attempts.WithLabelValues(channel, provider, outcome).Inc()
}

// SendDuration observes how long a provider's Send took.
func (m *Metrics) SendDuration(channel, provider string, d time.Duration) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(channel, provider).Observe(d.Seconds())
}
