package pgha

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the medic_db_* series of the members this agent runs.
type Metrics struct {
	role        *roleCollector
	lagBytes    *prometheus.GaugeVec
	lagSeconds  *prometheus.GaugeVec
	failovers   *prometheus.CounterVec
	fences      *prometheus.CounterVec
	renewals    *prometheus.CounterVec
	renewFails  *prometheus.CounterVec
	repairs     *prometheus.CounterVec
	streaming   *prometheus.GaugeVec
	timeline    *prometheus.GaugeVec
	ready       *prometheus.GaugeVec
	syncPresent *prometheus.GaugeVec
	redundancyC *prometheus.GaugeVec
	failsafe    *prometheus.GaugeVec
	fsRounds    *prometheus.CounterVec
}

// NewMetrics registers the series on reg (nil: not registered). Several
// agents (one per database) share one Metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		role: &roleCollector{desc: prometheus.NewDesc("medic_db_role",
			"1 for the member's current role (primary, replica, stopped, unknown), 0 for the others; evaluated at scrape time: "+
				"primary only while the member's lease is provably held, unknown once etcd cannot confirm it.",
			[]string{"cluster", "member", "role"}, nil), fns: map[[2]string]func() Role{}},
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
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medic_db_replica_repairs_total",
			Help: "Repairs (rewinds, re-clones) of this member as a replica that did not stream from the primary."}, []string{"cluster", "member"}),
		streaming: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "medic_db_streaming",
			Help: "1 while the member's postgres is a replica whose WAL receiver streams, else 0."}, []string{"cluster", "member"}),
		timeline: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "medic_db_timeline",
			Help: "The member's postgres timeline (0 when unknown)."}, []string{"cluster", "member"}),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "medic_db_ready",
			Help: "1 while the member serves its role: the primary holding the lease, or a replica streaming from it on its timeline."}, []string{"cluster", "member"}),
		syncPresent: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "medic_db_sync_standby_present",
			Help: "1 while the sync key names a synchronous standby, as this member reads it (always 0 in async mode)."}, []string{"cluster", "member"}),
		redundancyC: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "medic_db_redundancy_condition",
			Help: "1 while the primary on this agent sees the redundancy condition (no_streaming_replica, no_sync_standby, " +
				"replica_old_timeline, replica_not_streaming, replica_lagging) for longer than the stream bound; 0 otherwise."},
			[]string{"cluster", "condition"}),
		failsafe: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "medic_db_failsafe_active",
			Help: "1 while the DCS failsafe holds: on the leader, etcd does not answer and every other member confirmed it " +
				"(it stays writable on their word); on another member, it promised a leader in failsafe not to campaign. 0 otherwise."},
			[]string{"cluster", "member"}),
		fsRounds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medic_db_failsafe_rounds_total",
			Help: "Failsafe rounds of the leader while etcd did not answer, by result: confirmed (every other member accepted) " +
				"or unconfirmed (one did not: the fence deadline stays where the lease put it)."}, []string{"cluster", "member", "result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.role, m.lagBytes, m.lagSeconds, m.failovers, m.fences, m.renewals, m.renewFails, m.repairs,
			m.streaming, m.timeline, m.ready, m.syncPresent, m.redundancyC, m.failsafe, m.fsRounds} {
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

// roleFunc makes fn the source of the member's medic_db_role series, read
// at every scrape.
func (m *Metrics) roleFunc(cluster, member string, fn func() Role) {
	if m == nil {
		return
	}
	m.role.mu.Lock()
	defer m.role.mu.Unlock()
	m.role.fns[[2]string{cluster, member}] = fn
}

// roleCollector reports each member's role as its agent knows it at the
// moment of the scrape. A gauge set once per loop could say "primary" after
// the fence deadline passed (the loop is stuck in an etcd call, or not yet
// round): two agents then both read primary for a scrape (issue 14).
type roleCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	fns  map[[2]string]func() Role
}

func (c *roleCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *roleCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, fn := range c.fns {
		r := fn()
		for _, x := range []Role{RolePrimary, RoleReplica, RoleStopped, RoleUnknown} {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, b2f(x == r), k[0], k[1], x.String())
		}
	}
}

// start makes every series of a member present from the start: a counter
// absent until its first increment cannot be told from a member that is
// not scraped (rate() and alerts on it see nothing).
func (m *Metrics) start(cluster, member string) {
	if m == nil {
		return
	}
	for _, c := range []*prometheus.CounterVec{m.renewals, m.renewFails, m.fences, m.failovers, m.repairs} {
		c.WithLabelValues(cluster, member)
	}
	for _, c := range RedundancyConditions {
		m.redundancyC.WithLabelValues(cluster, c)
	}
	for _, g := range []*prometheus.GaugeVec{m.streaming, m.timeline, m.ready, m.syncPresent, m.lagBytes, m.lagSeconds, m.failsafe} {
		g.WithLabelValues(cluster, member)
	}
	for _, r := range []string{"confirmed", "unconfirmed"} {
		m.fsRounds.WithLabelValues(cluster, member, r)
	}
}

// state sets the member's gauges.
func (m *Metrics) state(cluster, member string, streaming, ready, syncPresent bool, timeline int) {
	if m == nil {
		return
	}
	m.streaming.WithLabelValues(cluster, member).Set(b2f(streaming))
	m.ready.WithLabelValues(cluster, member).Set(b2f(ready))
	m.syncPresent.WithLabelValues(cluster, member).Set(b2f(syncPresent))
	m.timeline.WithLabelValues(cluster, member).Set(float64(timeline))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
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
	cntRepair
)

func (m *Metrics) inc(c counter, cluster, member string) {
	if m == nil {
		return
	}
	v := [...]*prometheus.CounterVec{m.renewals, m.renewFails, m.fences, m.failovers, m.repairs}[c]
	v.WithLabelValues(cluster, member).Inc()
}

func (m *Metrics) redundancy(cluster, cond string, firing bool) {
	if m == nil {
		return
	}
	m.redundancyC.WithLabelValues(cluster, cond).Set(b2f(firing))
}

// failsafeState sets medic_db_failsafe_active.
func (m *Metrics) failsafeState(cluster, member string, active bool) {
	if m == nil {
		return
	}
	m.failsafe.WithLabelValues(cluster, member).Set(b2f(active))
}

// failsafeRound counts one round of the leader's failsafe.
func (m *Metrics) failsafeRound(cluster, member string, confirmed bool) {
	if m == nil {
		return
	}
	r := "unconfirmed"
	if confirmed {
		r = "confirmed"
	}
	m.fsRounds.WithLabelValues(cluster, member, r).Inc()
}
