package egress

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the dependency families on /metrics; nil-safe so that tests
// may build dependencies without a registry.
type metrics struct {
	calls    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	breaker  *prometheus.GaugeVec
	fallback *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medic_dependency_calls_total",
			Help: "Calls (HTTP) or connections (TCP) through a dependency listener, by outcome: ok, error, timeout, open (breaker), shed (bulkhead), canceled."},
			[]string{"service", "dependency", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "medic_dependency_call_duration_seconds",
			Help:    "Time from a call's arrival at the dependency listener to its response headers (HTTP) or connection (TCP), fallbacks included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30}},
			[]string{"service", "dependency"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "medic_dependency_breaker_state",
			Help: "The dependency's circuit breaker: 0 closed, 1 half-open, 2 open."}, []string{"service", "dependency"}),
		fallback: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medic_dependency_fallbacks_total",
			Help: "Failed calls answered with a fallback, by kind: last-good, file, static."}, []string{"service", "dependency", "kind"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.latency, m.breaker, m.fallback} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) call(svc, dep, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(svc, dep, outcome).Inc()
	m.latency.WithLabelValues(svc, dep).Observe(took.Seconds())
}

func (m *metrics) state(svc, dep string, s State) {
	if m != nil {
		m.breaker.WithLabelValues(svc, dep).Set(float64(s))
	}
}

func (m *metrics) fellBack(svc, dep, kind string) {
	if m != nil {
		m.fallback.WithLabelValues(svc, dep, kind).Inc()
	}
}

// forget deletes a dependency's label sets (its listener is gone).
func (m *metrics) forget(svc, dep string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"service": svc, "dependency": dep}
	m.calls.DeletePartialMatch(l)
	m.latency.DeletePartialMatch(l)
	m.breaker.DeletePartialMatch(l)
	m.fallback.DeletePartialMatch(l)
}

// window keeps the last n latencies for the status's quantiles.
type window struct {
	mu   sync.Mutex
	v    []float64
	next int
	full bool
}

func newWindow(n int) *window { return &window{v: make([]float64, n)} }

func (w *window) add(x float64) {
	w.mu.Lock()
	w.v[w.next] = x
	w.next = (w.next + 1) % len(w.v)
	w.full = w.full || w.next == 0
	w.mu.Unlock()
}

func (w *window) quantile(q float64) float64 {
	w.mu.Lock()
	n := w.next
	if w.full {
		n = len(w.v)
	}
	s := slices.Clone(w.v[:n])
	w.mu.Unlock()
	if len(s) == 0 {
		return 0
	}
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
