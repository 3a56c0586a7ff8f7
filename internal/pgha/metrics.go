package pgha

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the medic_db_* series of the members this agent runs.
type Metrics struct {
	role       *prometheus.GaugeVec
	lagBytes   *prometheus.GaugeVec
	lagSeconds *prometheus.GaugeVec
	failovers  *prometheus.CounterVec
	fences     *prometheus.CounterVec
	renewals   *prometheus.CounterVec
	renewFails *prometheus.CounterVec
}

// NewMetrics registers the series on reg (nil: not registered). Several
// agents (one per database) share one Metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		role: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "medic_db_role",
			Help: "1 for the member's current role (primary, replica, stopped), 0 for the others."}, []string{"cluster", "member", "role"}),
		lagBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "medic_db_replication_lag_bytes",
			Help: "WAL bytes the member's postgres is behind the primary's last published position."}, []string{"cluster", "member"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "medic_db_replication_lag_seconds",
			Help: "Age of the last replayed transaction while replay is behind; 0 when caught up."}, []string{"cluster", "member"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medic_db_failovers_total",
			Help: "Promotions of this member to primary (failovers and switchovers)."}, []string{"cluster", "member"}),
		fences: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medic_db_fences_total",
			Help: "Times this member killed its own postgres to keep a single primary."}, []string{"cluster", "member"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medic_db_lease_renewals_total",
			Help: "Successful renewals of the member's lease in etcd."}, []string{"cluster", "member"}),
		renewFails: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medic_db_lease_renewal_failures_total",
			Help: "Failed renewals of the member's lease in etcd (timeouts, no connection, lease gone)."}, []string{"cluster", "member"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.role, m.lagBytes, m.lagSeconds, m.failovers, m.fences, m.renewals, m.renewFails} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if errors.As(err, &are) {
					continue
				}
				return nil, fmt.Errorf("pgha: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *Metrics) setRole(cluster, member string, r Role) {
	if m == nil {
		return
	}
	for _, x := range []Role{RolePrimary, RoleReplica, RoleStopped} {
		v := 0.0
		if x == r {
			v = 1
		}
		m.role.WithLabelValues(cluster, member, x.String()).Set(v)
	}
}

func (m *Metrics) setLag(cluster, member string, bytes uint64, secs float64) {
	if m == nil {
		return
	}
	m.lagBytes.WithLabelValues(cluster, member).Set(float64(bytes))
	m.lagSeconds.WithLabelValues(cluster, member).Set(secs)
}

// counter names one of the counters, so that a nil Metrics can be asked for it.
type counter int

const (
	cntRenewal counter = iota
	cntRenewFail
	cntFence
	cntFailover
)

func (m *Metrics) inc(c counter, cluster, member string) {
	if m == nil {
		return
	}
	v := [...]*prometheus.CounterVec{m.renewals, m.renewFails, m.fences, m.failovers}[c]
	v.WithLabelValues(cluster, member).Inc()
}
