package engine

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts engine outcomes for Prometheus. Labels never carry a recipient, code or key.
// A nil *Metrics records nothing.
type Metrics struct {
	started *prometheus.CounterVec
	checks  *prometheus.CounterVec
	refusal *prometheus.CounterVec
	purged  *prometheus.CounterVec
}

// NewMetrics registers the engine's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_verifications_started_total", Help: "Verification sessions started, by channel.",
		}, []string{"channel"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_verification_checks_total", Help: "Code checks, by channel and outcome.",
		}, []string{"channel", "outcome"}),
		refusal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_send_refusals_total", Help: "Sends refused by a limit, by limit scope.",
		}, []string{"scope"}),
		purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_purged_rows_total", Help: "Rows deleted by the janitor, by kind.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.started, m.checks, m.refusal, m.purged)
	return m
}

func (m *Metrics) startedInc(channel string) {
	if m != nil {
		m.started.WithLabelValues(channel).Inc()
	}
}

func (m *Metrics) checked(channel string, o Outcome) {
	if m != nil {
		m.checks.WithLabelValues(channel, o.String()).Inc()
	}
}

func (m *Metrics) refused(err error) {
	var rl *RateLimitError
	if m != nil && errors.As(err, &rl) {
		m.refusal.WithLabelValues(rl.Scope).Inc()
	}
}

func (m *Metrics) purgedAdd(kind string, n int64) {
	if m != nil && n > 0 {
		m.purged.WithLabelValues(kind).Add(float64(n))
	}
}

// String names an outcome for metrics and logs.
func (o Outcome) String() string {
	switch o {
	case OutcomeVerified:
		return "verified"
	case OutcomeWrong:
		return "wrong"
	case OutcomeExhausted:
		return "exhausted"
	case OutcomeFinished:
		return "finished"
	}
	return "unknown"
}
