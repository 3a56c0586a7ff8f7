package proxy

import (
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// backend is one instance as the pool sees it. All fields are guarded by pool.mu.
type backend struct {
	id          string
	addrP       atomic.Pointer[string] // host:port; swapped when the instance moves (read without the pool lock)
	ready       bool
	draining    bool
	removed     bool
	outstanding int // requests (http) or connections (tcp) in flight
	lat         ewma
	outlier     Outlier
	refused     bool                  // an ejection was refused and logged; reset on the next ejection
	drained     chan struct{}         // closed when a draining backend has nothing in flight
	conns       map[net.Conn]net.Conn // tcp mode: client → instance side
	cuts        uint64                // tcp mode: how often its connections were cut
	grp         *group                // its deploy group (groups.go)
	remote      bool                  // on another host of the fleet: used only when no local instance is in rotation

	requests, failures, ejections uint64

	series atomic.Pointer[instanceSeries] // its Prometheus series, resolved (metrics.try)
}

// addr is the instance's address.
func (b *backend) addr() string {
	if a := b.addrP.Load(); a != nil {
		return *a
	}
	return ""
}

// pool is the set of instances of one service and the balancing decisions
// over them. One mutex guards it: every decision is a few comparisons.
type pool struct {
	mu          sync.Mutex
	byID        map[string]*backend
	list        []*backend // sorted by id
	policy      OutlierPolicy
	maxEjectPct int
	panicking   bool
	faults      map[string]Fault // by instance id; survives re-adds of the instance

	groups   []*group          // deploy groups, in creation order; groups[0] is DefaultGroup
	groupOf  map[string]string // group by instance id; survives re-adds
	weighted bool              // first tries are split between groups by weight
}

func newPool(policy OutlierPolicy, maxEjectPct int) *pool {
	p := &pool{byID: map[string]*backend{}, policy: policy, maxEjectPct: maxEjectPct, faults: map[string]Fault{},
		groupOf: map[string]string{}}
	_, _ = p.groupLocked(DefaultGroup)
	return p
}

// event is a state change the pool reports for logging and metrics outside its lock.
type event struct {
	kind     string // "ejected", "ejection refused", "returned", "not ready", "panic", "panic over"
	instance string
	reason   string
	ejection time.Duration
}

// latencyFloor keeps a new or idle instance's score from reaching zero, which
// would send it every request until its first answer.
const latencyFloor = 50e-6

// pick chooses an instance for a try at now: power of two random choices
// among the instances in rotation, preferring fewer outstanding requests
// weighted by the latency EWMA. Instances in tried are skipped. When trial is
// set and an instance's ejection has ended, it gets this request as its trial.
// With no instance in rotation but some ready (all ejected), it picks among
// the ready ones (panic mode). With group weights, the instances are those
// of the group chosen first (groups.go). It returns nil when no instance can
// be used, and counts the pick as outstanding.
func (p *pool) pick(now time.Time, tried []*backend, trial bool) (*backend, Fault, []event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var buf [16]*backend
	eligible := buf[:0]
	var chosen *backend
	g := p.chooseGroupLocked(now, tried, trial)
	for _, b := range p.list {
		if !b.ready || b.draining || slices.Contains(tried, b) || g != nil && b.grp != g {
			continue
		}
		switch b.outlier.State(now) {
		case Closed:
			eligible = append(eligible, b)
		case HalfOpen:
			if trial && chosen == nil && b.outlier.Allow(now) {
				chosen = b
			}
		}
	}
	var evs []event
	if chosen == nil && len(eligible) == 0 {
		for _, b := range p.list {
			if b.ready && !b.draining && !slices.Contains(tried, b) && (g == nil || b.grp == g) {
				eligible = append(eligible, b)
			}
		}
		if len(eligible) > 0 && !p.panicking && len(tried) == 0 {
			p.panicking = true
			evs = append(evs, event{kind: "panic", reason: "every ready instance is ejected; serving from all of them"})
		}
	} else if p.panicking && len(tried) == 0 {
		p.panicking = false
		evs = append(evs, event{kind: "panic over", reason: "an instance is back in rotation"})
	}
	if chosen == nil {
		chosen = p.choose(now, preferLocal(eligible))
	}
	if chosen == nil {
		return nil, Fault{}, evs
	}
	chosen.outstanding++
	return chosen, p.faults[chosen.id], evs
}

// preferLocal keeps the local instances of bs when there is one (in place):
// a fleet proxy sends a try to another host's instance only when none of
// its own host's can take it (docs/fleet.md, Discovery and traffic).
func preferLocal(bs []*backend) []*backend {
	local := 0
	for _, b := range bs {
		if !b.remote {
			local++
		}
	}
	if local == 0 || local == len(bs) {
		return bs
	}
	out := bs[:0]
	for _, b := range bs {
		if !b.remote {
			out = append(out, b)
		}
	}
	return out
}

func (p *pool) choose(now time.Time, bs []*backend) *backend {
	switch len(bs) {
	case 0:
		return nil
	case 1:
		return bs[0]
	case 2, 3:
		// Two random choices out of three or fewer are nearly all of them:
		// compare all, so that near saturation no instance gets a request
		// more while another has a slot free.
		start := rand.IntN(len(bs)) // ties go to a random one
		best, bestScore := bs[start], score(now, bs[start])
		for k := 1; k < len(bs); k++ {
			b := bs[(start+k)%len(bs)]
			if sc := score(now, b); sc < bestScore {
				best, bestScore = b, sc
			}
		}
		return best
	}
	i := rand.IntN(len(bs))
	j := rand.IntN(len(bs) - 1)
	if j >= i {
		j++
	}
	if score(now, bs[j]) < score(now, bs[i]) {
		return bs[j]
	}
	return bs[i]
}

func score(now time.Time, b *backend) float64 {
	return (b.lat.value(now) + latencyFloor) * float64(b.outstanding+1)
}

// record counts the outcome of one try at now. lat > 0 is a latency sample
// (a success's time to headers, or a timeout's duration as a penalty).
// status >= 0 (0: no answer) counts the try in b's group with took, its
// time to headers or to the failure; tcp mode passes -1.
func (p *pool) record(b *backend, now time.Time, ok bool, lat time.Duration, status int, took time.Duration) []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	if status >= 0 && b.grp != nil {
		b.grp.add(status, took)
	}
	b.requests++
	if !ok {
		b.failures++
	}
	if lat > 0 {
		b.lat.observe(now, lat)
	}
	if b.removed {
		return nil
	}
	v := b.outlier.Record(now, ok)
	switch {
	case v.Eject:
		return p.ejectLocked(b, now, v.Reason)
	case v.Returned:
		return []event{{kind: "returned", instance: b.id, reason: v.Reason}}
	}
	return nil
}

