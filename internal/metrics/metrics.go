// Package metrics exposes medic's state in the Prometheus text format. Instance
// gauges are collected from the supervisor's status at scrape time, so no label
// set outlives its instance; probe durations and event counts are recorded as
// they happen.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/supervise"
)

// StatusFunc returns the current status of every service.
type StatusFunc func() []supervise.ServiceStatus

// Metrics holds medic's own metrics and its registry.
type Metrics struct {
	Registry      *prometheus.Registry
	probeDuration *prometheus.HistogramVec
	events        *prometheus.CounterVec
	auditErrors   prometheus.Counter
}

// New registers medic's collectors, reading instance state from status.
func New(status StatusFunc, dropped func() float64) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		probeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "medic_probe_duration_seconds",
			Help:    "Duration of health probes by service, instance, probe role and result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"service", "instance", "probe", "result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_events_total",
			Help: "Events recorded, by kind.",
		}, []string{"kind"}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medic_audit_append_errors_total",
			Help: "Audit records that could not be made durable.",
		}),
	}
	r.MustRegister(m.probeDuration, m.events, m.auditErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&instanceCollector{status: status},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "medic_event_subscriber_drops_total",
			Help: "Events dropped because a live subscriber was too slow.",
		}, dropped))
	return m
}

// ObserveProbe records one probe run.
func (m *Metrics) ObserveProbe(id medic.InstanceID, kind medic.ProbeKind, h medic.Health, took time.Duration) {
	m.probeDuration.WithLabelValues(id.Service, id.String(), string(kind), h.String()).Observe(took.Seconds())
}

// Event counts one event.
func (m *Metrics) Event(kind medic.EventKind) { m.events.WithLabelValues(string(kind)).Inc() }

// AuditHealth exports the audit log's state: medic_audit_degraded (1 while
// appends fail and remediation is paused), medic_audit_held_records (records
// waiting in the bounded buffer) and medic_audit_lost_records_total (records
// dropped from it when full; a gap record names them once appends work).
func (m *Metrics) AuditHealth(degraded, held, lost func() float64) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "medic_audit_degraded",
			Help: "1 while audit appends fail: remediation is paused and records are held."}, degraded),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "medic_audit_held_records",
			Help: "Audit records held in memory until appends work again."}, held),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "medic_audit_lost_records_total",
			Help: "Audit records dropped because the hold buffer was full (each loss is stated by a gap record)."}, lost))
}

// AuditError counts a failed audit append.
func (m *Metrics) AuditError() { m.auditErrors.Inc() }

// ForgetInstance deletes the probe label sets of an instance that went away.
func (m *Metrics) ForgetInstance(id medic.InstanceID) {
	m.probeDuration.DeletePartialMatch(prometheus.Labels{"instance": id.String()})
}

var (
	descState    = prometheus.NewDesc("medic_instance_state", "1 for the instance's current state.", []string{"service", "instance", "state"}, nil)
	descReady    = prometheus.NewDesc("medic_instance_ready", "1 if the instance is ready to serve.", []string{"service", "instance"}, nil)
	descRestarts = prometheus.NewDesc("medic_instance_restarts_total", "Restarts of the instance since medic started.", []string{"service", "instance"}, nil)
	descRSS      = prometheus.NewDesc("medic_instance_resident_memory_bytes", "Resident memory of the instance's main process.", []string{"service", "instance"}, nil)
	descCPU      = prometheus.NewDesc("medic_instance_cpu_seconds_total", "User and system CPU time of the instance's main process.", []string{"service", "instance"}, nil)
	descFDs      = prometheus.NewDesc("medic_instance_open_fds", "Open file descriptors of the instance's main process.", []string{"service", "instance"}, nil)
	descProbe    = prometheus.NewDesc("medic_probe_result", "Latest probe result: 1 success, 0 failure, -1 unknown.", []string{"service", "instance", "probe"}, nil)
	descDesired  = prometheus.NewDesc("medic_service_instances", "Configured instances of the service.", []string{"service"}, nil)
	descSvcReady = prometheus.NewDesc("medic_service_ready_instances", "Ready instances of the service.", []string{"service"}, nil)
)

var allStates = []medic.InstanceState{medic.StatePending, medic.StateStarting, medic.StateRunning, medic.StateBackoff,
	medic.StateCrashLoop, medic.StateStopping, medic.StateStopped, medic.StateFailed}

type instanceCollector struct{ status StatusFunc }

func (c *instanceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descReady, descRestarts, descRSS, descCPU, descFDs, descProbe, descDesired, descSvcReady} {
		ch <- d
	}
}

func (c *instanceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, svc := range c.status() {
		ch <- prometheus.MustNewConstMetric(descDesired, prometheus.GaugeValue, float64(svc.Desired), svc.Name)
		ch <- prometheus.MustNewConstMetric(descSvcReady, prometheus.GaugeValue, float64(svc.Ready), svc.Name)
		for _, in := range svc.Instances {
			for _, s := range allStates {
				ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, b2f(in.State == s), svc.Name, in.ID, s.String())
			}
			ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, b2f(in.Ready), svc.Name, in.ID)
			ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(in.Restarts), svc.Name, in.ID)
			if in.PID != 0 {
				ch <- prometheus.MustNewConstMetric(descRSS, prometheus.GaugeValue, float64(in.RSSBytes), svc.Name, in.ID)
				ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, in.CPU, svc.Name, in.ID)
				ch <- prometheus.MustNewConstMetric(descFDs, prometheus.GaugeValue, float64(in.FDs), svc.Name, in.ID)
			}
			for _, k := range []medic.ProbeKind{medic.ProbeStartup, medic.ProbeLiveness, medic.ProbeReadiness} {
				if p, ok := in.Probes[k]; ok {
					v := -1.0
					switch p.Health {
					case medic.HealthSuccess:
						v = 1
					case medic.HealthFailure:
						v = 0
					}
					ch <- prometheus.MustNewConstMetric(descProbe, prometheus.GaugeValue, v, svc.Name, in.ID, string(k))
				}
			}
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
