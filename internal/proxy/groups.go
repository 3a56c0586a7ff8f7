package proxy

import (
	"errors"
	"fmt"
	"time"
)

// Groups split a service's instances by release for deploys: every instance
// belongs to one group ("stable" unless SetGroup says otherwise; a deploy
// names the others "green", "canary", "baseline"…). Without weights (the
// default, and after ClearWeights) groups change nothing: every instance in
// rotation is a candidate. With weights, each first try picks a group by
// smooth weighted round robin (nginx's: deterministic, and over any window
// of W = sum of weights picks each group exactly its weight's share), then
// an instance within the group by the usual balancing. A group takes part
// in the round only while it has an instance in rotation (or one whose
// ejection ended and may take a trial); a weighted group whose every ready
// instance is ejected gets its share served by them (panic mode, as for a
// whole service). When no group of weight above 0 has a ready instance, the
// pick falls back to any ready instance: serving from a kept-warm blue or
// from a canary beats answering 503.
//
// Retries go to the retry group (Weights.Retry, by default the group of the
// highest weight): a try that failed on a canary is repeated on a stable
// instance, so that the client is spared the canary's failure while the
// canary's counters still record it. Then to the other groups of weight
// above 0, the heaviest first; never to a group of weight 0 unless no other
// instance is left (the fallback above).
//
// Per-group outcomes count every try that reached an end on the group's
// instances (client cancellations are not counted): requests, status
// classes, and the newest GroupRing tries as (status, latency) in a ring
// with a sequence number, read without loss by a caller that keeps up
// (GroupOutcomes).

// DefaultGroup is the group of an instance no SetGroup named.
const DefaultGroup = "stable"

// GroupRing is how many of a group's newest outcomes are kept. At 1 000
// tries/s per group a reader every 4 s loses none.
const GroupRing = 4096

// maxGroups bounds the groups of one pool (they come from deploys, not from
// clients): a deploy uses at most three beside stable.
const maxGroups = 16

// GroupWeight is one group's share of the first tries.
type GroupWeight struct {
	Group  string `json:"group"`
	Weight int    `json:"weight"`
}

// Weights split the first tries between groups.
type Weights struct {
	// Groups: a group not listed has weight 0. Weights are 0 to 1 000 000.
	Groups []GroupWeight `json:"groups"`
	// Retry is the group retries go to first; "" means the listed group of
	// the highest weight (the first listed among equals).
	Retry string `json:"retry,omitempty"`
}

// GroupOutcome is one try as the proxy saw it on a group's instance.
type GroupOutcome struct {
	// Status is the instance's answer; 0 means none (connect error,
	// reset, timeout).
	Status int `json:"status"`
	// Latency is from the try's start to the response headers (or to the
	// failure).
	Latency time.Duration `json:"latency"`
}

// GroupStats is one group's counters.
type GroupStats struct {
	Group string `json:"group"`
	// Weight is the group's share while weights are set; 0 also when none are.
	Weight int `json:"weight"`
	// Instances of the group in the pool, and how many are in rotation.
	Instances  int `json:"instances"`
	InRotation int `json:"in_rotation"`
	// Requests is the number of tries counted; ByClass splits them by
	// status class: [0] no answer, [1] 1xx … [5] 5xx.
	Requests uint64    `json:"requests"`
	ByClass  [6]uint64 `json:"by_class"`
	// Seq is the sequence number the next outcome will get (= Requests).
	Seq uint64 `json:"seq"`
}

// group is one group's state; guarded by pool.mu.
type group struct {
	name    string
	weight  int
	current int // smooth weighted round robin
	retry   bool
	// counters
	requests uint64
	byClass  [6]uint64
	ring     []GroupOutcome // GroupRing entries, allocated with the group
}

func (g *group) add(status int, lat time.Duration) {
	c := 0
	if status >= 100 && status <= 599 {
		c = status / 100
	}
	g.byClass[c]++
	g.ring[g.requests%GroupRing] = GroupOutcome{Status: status, Latency: lat}
	g.requests++
}

// groupLocked returns the group named name, creating it.
func (p *pool) groupLocked(name string) (*group, error) {
	for _, g := range p.groups {
		if g.name == name {
			return g, nil
		}
	}
	if len(p.groups) >= maxGroups {
		return nil, fmt.Errorf("proxy: more than %d instance groups", maxGroups)
	}
	g := &group{name: name, ring: make([]GroupOutcome, GroupRing)}
	p.groups = append(p.groups, g)
	return g, nil
}

