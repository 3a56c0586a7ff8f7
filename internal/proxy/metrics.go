package proxy

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus series. Labels are service and
// instance only (bounded cardinality); an instance's series are deleted when
// it is removed, a service's when its proxy stops. The hot path does not look
// series up per request (a hash of the labels and a lock shared by every
// core): it keeps them resolved, and looks them up again after any deletion
// of series (seriesGen), so that a proxy that stops (and deletes its
// service's series) cannot leave another proxy of the same service, started
// by a reload, counting into series that are no longer exported.
type metrics struct {
	service string
	v       *vecs
	svc     atomic.Pointer[serviceSeries]
}

// seriesGen counts deletions of series by any proxy of the process: a
// resolved series older than the last deletion is looked up again.
var seriesGen atomic.Uint64

// serviceSeries are one service's series, resolved at generation gen.
type serviceSeries struct {
	gen                                          uint64
	requests, errors, retries, shed, rateLimited prometheus.Counter
	duration                                     prometheus.Observer
	inflight, limit                              prometheus.Gauge
}

// instanceSeries are one instance's series, resolved at generation gen
// (cached on its backend).
type instanceSeries struct {
	gen              uint64
	requests, errors prometheus.Counter
	duration         prometheus.Observer
}

// series returns the service's series, looked up again after a deletion.
func (m *metrics) series() *serviceSeries {
	g := seriesGen.Load()
	if s := m.svc.Load(); s != nil && s.gen == g {
		return s
	}
	v := m.v
	s := &serviceSeries{ // g was read before the lookups: a deletion during them shows as a newer generation
		gen:         g,
		requests:    v.requests.WithLabelValues(m.service),
		errors:      v.errors.WithLabelValues(m.service),
		retries:     v.retries.WithLabelValues(m.service),
		shed:        v.shed.WithLabelValues(m.service),
		rateLimited: v.rateLimited.WithLabelValues(m.service),
		duration:    v.duration.WithLabelValues(m.service),
		inflight:    v.inflight.WithLabelValues(m.service),
		limit:       v.limit.WithLabelValues(m.service),
	}
	m.svc.Store(s)
	return s
}

func (m *metrics) requests() prometheus.Counter    { return m.series().requests }
func (m *metrics) errors() prometheus.Counter      { return m.series().errors }
func (m *metrics) retries() prometheus.Counter     { return m.series().retries }
func (m *metrics) shed() prometheus.Counter        { return m.series().shed }
func (m *metrics) rateLimited() prometheus.Counter { return m.series().rateLimited }
func (m *metrics) class(name, result string) prometheus.Counter {
	return m.v.classRequests.WithLabelValues(m.service, name, result)
}
func (m *metrics) duration() prometheus.Observer { return m.series().duration }
func (m *metrics) inflight() prometheus.Gauge    { return m.series().inflight }
func (m *metrics) limit() prometheus.Gauge       { return m.series().limit }

// try counts one try (tcp mode: connection attempt) on instance b.
func (m *metrics) try(b *backend, failed bool, d time.Duration) {
	g := seriesGen.Load()
	s := b.series.Load()
	if s == nil || s.gen != g {
		v := m.v
		s = &instanceSeries{
			gen:      g,
			requests: v.instRequests.WithLabelValues(m.service, b.id),
			errors:   v.instErrors.WithLabelValues(m.service, b.id),
			duration: v.instDuration.WithLabelValues(m.service, b.id),
		}
		b.series.Store(s)
	}
	s.requests.Inc()
	if failed {
		s.errors.Inc()
	}
	s.duration.Observe(d.Seconds())
}

func (m *metrics) ejection(id string) { m.v.instEjections.WithLabelValues(m.service, id).Inc() }

// addInstance creates an instance's series at zero, so that they exist before its first try.
func (m *metrics) addInstance(id string) {
	m.v.instRequests.WithLabelValues(m.service, id)
	m.v.instErrors.WithLabelValues(m.service, id)
	m.v.instEjections.WithLabelValues(m.service, id)
	m.v.instDuration.WithLabelValues(m.service, id)
}

type vecs struct {
	requests, errors, retries, shed, rateLimited *prometheus.CounterVec
	duration                                     *prometheus.HistogramVec
	inflight, limit                              *prometheus.GaugeVec
	instRequests, instErrors, instEjections      *prometheus.CounterVec
	instDuration                                 *prometheus.HistogramVec
	classRequests                                *prometheus.CounterVec
}

