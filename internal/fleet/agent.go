package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/etcd"
)

// Options configure an Agent.
type Options struct {
	Fleet    string // the fleet's name, an etcd key segment
	Host     string // this host's name in the fleet, an etcd key segment
	Address  string // IP or DNS name other hosts reach this host at
	Capacity int    // instances this host can run; 0 = no limit
	Version  string // medic's version, published with the membership
	Prefix   string // etcd key prefix, such as /medic
	// LeaseTTL is the time to live of this host's lease: whole seconds, at
	// least 2s. The agent renews it every LeaseTTL/3.
	LeaseTTL time.Duration
	// Grace is how long a host's key must stay gone before it counts as lost;
	// at least LeaseTTL (config.Fleet.Validate checks both).
	Grace time.Duration
	// StormShare is the storm brake's threshold: while more than this share
	// of the hosts is suspect or lost, the guard refuses every fleet-wide
	// action with ErrStorm. 0 means DefaultStormShare; 1 never brakes.
	StormShare float64
	// EtcdMember is the etcd member this host runs (published with the
	// membership, for the etcd-member-loss drill); "" for none.
	EtcdMember string
	// JoinJitter is the longest delay before the first join: the agent
	// waits JoinJitter × Rand() first, so a fleet-wide restart is not a
	// join storm on etcd. 0 joins at once.
	JoinJitter time.Duration
	// Rand returns a number in [0, 1); nil: math/rand/v2's Float64.
	Rand   func() float64
	Etcd   *etcd.Client
	Clock  clock.Clock  // nil: the wall clock
	Logger *slog.Logger // nil: discard
	// Record makes an event durable (the audit log); nil drops events.
	Record func(ctx context.Context, ev medic.Event)
}

// Agent keeps this host's membership (its lease and key) and the view of
// every host's, until Serve's context ends.
type Agent struct {
	o     Options
	clk   clock.Clock
	key   string // this host's key
	hosts string // the prefix of every host's key
	wake  chan struct{}

	mu   sync.Mutex
	view View
	// What the watch delivered and steps has not applied yet: a fresh read of
	// every host's key (reset, nil when none), then the keys changed since
	// (changed: the key's value, nil when deleted).
	reset    map[string]Present
	changed  map[string]*Present
	watching bool      // the watch has delivered a snapshot
	lease    int64     // this host's current lease; 0 while it has none
	joined   bool      // this host's key was written under lease
	safe     time.Time // the earliest moment lease can expire
	storm    Storm     // the storm brake over view
}

// HostsPrefix is the etcd prefix under which the hosts of fleet keep their keys.
func HostsPrefix(prefix, fleet string) string { return prefix + "/fleet/" + fleet + "/hosts" }

// New checks the options and returns an agent; Serve runs it.
func New(o Options) (*Agent, error) {
	switch {
	case o.Etcd == nil:
		return nil, errors.New("fleet: no etcd client")
	case o.Fleet == "" || o.Host == "":
		return nil, fmt.Errorf("fleet: fleet %q, host %q: both are required", o.Fleet, o.Host)
	case o.LeaseTTL < 2*time.Second || o.LeaseTTL%time.Second != 0:
		return nil, fmt.Errorf("fleet %s: lease TTL %v: want whole seconds, at least 2s", o.Fleet, o.LeaseTTL)
	case o.Grace < o.LeaseTTL:
		return nil, fmt.Errorf("fleet %s: grace %v is shorter than the lease TTL %v", o.Fleet, o.Grace, o.LeaseTTL)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StormShare == 0 {
		o.StormShare = DefaultStormShare
	}
	if o.JoinJitter < 0 {
		return nil, fmt.Errorf("fleet %s: join jitter %v: want 0 or more", o.Fleet, o.JoinJitter)
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.StormShare < 0 || o.StormShare > 1 {
		return nil, fmt.Errorf("fleet %s: storm brake share %g: want more than 0, at most 1", o.Fleet, o.StormShare)
	}
	hosts := HostsPrefix(o.Prefix, o.Fleet)
	return &Agent{o: o, clk: clock.Or(o.Clock), key: hosts + "/" + o.Host, hosts: hosts,
		wake: make(chan struct{}, 1), view: NewView(o.Grace)}, nil
}

// Status is the membership as this agent sees it.
type Status struct {
	Fleet string `json:"fleet"`
	Self  string `json:"self"` // this host's name
	// Joined: this host's key is in etcd under Lease, which lives at least
	// until SafeUntil. A host cut from etcd keeps Joined until its next
	// renewal fails for good, but SafeUntil stops moving.
	Joined    bool      `json:"joined"`
	Lease     int64     `json:"lease,omitempty"`
	SafeUntil time.Time `json:"safe_until,omitzero"`
	// Watching: the watch of the hosts' keys has delivered a snapshot; until
	// then Hosts is empty, not a fleet without hosts.
	Watching bool     `json:"watching"`
	LeaseTTL float64  `json:"lease_ttl_seconds"`
	Grace    float64  `json:"grace_seconds"`
	Hosts    []Member `json:"hosts"`
	// StormBrake: more than the configured share of Hosts is suspect or
	// lost, so no host takes a fleet-wide action (docs/fleet.md).
	StormBrake bool `json:"storm_brake"`
}

// Status returns the current membership.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Status{Fleet: a.o.Fleet, Self: a.o.Host, Joined: a.joined, Lease: a.lease, SafeUntil: a.safe,
		Watching: a.watching, LeaseTTL: a.o.LeaseTTL.Seconds(), Grace: a.o.Grace.Seconds(), Hosts: a.view.Members(),
		StormBrake: a.storm.Engaged}
}