// ejectLocked ejects b unless that would eject more than maxEjectPct of the
// ready instances (at least one ejection is always allowed).
func (p *pool) ejectLocked(b *backend, now time.Time, reason string) []event {
	if b.outlier.State(now) == Closed {
		ready, ejected := 0, 0
		for _, x := range p.list {
			if x.ready {
				ready++
				if x.outlier.State(now) != Closed {
					ejected++
				}
			}
		}
		if ejected >= max(1, ready*p.maxEjectPct/100) {
			b.outlier.Forgive()
			if b.refused {
				return nil
			}
			b.refused = true
			return []event{{kind: "ejection refused", instance: b.id,
				reason: reason + "; not ejected: max_ejection_percent already reached"}}
		}
	}
	d := b.outlier.Eject(now)
	b.ejections++
	b.refused = false
	return []event{{kind: "ejected", instance: b.id, reason: reason, ejection: d}}
}

// abandon ends a try that has no outcome to record (the client left).
func (p *pool) abandon(b *backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b.outlier.Abandon()
}

// done ends one outstanding request or connection on b.
func (p *pool) done(b *backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b.outstanding--
	if b.outstanding == 0 && b.drained != nil {
		close(b.drained)
		b.drained = nil
	}
}

// set adds or updates an instance. A ready instance that was not ready (or
// was draining) is back in rotation and its breaker closes: the readiness
// probe vouches for it.
func (p *pool) set(id, addr string, ready bool) []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.setLocked(id, addr, ready)
}

// setRemote is set for an instance on another host, marked remote under
// the same lock, so no pick ever sees it as a local instance.
func (p *pool) setRemote(id, addr string, ready bool) []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	evs := p.setLocked(id, addr, ready)
	p.byID[id].remote = true
	return evs
}