// latencyBuckets reach from half a millisecond (a proxied loopback hop) to 10 s.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newVecs() *vecs {
	svc := []string{"service"}
	inst := []string{"service", "instance"}
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	hist := func(name, help string, labels []string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets}, labels)
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, svc)
	}
	return &vecs{
		requests:      counter("medic_proxy_requests_total", "Client requests (tcp mode: connections) received, including refused ones.", svc),
		errors:        counter("medic_proxy_errors_total", "Client requests answered with a 5xx status or not answered.", svc),
		retries:       counter("medic_proxy_retries_total", "Tries repeated on another instance.", svc),
		shed:          counter("medic_proxy_shed_total", "Requests refused with 503 by the concurrency limit.", svc),
		rateLimited:   counter("medic_proxy_rate_limited_total", "Requests refused with 429 by a per-client rate limit.", svc),
		duration:      hist("medic_proxy_request_duration_seconds", "Time from a client request's arrival to the end of its response.", svc),
		inflight:      gauge("medic_proxy_inflight_requests", "Requests admitted and not yet answered."),
		limit:         gauge("medic_proxy_concurrency_limit", "Current adaptive concurrency limit."),
		instRequests:  counter("medic_proxy_instance_requests_total", "Tries (tcp mode: connections) sent to an instance.", inst),
		instErrors:    counter("medic_proxy_instance_errors_total", "Tries that failed at an instance: connect error, reset, timeout or 5xx.", inst),
		instEjections: counter("medic_proxy_instance_ejections_total", "Times an instance was ejected by outlier detection.", inst),
		instDuration:  hist("medic_proxy_instance_request_duration_seconds", "Time of one try to an instance, until its response headers.", inst),
		classRequests: counter("medic_proxy_class_requests_total", "Client requests by client class and result: admitted, shed (503, no seat), rate_limited (429) or breaker_open (503, the class's own breaker).", []string{"service", "class", "result"}),
	}
}

// register adds the vectors to reg, sharing those another proxy registered first.
func (v *vecs) register(reg prometheus.Registerer) error {
	for _, c := range []*prometheus.CounterVec{v.requests, v.errors, v.retries, v.shed, v.rateLimited, v.instRequests, v.instErrors, v.instEjections, v.classRequests} {
		if err := registerShared(reg, c, func(e prometheus.Collector) { *c = *e.(*prometheus.CounterVec) }); err != nil {
			return err
		}
	}
	for _, h := range []*prometheus.HistogramVec{v.duration, v.instDuration} {
		if err := registerShared(reg, h, func(e prometheus.Collector) { *h = *e.(*prometheus.HistogramVec) }); err != nil {
			return err
		}
	}
	for _, g := range []*prometheus.GaugeVec{v.inflight, v.limit} {
		if err := registerShared(reg, g, func(e prometheus.Collector) { *g = *e.(*prometheus.GaugeVec) }); err != nil {
			return err
		}
	}
	return nil
}

func registerShared(reg prometheus.Registerer, c prometheus.Collector, adopt func(prometheus.Collector)) error {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		adopt(are.ExistingCollector)
		return nil
	}
	return err
}

func newMetrics(service string, reg prometheus.Registerer) (*metrics, error) {
	v := newVecs()
	if reg != nil {
		if err := v.register(reg); err != nil {
			return nil, err
		}
	}
	return &metrics{service: service, v: v}, nil
}

// deleteInstance drops an instance's series.
func (m *metrics) deleteInstance(id string) {
	v := m.v
	for _, c := range []*prometheus.CounterVec{v.instRequests, v.instErrors, v.instEjections} {
		c.DeleteLabelValues(m.service, id)
	}
	v.instDuration.DeleteLabelValues(m.service, id)
	seriesGen.Add(1) // after the deletion: a lookup in between is looked up again
}

// deleteService drops every series of this proxy's service.
func (m *metrics) deleteService() {
	v := m.v
	l := prometheus.Labels{"service": m.service}
	for _, c := range []*prometheus.CounterVec{v.requests, v.errors, v.retries, v.shed, v.rateLimited, v.instRequests, v.instErrors, v.instEjections, v.classRequests} {
		c.DeletePartialMatch(l)
	}
	v.duration.DeletePartialMatch(l)
	v.instDuration.DeletePartialMatch(l)
	v.inflight.DeletePartialMatch(l)
	v.limit.DeletePartialMatch(l)
	seriesGen.Add(1) // after the deletion: a lookup in between is looked up again
}