// Serve joins the fleet and keeps the view until ctx ends, then leaves
// (revokes this host's lease, so that the others see it suspect at once
// rather than one lease TTL later). It returns nil once everything it
// started has stopped.
func (a *Agent) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.watch(ctx) }()
	go func() { defer wg.Done(); a.steps(ctx) }()
	a.keep(ctx)
	cancel()
	wg.Wait()
	return nil
}

// keep holds this host's key: it grants a lease, creates the key under it,
// renews the lease every LeaseTTL/3, and starts over with a new lease when
// etcd says the lease is gone. Every request is bounded by the renewal
// period, so one stuck request never costs more than one renewal.
func (a *Agent) keep(ctx context.Context) {
	period := a.o.LeaseTTL / 3
	if d := JoinDelay(a.o.JoinJitter, a.o.Rand()); d > 0 {
		a.o.Logger.Info("fleet: joining after a random delay (fleet.join_jitter)", "fleet", a.o.Fleet, "delay", d)
		t := a.clk.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
	var sess *etcd.Session
	var heldBy int64 // lease of another key found in this host's place, logged once
	for {
		if sess == nil {
			rctx, cancel := context.WithTimeout(ctx, period)
			s, err := a.o.Etcd.NewSession(rctx, a.o.LeaseTTL, a.clk)
			cancel()
			if err != nil && ctx.Err() == nil {
				a.o.Logger.Warn("fleet: cannot grant this host's lease", "fleet", a.o.Fleet, "err", err)
			}
			if err == nil {
				sess = s
				a.setSelf(s.Lease(), false, s.SafeUntil())
			}
		}
		if sess != nil && !a.isJoined() {
			heldBy = a.create(ctx, sess, period, heldBy)
		}
		t := a.clk.NewTimer(period)
		select {
		case <-ctx.Done():
			t.Stop()
			a.leave(ctx, sess)
			return
		case <-t.C():
		}
		if sess == nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, period)
		safe, err := sess.Renew(rctx)
		cancel()
		switch {
		case errors.Is(err, etcd.ErrLeaseExpired):
			a.o.Logger.Warn("fleet: this host's lease expired (cut from etcd for longer than its TTL?); joining again",
				"fleet", a.o.Fleet, "lease", strconv.FormatInt(sess.Lease(), 16))
			sess = nil
			a.setSelf(0, false, time.Time{})
		case err != nil:
			if ctx.Err() == nil {
				a.o.Logger.Warn("fleet: cannot renew this host's lease", "fleet", a.o.Fleet, "err", err, "safe_until", safe)
			}
		default:
			a.mu.Lock()
			a.safe = safe
			a.mu.Unlock()
		}
	}
}

// JoinDelay is the wait before the first join: jitter × r, r in [0, 1)
// (a value outside is clamped), so the agents of a fleet restarted at once
// spread their joins uniformly over [0, jitter].
func JoinDelay(jitter time.Duration, r float64) time.Duration {
	if jitter <= 0 || r <= 0 {
		return 0
	}
	return time.Duration(min(r, 1) * float64(jitter))
}

