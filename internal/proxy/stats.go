package proxy

import (
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// Stats is a snapshot of one service's proxy for /v1/status. Counters are
// totals since the proxy was created.
type Stats struct {
	Service string `json:"service"`
	Mode    string `json:"mode"`
	Listen  string `json:"listen"`
	// Client requests (tcp mode: connections), including refused ones.
	Requests uint64 `json:"requests"`
	// Requests answered 5xx (or not at all) and connections no instance took.
	Errors      uint64 `json:"errors"`
	Retries     uint64 `json:"retries"`
	Shed        uint64 `json:"shed"`
	RateLimited uint64 `json:"rate_limited"`
	// Tries (tcp mode: connections) in flight to instances.
	Inflight int `json:"inflight"`
	// Current adaptive concurrency limit; 0 when shedding is off or in tcp mode.
	ConcurrencyLimit int `json:"concurrency_limit,omitempty"`
	// Panic: every ready instance is ejected, so all ready ones serve.
	Panic bool `json:"panic"`
	// Injected faults by instance id.
	Faults    map[string]Fault `json:"faults,omitempty"`
	Instances []InstanceStats  `json:"instances"`
	// Groups: the instances' deploy groups and their counters (groups.go).
	Groups []GroupStats `json:"groups,omitempty"`
	// Client classes (proxy.clients), by name; absent without classes.
	Classes []ClassStats `json:"classes,omitempty"`
	// tcp mode: connections to instances on which nobody has spoken yet (max_silent).
	Silent *SilentStats `json:"silent,omitempty"`
}

// SilentStats are a tcp-mode proxy's silent connections (proxy.max_silent).
type SilentStats struct {
	// Connections to instances open now on which neither side has sent a byte.
	Open int `json:"open"`
	// Client connections waiting for their first byte or a place.
	Waiting int `json:"waiting"`
	// Client connections closed because they stayed silent past header_timeout while waiting.
	Closed uint64 `json:"closed"`
}

// InstanceStats is one instance as the proxy sees it.
type InstanceStats struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	Group string `json:"group"`
	// Remote: on another host of the fleet (taken only when no local one can).
	Remote   bool `json:"remote,omitempty"`
	Ready    bool `json:"ready"`
	Draining bool `json:"draining"`
	// InRotation: ready, not draining, breaker not open.
	InRotation   bool         `json:"in_rotation"`
	Breaker      BreakerState `json:"breaker"`
	EjectedUntil *time.Time   `json:"ejected_until,omitempty"`
	Ejections    uint64       `json:"ejections"`
	Outstanding  int          `json:"outstanding"`
	// Latency estimate used for balancing, in seconds.
	LatencySeconds float64 `json:"latency_ewma_seconds"`
	Requests       uint64  `json:"requests"`
	Errors         uint64  `json:"errors"`
	// Open client connections (tcp mode).
	Connections int `json:"connections,omitempty"`
}

// Stats returns a consistent snapshot of the proxy and its instances.
func (p *Proxy) Stats() Stats {
	now := p.clock.Now()
	s := Stats{
		Service: p.service, Mode: p.cfg.Mode, Listen: p.ln.Addr().String(),
		Requests: p.requests.Load(), Errors: p.errors.Load(), Retries: p.retries.Load(),
		Shed: p.shed.Load(), RateLimited: p.rateLimited.Load(),
	}
	s.ConcurrencyLimit = p.d.Limit()
	if p.cfg.Mode == config.ProxyModeTCP {
		held, waiting := p.silent.counts()
		s.Silent = &SilentStats{Open: held, Waiting: waiting, Closed: p.silentClosed.Load()}
	}
	s.Groups = p.pool.groupStats(now)
	s.Classes = p.d.ClassStats()
	p.pool.mu.Lock()
	defer p.pool.mu.Unlock()
	s.Panic = p.pool.panicking
	if len(p.pool.faults) > 0 {
		s.Faults = make(map[string]Fault, len(p.pool.faults))
		for id, f := range p.pool.faults {
			s.Faults[id] = f
		}
	}
	s.Instances = make([]InstanceStats, 0, len(p.pool.list))
	for _, b := range p.pool.list {
		st := b.outlier.State(now)
		is := InstanceStats{
			ID: b.id, Addr: b.addr(), Group: b.grp.name, Remote: b.remote, Ready: b.ready, Draining: b.draining,
			InRotation: b.ready && !b.draining && st != Open,
			Breaker:    st, Ejections: b.ejections, Outstanding: b.outstanding,
			LatencySeconds: b.lat.value(now), Requests: b.requests, Errors: b.failures,
			Connections: len(b.conns),
		}
		if u := b.outlier.Until(); !u.IsZero() {
			is.EjectedUntil = &u
		}
		s.Inflight += b.outstanding
		s.Instances = append(s.Instances, is)
	}
	return s
}
