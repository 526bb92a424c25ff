package engine

import (
	"errors"
	"strings"

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
			Name: "otpd_verifications_started_total", Help: "Verification sessions started, by channel and destination country (phone channels).",
		}, []string{"channel", "country"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_verification_checks_total", Help: "Code checks, by channel, destination country (phone channels) and outcome.",
		}, []string{"channel", "country", "outcome"}),
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

// startedInc counts a started session. The country label (ISO 3166 alpha-2 of a phone
// recipient, "" otherwise) makes conversion — verified ÷ started — watchable per destination:
// SMS pumping shows as sends to one country that are never verified (SECURITY.md 28; see
// docs/monitoring.md for the alert rule).
func (m *Metrics) startedInc(channel, recipient string) {
	if m != nil {
		m.started.WithLabelValues(channel, countryLabel(recipient)).Inc()
	}
}

func (m *Metrics) checked(channel, recipient string, o Outcome) {
	if m != nil {
		m.checks.WithLabelValues(channel, countryLabel(recipient), o.String()).Inc()
	}
}

// countryLabel is the region of an E.164 recipient, or "" (emails, handles). The label set is
// bounded by the number of regions.
func countryLabel(recipient string) string {
	if !strings.HasPrefix(recipient, "+") {
		return ""
	}
	_, region, ok := NormalizePhone(recipient)
	if !ok {
		return ""
	}
	return region
}

func (m *Metrics) refused(err error) {
	if m == nil {
		return
	}
	var rl *RateLimitError
	if s := refusalScope(err); s != "" { // messaging refusals, the country one included (no RateLimitError)
		m.refusal.WithLabelValues(s).Inc()
	} else if errors.As(err, &rl) {
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