// create writes this host's key under sess's lease. A key already there
// under another lease is another agent with this host's name, or this
// host's previous agent whose lease has not expired yet: create leaves it
// alone and tries again at the next renewal. It returns the holding lease.
func (a *Agent) create(ctx context.Context, sess *etcd.Session, period time.Duration, heldBy int64) int64 {
	info := Info{Host: a.o.Host, Address: a.o.Address, Capacity: a.o.Capacity, Version: a.o.Version, EtcdMember: a.o.EtcdMember, Started: a.clk.Now()}
	b, err := json.Marshal(info)
	if err != nil {
		panic(err) // Info is plain data
	}
	rctx, cancel := context.WithTimeout(ctx, period)
	defer cancel()
	err = a.o.Etcd.Create(rctx, a.key, string(b), sess.Lease())
	if errors.Is(err, etcd.ErrExists) {
		kv, ok, gerr := a.o.Etcd.Get(rctx, a.key)
		switch {
		case gerr != nil:
			err = gerr
		case ok && kv.Lease == sess.Lease(): // an earlier create succeeded but its answer was lost
			err = nil
		case ok && kv.Lease != heldBy:
			a.o.Logger.Warn("fleet: this host's name is held by another lease; waiting for it to expire "+
				"(another agent with the same name, or this host's previous agent)",
				"fleet", a.o.Fleet, "host", a.o.Host, "lease", strconv.FormatInt(kv.Lease, 16))
			return kv.Lease
		default:
			return heldBy
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			a.o.Logger.Warn("fleet: cannot write this host's key", "fleet", a.o.Fleet, "key", a.key, "err", err)
		}
		return heldBy
	}
	a.setSelf(sess.Lease(), true, sess.SafeUntil())
	a.o.Logger.Info("fleet: joined", "fleet", a.o.Fleet, "host", a.o.Host, "lease", strconv.FormatInt(sess.Lease(), 16))
	return 0
}

// leave revokes this host's lease, bounded by 2s: an etcd that cannot be
// reached lets the lease expire on its own.
func (a *Agent) leave(ctx context.Context, sess *etcd.Session) {
	if sess == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := sess.Close(cctx); err != nil {
		a.o.Logger.Warn("fleet: cannot revoke this host's lease; it expires on its own", "fleet", a.o.Fleet, "err", err)
	}
	a.setSelf(0, false, time.Time{})
}

func (a *Agent) setSelf(lease int64, joined bool, safe time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lease, a.joined, a.safe = lease, joined, safe
}

func (a *Agent) isJoined() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.joined
}

// watch follows the hosts' keys (a watch, never a poll) and hands what
// changed to steps: a fresh read whole, then each changed key alone (its
// value parsed once, O(length of the host name) per event; etcd.Table).
func (a *Agent) watch(ctx context.Context) {
	tab := &etcd.Table[Present]{Prefix: a.hosts, Parse: func(host string, kv etcd.KV) (Present, error) {
		var info Info
		if err := json.Unmarshal(kv.Value, &info); err != nil {
			// The key is there, so the host's lease lives: present all the same.
			a.o.Logger.Warn("fleet: a host's key does not hold its information", "host", host, "err", err)
		}
		return Present{Info: info, Lease: kv.Lease}, nil
	}}
	a.o.Etcd.WatchChanges(ctx, a.hosts, a.clk, func(u etcd.Update) {
		changed := tab.Apply(u)
		rows := tab.Rows()
		a.mu.Lock()
		a.watching = true
		if u.Reset {
			a.reset, a.changed = rows.Clone(), nil
		} else {
			if a.changed == nil {
				a.changed = make(map[string]*Present, len(changed))
			}
			for _, host := range changed {
				if p, ok := rows.Get(host); ok {
					a.changed[host] = &p
				} else {
					a.changed[host] = nil
				}
			}
		}
		if _, ok := rows.Get(a.o.Host); !ok && a.joined {
			// This host's key is gone while its lease may live (deleted by
			// hand, or etcd restored from a snapshot): keep writes it again at
			// its next renewal. A snapshot older than the key's creation
			// does the same harmlessly: create finds the key under its own
			// lease and counts that as joined.
			a.joined = false
		}
		a.mu.Unlock()
		select {
		case a.wake <- struct{}{}:
		default:
		}
	})
}

