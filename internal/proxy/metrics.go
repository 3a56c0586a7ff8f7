package proxy

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus series. Labels are service and
// instance only (bounded cardinality); an instance's series are deleted when
// it is removed, a service's when its proxy stops.
type metrics struct {
	service string
	vecs    *vecs

	requests, errors, retries, shed, rateLimited prometheus.Counter
	duration                                     prometheus.Observer
	inflight, limit                              prometheus.Gauge

	mu        sync.Mutex
	instances map[string]*instMetrics
}

type instMetrics struct {
	requests, errors, ejections prometheus.Counter
	duration                    prometheus.Observer
}

type vecs struct {
	requests, errors, retries, shed, rateLimited *prometheus.CounterVec
	duration                                     *prometheus.HistogramVec
	inflight, limit                              *prometheus.GaugeVec
	instRequests, instErrors, instEjections      *prometheus.CounterVec
	instDuration                                 *prometheus.HistogramVec
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
		inflight:      gauge("medic_proxy_inflight_requests", "Requests holding a slot of the concurrency limit."),
		limit:         gauge("medic_proxy_concurrency_limit", "Current adaptive concurrency limit."),
		instRequests:  counter("medic_proxy_instance_requests_total", "Tries (tcp mode: connections) sent to an instance.", inst),
		instErrors:    counter("medic_proxy_instance_errors_total", "Tries that failed at an instance: connect error, reset, timeout or 5xx.", inst),
		instEjections: counter("medic_proxy_instance_ejections_total", "Times an instance was ejected by outlier detection.", inst),
		instDuration:  hist("medic_proxy_instance_request_duration_seconds", "Time of one try to an instance, until its response headers.", inst),
	}
}

// register adds the vectors to reg, sharing those another proxy registered first.
func (v *vecs) register(reg prometheus.Registerer) error {
	for _, c := range []*prometheus.CounterVec{v.requests, v.errors, v.retries, v.shed, v.rateLimited, v.instRequests, v.instErrors, v.instEjections} {
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
	return &metrics{
		service: service, vecs: v,
		requests: v.requests.WithLabelValues(service), errors: v.errors.WithLabelValues(service),
		retries: v.retries.WithLabelValues(service), shed: v.shed.WithLabelValues(service),
		rateLimited: v.rateLimited.WithLabelValues(service), duration: v.duration.WithLabelValues(service),
		inflight: v.inflight.WithLabelValues(service), limit: v.limit.WithLabelValues(service),
		instances: map[string]*instMetrics{},
	}, nil
}

// instance returns the series of one instance, creating them on first use.
func (m *metrics) instance(id string) *instMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	im, ok := m.instances[id]
	if !ok {
		v := m.vecs
		im = &instMetrics{
			requests:  v.instRequests.WithLabelValues(m.service, id),
			errors:    v.instErrors.WithLabelValues(m.service, id),
			ejections: v.instEjections.WithLabelValues(m.service, id),
			duration:  v.instDuration.WithLabelValues(m.service, id),
		}
		m.instances[id] = im
	}
	return im
}

// deleteInstance drops an instance's series.
func (m *metrics) deleteInstance(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.instances, id)
	v := m.vecs
	for _, c := range []*prometheus.CounterVec{v.instRequests, v.instErrors, v.instEjections} {
		c.DeleteLabelValues(m.service, id)
	}
	v.instDuration.DeleteLabelValues(m.service, id)
}

// deleteService drops every series of this proxy's service.
func (m *metrics) deleteService() {
	v := m.vecs
	l := prometheus.Labels{"service": m.service}
	for _, c := range []*prometheus.CounterVec{v.requests, v.errors, v.retries, v.shed, v.rateLimited, v.instRequests, v.instErrors, v.instEjections} {
		c.DeletePartialMatch(l)
	}
	v.duration.DeletePartialMatch(l)
	v.instDuration.DeletePartialMatch(l)
	v.inflight.DeletePartialMatch(l)
	v.limit.DeletePartialMatch(l)
}