// setLocked is set with p.mu held.
func (p *pool) setLocked(id, addr string, ready bool) []event {
	b, ok := p.byID[id]
	if !ok {
		b = &backend{id: id, ready: ready, outlier: NewOutlier(p.policy)}
		gname := p.groupOf[id]
		if gname == "" {
			gname = DefaultGroup
		}
		b.grp, _ = p.groupLocked(gname) // exists: created with the pool or by setGroup
		b.addrP.Store(&addr)
		b.lat = ewma{v: p.meanLatencyLocked(nil)}
		p.byID[id] = b
		i, _ := slices.BinarySearchFunc(p.list, id, func(x *backend, id string) int { return strings.Compare(x.id, id) })
		p.list = slices.Insert(p.list, i, b)
		return nil
	}
	if b.addr() != addr {
		b.addrP.Store(&addr)
		b.lat = ewma{v: p.meanLatencyLocked(b)}
	}
	var evs []event
	if b.ready && !ready {
		evs = append(evs, event{kind: "not ready", instance: id, reason: "readiness probe failed; out of rotation"})
	}
	if ready && (!b.ready || b.draining) {
		if b.outlier.Until() != (time.Time{}) {
			evs = append(evs, event{kind: "returned", instance: id, reason: "readiness probe passed"})
		}
		b.outlier.Return()
		b.draining = false
		if !b.ready { // a fresh start: forget the latency it had when it went away
			b.lat = ewma{v: p.meanLatencyLocked(b)}
		}
	}
	b.ready = ready
	return evs
}

// meanLatencyLocked is the mean latency estimate of the instances other than
// except: the starting estimate of a new or restarted instance.
func (p *pool) meanLatencyLocked(except *backend) float64 {
	var sum float64
	n := 0
	for _, b := range p.list {
		if b != except && !b.lat.at.IsZero() {
			sum += b.lat.v
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// remove forgets id and returns its open TCP connections for the caller to close.
func (p *pool) remove(id string) (found bool, conns []net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.byID[id]
	if !ok {
		return false, nil
	}
	delete(p.byID, id)
	p.list = slices.DeleteFunc(p.list, func(x *backend) bool { return x == b })
	b.removed = true
	return true, connsLocked(b)
}

// drain takes id out of rotation and returns a channel closed once nothing is in flight on it.
func (p *pool) drain(id string) (<-chan struct{}, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.byID[id]
	if !ok {
		return nil, false
	}
	b.draining = true
	if b.outstanding == 0 {
		c := make(chan struct{})
		close(c)
		return c, true
	}
	if b.drained == nil {
		b.drained = make(chan struct{})
	}
	return b.drained, true
}

// cutGen is b's cut generation, read before dialing it: track refuses a
// connection dialed across a cut or a removal.
func (p *pool) cutGen(b *backend) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return b.cuts
}

// track and untrack register a spliced TCP connection on b so that it can be
// cut. track returns false, registering nothing, when b was removed or its
// connections were cut since gen (cutGen before the dial): the caller must
// close the new connection, which would otherwise escape the cut (a client
// kept on a fenced database primary).
func (p *pool) track(b *backend, client, up net.Conn, gen uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b.removed || b.cuts != gen {
		return false
	}
	if b.conns == nil {
		b.conns = map[net.Conn]net.Conn{}
	}
	b.conns[client] = up
	return true
}

func (p *pool) untrack(b *backend, client net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(b.conns, client)
}

// cut returns both sides of the open connections of id (nil if unknown)
// for the caller to close, and makes connections being dialed to it fail
// their track.
func (p *pool) cut(id string) []net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.byID[id]; ok {
		b.cuts++
		return connsLocked(b)
	}
	return nil
}

// allConns returns every open connection of every instance.
func (p *pool) allConns() []net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	var cs []net.Conn
	for _, b := range p.list {
		cs = append(cs, connsLocked(b)...)
	}
	return cs
}

func connsLocked(b *backend) []net.Conn {
	cs := make([]net.Conn, 0, 2*len(b.conns))
	for client, up := range b.conns {
		cs = append(cs, client, up)
	}
	return cs
}