// steps steps the view at every delivery of the watch and when a suspect
// host's grace ends, and records every change.
func (a *Agent) steps(ctx context.Context) {
	for {
		a.mu.Lock()
		at, ok := a.view.Next()
		a.mu.Unlock()
		var tc <-chan time.Time
		var t clock.Timer
		if ok {
			t = a.clk.NewTimer(max(at.Sub(a.clk.Now()), 0))
			tc = t.C()
		}
		select {
		case <-ctx.Done():
		case <-a.wake:
		case <-tc:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		now := a.clk.Now()
		var cs []Change
		a.mu.Lock()
		if a.reset == nil && len(a.changed) == 0 {
			a.view, cs = a.view.Tick(now)
		}
		if a.reset != nil {
			a.view, cs = a.view.Observe(now, a.reset)
			a.reset = nil
		}
		if len(a.changed) > 0 {
			var more []Change
			a.view, more = a.view.Step(now, a.changed)
			a.changed = nil
			cs = append(cs, more...)
		}
		prev := a.storm
		a.storm = StormOf(a.view, a.o.StormShare)
		storm := a.storm
		a.mu.Unlock()
		a.record(ctx, now, cs)
		if storm.Engaged != prev.Engaged {
			a.brake(ctx, now, storm)
		}
	}
}

// brake audits a change of the storm brake (the automation's notices
// escalate an engaged brake and resolve it when released).
func (a *Agent) brake(ctx context.Context, now time.Time, s Storm) {
	kind := medic.EventStormReleased
	if s.Engaged {
		kind = medic.EventStormEngaged
		a.o.Logger.Warn("fleet: "+s.String()+"; fleet-wide automation paused", "fleet", a.o.Fleet)
	} else {
		a.o.Logger.Info("fleet: "+s.String()+"; fleet-wide automation resumes", "fleet", a.o.Fleet)
	}
	a.emit(ctx, medic.Event{Time: now, Kind: kind, Target: "fleet/" + a.o.Fleet, Reason: s.String(),
		Fields: map[string]string{"unhealthy": strconv.Itoa(s.Unhealthy), "hosts": strconv.Itoa(s.Hosts),
			"unhealthy_share": strconv.FormatFloat(s.Share, 'g', -1, 64)}})
}

// Storm returns the storm brake's state over this agent's view.
func (a *Agent) Storm() Storm {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.storm
}

// record audits changes: the hosts present when the view was seeded as one
// event, every later change as its own.
func (a *Agent) record(ctx context.Context, now time.Time, cs []Change) {
	var initial []string
	for _, c := range cs {
		if c.Initial {
			initial = append(initial, c.Host)
			continue
		}
		kind := medic.EventHostUpdated
		switch {
		case c.From == Unknown:
			kind = medic.EventHostJoined
		case c.To == Suspect:
			kind = medic.EventHostSuspect
		case c.To == Lost:
			kind = medic.EventHostLost
		case c.From != Up:
			kind = medic.EventHostReturned
		}
		a.o.Logger.Info("fleet: host "+c.To.String(), "fleet", a.o.Fleet, "host", c.Host, "reason", c.Reason)
		a.emit(ctx, medic.Event{Time: now, Kind: kind, Target: "fleet/" + a.o.Fleet + "/" + c.Host, Reason: c.Reason,
			Fields: map[string]string{"from": c.From.String(), "to": c.To.String(), "address": c.Member.Address,
				"lease": strconv.FormatInt(c.Member.Lease, 16)}})
	}
	if len(initial) > 0 {
		a.emit(ctx, medic.Event{Time: now, Kind: medic.EventFleetView, Target: "fleet/" + a.o.Fleet,
			Reason: fmt.Sprintf("%d hosts up when this agent started watching", len(initial)),
			Fields: map[string]string{"hosts": fmt.Sprint(initial)}})
	}
}

func (a *Agent) emit(ctx context.Context, ev medic.Event) {
	ev.Actor = "fleet"
	if a.o.Record != nil {
		a.o.Record(ctx, ev)
	}
}

// Lease is this host's membership lease while it is joined and within its
// safe time, else 0: what fleet-wide publications are bound to (they go
// with it when this host dies or is cut from etcd).
func (a *Agent) Lease() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.joined || !a.clk.Now().Before(a.safe) {
		return 0
	}
	return a.lease
}