// ErrGroupName: a group name is empty or too long.
var ErrGroupName = errors.New("proxy: a group name is 1 to 64 characters")

// setGroup puts instance id (now or when it is added) in group name.
func (p *pool) setGroup(id, name string) error {
	if name == "" || len(name) > 64 {
		return ErrGroupName
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	g, err := p.groupLocked(name)
	if err != nil {
		return err
	}
	p.groupOf[id] = name
	if b, ok := p.byID[id]; ok {
		b.grp = g
	}
	return nil
}

// setWeights replaces the weights in one step: the next pick uses them.
func (p *pool) setWeights(w Weights) error {
	seen := map[string]bool{}
	for i, gw := range w.Groups {
		if gw.Group == "" || len(gw.Group) > 64 {
			return fmt.Errorf("weights: groups[%d]: %w", i, ErrGroupName)
		}
		if seen[gw.Group] {
			return fmt.Errorf("weights: groups[%d]: group %q listed twice", i, gw.Group)
		}
		seen[gw.Group] = true
		if gw.Weight < 0 || gw.Weight > 1_000_000 {
			return fmt.Errorf("weights: groups[%d] (%s): weight %d is not within 0 to 1000000", i, gw.Group, gw.Weight)
		}
	}
	if w.Retry != "" && !seen[w.Retry] {
		return fmt.Errorf("weights: retry group %q is not listed", w.Retry)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Create every group first, so that a refusal changes nothing.
	gs := make([]*group, len(w.Groups))
	for i, gw := range w.Groups {
		g, err := p.groupLocked(gw.Group)
		if err != nil {
			return err
		}
		gs[i] = g
	}
	retry := w.Retry
	if retry == "" {
		best := -1
		for _, gw := range w.Groups {
			if gw.Weight > best {
				best, retry = gw.Weight, gw.Group
			}
		}
	}
	for _, g := range p.groups {
		g.weight, g.current, g.retry = 0, 0, g.name == retry
	}
	for i, g := range gs {
		g.weight = w.Groups[i].Weight
	}
	p.weighted = true
	return nil
}

// clearWeights returns to no weights: every instance in rotation is a candidate.
func (p *pool) clearWeights() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.weighted = false
	for _, g := range p.groups {
		g.weight, g.current, g.retry = 0, 0, false
	}
}

// usableLocked reports whether b can take a try now as a member of its
// group: in rotation, or (trial) its ejection ended.
func usableLocked(now time.Time, b *backend, tried []*backend, trial bool) bool {
	if !b.ready || b.draining || containsBackend(tried, b) {
		return false
	}
	switch b.outlier.State(now) {
	case Closed:
		return true
	case HalfOpen:
		return trial
	}
	return false
}

func containsBackend(bs []*backend, b *backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}

// chooseGroupLocked returns the group a try goes to, or nil for no
// restriction (no weights, or the fallback). First tries advance the smooth
// weighted round robin; retries go to the retry group, then the heaviest.
func (p *pool) chooseGroupLocked(now time.Time, tried []*backend, trial bool) *group {
	if !p.weighted {
		return nil
	}
	// Which weighted groups can take the try: one with an instance in
	// rotation (or a trial); else one with a ready instance (its panic mode).
	var okBuf, readyBuf [maxGroups]bool
	ok, ready := okBuf[:len(p.groups)], readyBuf[:len(p.groups)]
	anyOK, anyReady := false, false
	for _, b := range p.list {
		g := b.grp
		if g == nil || g.weight <= 0 {
			continue
		}
		i := p.groupIndexLocked(g)
		if usableLocked(now, b, tried, trial) {
			ok[i], anyOK = true, true
		}
		if b.ready && !b.draining && !containsBackend(tried, b) {
			ready[i], anyReady = true, true
		}
	}
	cand := ok
	if !anyOK {
		if !anyReady {
			return nil
		}
		cand = ready
	}
	if len(tried) > 0 {
		var best *group
		for i, g := range p.groups {
			if !cand[i] {
				continue
			}
			if g.retry {
				return g
			}
			if best == nil || g.weight > best.weight {
				best = g
			}
		}
		return best
	}
	total := 0
	var best *group
	for i, g := range p.groups {
		if !cand[i] {
			continue
		}
		g.current += g.weight
		total += g.weight
		if best == nil || g.current > best.current {
			best = g
		}
	}
	best.current -= total
	return best
}

func (p *pool) groupIndexLocked(g *group) int {
	for i, x := range p.groups {
		if x == g {
			return i
		}
	}
	return -1
}

// groupStats returns every group's counters, in creation order.
func (p *pool) groupStats(now time.Time) []GroupStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]GroupStats, 0, len(p.groups))
	for _, g := range p.groups {
		s := GroupStats{Group: g.name, Weight: g.weight, Requests: g.requests, ByClass: g.byClass, Seq: g.requests}
		for _, b := range p.list {
			if b.grp == g {
				s.Instances++
				if b.ready && !b.draining && b.outlier.State(now) != Open {
					s.InRotation++
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// groupOutcomes appends to dst the outcomes of group name from sequence
// number since on, and returns the next sequence number and how many
// outcomes since named were overwritten before this read (lost).
func (p *pool) groupOutcomes(dst []GroupOutcome, name string, since uint64) ([]GroupOutcome, uint64, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var g *group
	for _, x := range p.groups {
		if x.name == name {
			g = x
		}
	}
	if g == nil {
		return dst, since, 0
	}
	if since > g.requests {
		since = g.requests
	}
	var lost uint64
	if g.requests-since > GroupRing {
		lost = g.requests - since - GroupRing
		since = g.requests - GroupRing
	}
	for s := since; s < g.requests; s++ {
		dst = append(dst, g.ring[s%GroupRing])
	}
	return dst, g.requests, lost
}

// SetGroup puts instance id in group name, now or when it is added: the
// group is kept by id, like a fault, so it survives the instance's re-adds.
func (d *Decision) SetGroup(id, name string) error { return d.pool.setGroup(id, name) }

// SetWeights replaces the groups' weights in one step (a blue-green switch
// is one call: {blue 0, green 100}). The next first try uses them.
func (d *Decision) SetWeights(w Weights) error { return d.pool.setWeights(w) }

// ClearWeights ends weighting: every instance in rotation is a candidate again.
func (d *Decision) ClearWeights() { d.pool.clearWeights() }

// GroupStats returns every group's counters.
func (d *Decision) GroupStats(now time.Time) []GroupStats { return d.pool.groupStats(now) }

// GroupOutcomes appends to dst group's outcomes with sequence numbers from
// since on (start with 0, or GroupStats' Seq to skip the past), and returns
// the sequence number to pass next time and how many outcomes were lost
// because more than GroupRing arrived between two reads.
func (d *Decision) GroupOutcomes(dst []GroupOutcome, group string, since uint64) (out []GroupOutcome, next, lost uint64) {
	return d.pool.groupOutcomes(dst, group, since)
}

// SetGroup puts instance id in group name (see Decision.SetGroup).
func (p *Proxy) SetGroup(id, name string) error {
	if err := p.d.SetGroup(id, name); err != nil {
		return fmt.Errorf("proxy %s: instance %s: %w", p.service, id, err)
	}
	return nil
}

// SetWeights replaces the groups' weights in one step (see Decision.SetWeights).
func (p *Proxy) SetWeights(w Weights) error {
	if err := p.d.SetWeights(w); err != nil {
		return fmt.Errorf("proxy %s: %w", p.service, err)
	}
	p.log.Info("proxy group weights set", "weights", fmt.Sprint(w.Groups), "retry", w.Retry)
	return nil
}

// ClearWeights ends weighting (see Decision.ClearWeights).
func (p *Proxy) ClearWeights() {
	p.d.ClearWeights()
	p.log.Info("proxy group weights cleared")
}

// GroupStats returns every group's counters.
func (p *Proxy) GroupStats() []GroupStats { return p.d.GroupStats(p.clock.Now()) }

// GroupOutcomes reads a group's outcomes (see Decision.GroupOutcomes).
func (p *Proxy) GroupOutcomes(dst []GroupOutcome, group string, since uint64) ([]GroupOutcome, uint64, uint64) {
	return p.d.GroupOutcomes(dst, group, since)
}
