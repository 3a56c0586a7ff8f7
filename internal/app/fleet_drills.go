package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/placement"
)

// Fleet drills (docs/fleet.md, Drills). A drill of scope fleet runs on one
// agent (the measuring one) and is aimed at another host of the fleet, which
// simulates its own loss: it is asked through etcd, never through a root
// trick on another machine. The request is the key <prefix>/fleet/<fleet>/
// drills/req/<host>, created only if absent (one drill per host at a time)
// and bound to the measuring host's lease (it goes if that host dies); the
// drilled host answers at drills/ack/<host> before it cuts itself off, and
// comes back on its own timer (it cannot hear etcd while cut).

// fleetDrillAck bounds the wait for the drilled host's answer.
const fleetDrillAck = 5 * time.Second

// fleetDrillPoll is how often the measuring agent looks at the fleet's
// ready counts and view (in memory) during a fleet drill.
const fleetDrillPoll = 100 * time.Millisecond

// hostDrillRequest asks a host to simulate its loss for For.
type hostDrillRequest struct {
	ID       int64           `json:"id"`
	Scenario string          `json:"scenario"` // host-kill | host-partition
	By       string          `json:"by"`       // the measuring host
	Actor    string          `json:"actor"`    // who asked the measuring agent
	At       time.Time       `json:"at"`
	For      config.Duration `json:"for"`
}

// hostDrillAck is the drilled host's answer.
type hostDrillAck struct {
	ID       int64     `json:"id"`
	By       string    `json:"by"`
	Accepted bool      `json:"accepted"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

type fleetDrills struct {
	m      *Main
	a      *fleet.Agent
	fs     *fleetServices
	cli    *etcd.Client
	cut    *etcd.Cut // carries every fleet etcd connection of this agent
	fleet  string
	self   string
	prefix string // <etcd prefix>/fleet/<fleet>/drills
	ttl    time.Duration
	grace  time.Duration
	storm  float64

	mu      sync.Mutex
	handled map[string]bool // requests acted on (by/id), so a watch replay never runs one twice
	active  bool            // this host is simulating its loss now
	wg      sync.WaitGroup
}

func (d *fleetDrills) reqKey(host string) string { return d.prefix + "/req/" + host }
func (d *fleetDrills) ackKey(host string) string { return d.prefix + "/ack/" + host }
func (d *fleetDrills) hostTarget(host string) string {
	return "fleet/" + d.fleet + "/" + host
}

func (d *fleetDrills) register(inj *drill.Injectors) {
	inj.Register("host-kill", &hostDrillInjector{d: d, kind: "host-kill"})
	inj.Register("host-partition", &hostDrillInjector{d: d, kind: "host-partition"})
	inj.Register("etcd-member-loss", &memberLossInjector{d: d})
}

// hostDrillInjector is the measuring side of host-kill and host-partition.
type hostDrillInjector struct {
	d    *fleetDrills
	kind string
}

// outage is how long the drilled host stays gone: the time given, or the
// lease TTL and the grace (until the others count it lost) and 10 s for
// the survivors to start and ready its share.
func (h *hostDrillInjector) outage(req drill.Request) time.Duration {
	if req.Duration > 0 {
		return req.Duration.D()
	}
	return h.d.ttl + h.d.grace + 10*time.Second
}

// Plan refuses a host drill that would make things worse: not from the
// drilled host itself, only with every host up (one host fault at a time),
// not when losing one more host engages the storm brake, only when every
// instance of each fleet service the host runs is ready fleet-wide (the
// disruption budget: the drill is the one disruption), and only when the
// survivors can hold the desired count within max_per_host and capacity.
func (h *hostDrillInjector) Plan(req drill.Request, sc *drill.Scenario, subj *drill.Subject) error {
	d := h.d
	host := req.Host
	st := d.a.Status()
	switch {
	case host == d.self:
		return fmt.Errorf("this agent is %s: run the drill from another host's agent (medic --addr), which outlives the simulated loss and measures from the fleet's side", host)
	case !st.Joined || d.a.Lease() == 0:
		return fmt.Errorf("this host %s is not a joined member of fleet %s (its lease is not held): it cannot ask for or measure a fleet drill", d.self, d.fleet)
	case !st.Watching:
		return fmt.Errorf("this agent has not read the fleet's hosts yet")
	case st.StormBrake:
		return fmt.Errorf("storm brake engaged in fleet %s: no drill while automation is paused", d.fleet)
	}
	found := false
	var others []placement.Host
	for _, m := range st.Hosts {
		if m.Host == host {
			found = true
			if m.State != fleet.Up {
				return fmt.Errorf("host %s is %s: a drill simulates the loss of an up host", host, m.State)
			}
			continue
		}
		if m.State != fleet.Up {
			return fmt.Errorf("host %s is %s: one host fault at a time, the drill waits until every host is up", m.Host, m.State)
		}
		others = append(others, placement.Host{Name: m.Host, Capacity: m.Capacity})
	}
	if !found {
		return fmt.Errorf("no host %s in fleet %s (see medic hosts)", host, d.fleet)
	}
	if n := len(st.Hosts); float64(1) > d.storm*float64(n) {
		return fmt.Errorf("losing 1 of the %d hosts engages the storm brake (above %g of the hosts): the fleet would pause its automation and not restore capacity", n, d.storm)
	}
	for _, name := range d.fs.names {
		sf, ok := d.fs.spec(name)
		if !ok {
			continue
		}
		spec := placement.Spec{Instances: sf.Instances, Hosts: sf.Hosts, MaxPerHost: sf.MaxPerHost}
		ready := d.fs.readyOf(name)
		if ready[host] == 0 {
			continue // the host runs none of it: nothing to restore
		}
		total := 0
		for _, r := range ready {
			total += r
		}
		if total < sf.Instances {
			return fmt.Errorf("disruption budget: %s has %d of %d instances ready fleet-wide: a disruption is already under way, the drill would add one", name, total, sf.Instances)
		}
		if _, short := placement.Target(spec, others); short > 0 {
			return fmt.Errorf("capacity: without %s the other hosts hold %d of %s's %d instances (max_per_host %d, their capacity): %d would be short",
				host, sf.Instances-short, name, sf.Instances, sf.MaxPerHost, short)
		}
	}
	out := h.outage(req)
	if out < d.ttl+d.grace+time.Second {
		return fmt.Errorf("duration %v: the host must stay gone longer than lease_ttl + grace (%v) for the others to count it lost", out, d.ttl+d.grace)
	}
	if out > time.Hour {
		return fmt.Errorf("duration %v: at most 1h", out)
	}
	sc.Hold = config.Duration(out)
	sc.Deadline = config.Duration(out + time.Second)
	subj.Host = d.hostTarget(host)
	return nil
}

// Inject asks the host to simulate its loss and watches the fleet's
// capacity of the drilled service from here until the restore.
func (h *hostDrillInjector) Inject(ctx context.Context, t *drill.Target) (drill.Restore, error) {
	d := h.d
	lease := d.a.Lease()
	if lease == 0 {
		return nil, fmt.Errorf("this host %s does not hold its fleet lease", d.self)
	}
	// The outage is the scenario's hold (Plan set it).
	req := hostDrillRequest{ID: t.Drill, Scenario: h.kind, By: d.self, Actor: t.Actor(), At: t.Clock.Now(), For: config.Duration(t.Hold)}
	b, _ := json.Marshal(req)
	cctx, cancel := context.WithTimeout(ctx, fleetDrillAck)
	defer cancel()
	if err := d.cli.Create(cctx, d.reqKey(t.Host), string(b), lease); err != nil {
		if errors.Is(err, etcd.ErrExists) {
			return nil, fmt.Errorf("host %s is already under a fleet drill (%s exists)", t.Host, d.reqKey(t.Host))
		}
		return nil, fmt.Errorf("ask host %s for the drill: %w", t.Host, err)
	}
	drop := func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = d.cli.Delete(c, d.reqKey(t.Host))
		_ = d.cli.Delete(c, d.ackKey(t.Host))
	}
	asked := t.Clock.Now()
	ack, err := d.waitAck(cctx, t.Host, t.Drill)
	if err != nil {
		drop()
		return nil, fmt.Errorf("host %s did not answer the drill within %v (its agent must run a medic with fleet drills and hold its lease): %w", t.Host, fleetDrillAck, err)
	}
	if !ack.Accepted {
		drop()
		return nil, fmt.Errorf("host %s refused the drill: %s", t.Host, ack.Reason)
	}
	t.Note("asked %s to simulate its %s for %v; it accepted %.2fs later", t.Host,
		map[string]string{"host-kill": "death", "host-partition": "partition"}[h.kind], t.Hold, t.Clock.Now().Sub(asked).Seconds())
	t.Figure("lease_ttl_seconds", d.ttl.Seconds())
	t.Figure("grace_seconds", d.grace.Seconds())
	mon := d.watchCapacity(t)
	return func(ctx context.Context) error {
		defer drop()
		defer mon.stop()
		start := t.Clock.Now()
		sf, _ := d.fs.spec(t.Service)
		spec := placement.Spec{Instances: sf.Instances, Hosts: sf.Hosts, MaxPerHost: sf.MaxPerHost}
		var returned bool
		for {
			st := d.a.Status()
			var hosts []placement.Host
			up := false
			for _, m := range st.Hosts {
				if m.Host == t.Host && m.State == fleet.Up {
					up = true
				}
				hosts = append(hosts, placement.Host{Name: m.Host, Lost: m.State == fleet.Lost, Capacity: m.Capacity})
			}
			if up && !returned {
				returned = true
				t.Figure("returned_seconds", t.Clock.Now().Sub(start).Seconds())
			}
			if up {
				target, _ := placement.Target(spec, hosts)
				ready := d.fs.readyOf(t.Service)
				ok := true
				for _, m := range hosts {
					ok = ok && ready[m.Name] == target[m.Name]
				}
				if ok {
					s := t.Clock.Now().Sub(start).Seconds()
					t.Figure("rebalanced_seconds", s)
					t.Note("%s back up and the fleet rebalanced to %s, all ready, %.2fs after the end of its outage", t.Host, target, s)
					return nil
				}
			}
			tm := t.Clock.NewTimer(fleetDrillPoll)
			select {
			case <-ctx.Done():
				tm.Stop()
				if !returned {
					return fmt.Errorf("host %s did not rejoin the fleet within %.0fs of the end of its outage", t.Host, t.Clock.Now().Sub(start).Seconds())
				}
				return fmt.Errorf("host %s rejoined but the fleet did not rebalance %s within %.0fs", t.Host, t.Service, t.Clock.Now().Sub(start).Seconds())
			case <-tm.C():
			}
		}
	}, nil
}

// waitAck waits for host's answer to drill id (a watch of its ack key).
func (d *fleetDrills) waitAck(ctx context.Context, host string, id int64) (hostDrillAck, error) {
	return watchFor(ctx, d, d.ackKey(host), func(a hostDrillAck) bool {
		return a.ID == id && a.By == d.self // else an answer to an earlier drill
	})
}

// watchFor watches key until it holds a JSON value of T that accept
// takes, and returns it; ctx's error when it ends first.
func watchFor[T any](ctx context.Context, d *fleetDrills, key string, accept func(T) bool) (T, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan T, 1)
	err := d.cli.Watch(ctx, key, d.m.Clock, func(s etcd.Snapshot) {
		kv, ok := s.KVs[key]
		if !ok {
			return
		}
		var a T
		if json.Unmarshal(kv.Value, &a) != nil || !accept(a) {
			return
		}
		select {
		case got <- a:
		default:
		}
		cancel()
	})
	select {
	case a := <-got:
		return a, nil
	default:
	}
	if err == nil {
		err = ctx.Err()
	}
	var zero T
	return zero, err
}

// capacityMonitor records, during a fleet drill, the drilled service's
// ready instances on the hosts other than the drilled one against the
// desired count: fleet.capacity.degraded when below, .restored when back.
type capacityMonitor struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (c *capacityMonitor) stop() { c.cancel(); <-c.done }

func (d *fleetDrills) watchCapacity(t *drill.Target) *capacityMonitor {
	ctx, cancel := context.WithCancel(context.Background())
	c := &capacityMonitor{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		state := "" // "", degraded, restored
		least := -1
		defer func() {
			if least >= 0 {
				t.Figure("survivors_ready_min", float64(least))
			}
		}()
		for {
			sf, _ := d.fs.spec(t.Service)
			n := 0
			for h, r := range d.fs.readyOf(t.Service) {
				if h != t.Host {
					n += r
				}
			}
			if least < 0 || n < least {
				least = n
			}
			next := state
			switch {
			case n < sf.Instances && state != "degraded":
				next = "degraded"
			case n >= sf.Instances && state == "degraded":
				next = "restored"
			}
			if next != state {
				state = next
				kind := medic.EventFleetCapacityDegraded
				if state == "restored" {
					kind = medic.EventFleetCapacityRestored
				}
				d.m.Record(ctx, medic.Event{Time: t.Clock.Now(), Kind: kind, Target: t.Service, Actor: t.Actor(),
					Reason: fmt.Sprintf("%d of %d instances of %s ready on the hosts other than %s", n, sf.Instances, t.Service, t.Host),
					Fields: map[string]string{"ready": strconv.Itoa(n), "desired": strconv.Itoa(sf.Instances), "host": t.Host}})
			}
			tm := t.Clock.NewTimer(fleetDrillPoll)
			select {
			case <-ctx.Done():
				tm.Stop()
				return
			case <-tm.C():
			}
		}
	}()
	return c
}

// serve is the drilled side: it follows the requests aimed at this host and
// simulates its loss for each new one, until ctx ends (then an outage in
// progress ends at once: medic stopping never leaves its etcd cut).
func (d *fleetDrills) serve(ctx context.Context) {
	key := d.reqKey(d.self)
	_ = d.cli.Watch(ctx, key, d.m.Clock, func(s etcd.Snapshot) {
		kv, ok := s.KVs[key]
		if !ok {
			return
		}
		var r hostDrillRequest
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			d.m.Logger.Warn("fleet drill: a request this host cannot read", "key", key, "err", err)
			return
		}
		id := r.By + "/" + strconv.FormatInt(r.ID, 10)
		d.mu.Lock()
		seen := d.handled[id]
		d.handled[id] = true
		d.mu.Unlock()
		if seen {
			return
		}
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.simulate(ctx, r) }()
	})
	d.wg.Wait()
}

// serveAll follows both kinds of request: those aimed at this host, and the
// fleet's etcd-member-loss drill (every agent observes it).
func (d *fleetDrills) serveAll(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.serveMember(ctx) }()
	d.serve(ctx)
	wg.Wait()
}

// refuseHere says why this host will not simulate its loss now ("" when it will).
func (d *fleetDrills) refuseHere(r hostDrillRequest) string {
	cfg := d.m.cfg
	switch {
	case r.Scenario != "host-kill" && r.Scenario != "host-partition":
		return fmt.Sprintf("unknown fleet drill %q", r.Scenario)
	case r.By == d.self:
		return "asked by itself"
	case r.For.D() <= 0 || r.For.D() > time.Hour:
		return fmt.Sprintf("outage %v: want more than 0, at most 1h", r.For)
	case d.a.Lease() == 0:
		return "this host does not hold its fleet lease"
	}
	for _, name := range d.fs.names {
		svc := cfg.Services[name]
		switch {
		case svc == nil:
		case !svc.Drills.Allow:
			return fmt.Sprintf("fleet service %s does not allow drills on this host (drills: {allow: true})", name)
		case svc.Remedy != nil && svc.Remedy.Protected:
			return fmt.Sprintf("fleet service %s is protected on this host (remedy.protected)", name)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active {
		return "this host is already simulating its loss"
	}
	return ""
}

func (d *fleetDrills) answer(ctx context.Context, r hostDrillRequest, why string) error {
	b, _ := json.Marshal(hostDrillAck{ID: r.ID, By: r.By, Accepted: why == "", Reason: why, At: d.m.Clock.Now()})
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return d.cli.Put(cctx, d.ackKey(d.self), string(b))
}

// simulate takes this host out of the fleet for r.For as the scenario says,
// then brings it back: host-kill SIGKILLs its fleet instances (and keeps
// them stopped), cuts its etcd connections (its lease expires, nothing it
// publishes changes) and answers 503 on its health endpoints; host-partition
// cuts its etcd connections and its peer traffic (its proxies stop sending
// to the other hosts, its stand-down check reaches no peer) and leaves its
// instances to the stand-down rule. At the end the cut is lifted: the agent
// joins again with a new lease and runs the share etcd gives it.
func (d *fleetDrills) simulate(ctx context.Context, r hostDrillRequest) {
	why := d.refuseHere(r)
	if err := d.answer(ctx, r, why); err != nil {
		d.m.Logger.Warn("fleet drill: cannot answer the request", "by", r.By, "drill", r.ID, "err", err)
		return
	}
	actor := fmt.Sprintf("drill:%d@%s", r.ID, r.By)
	target := "fleet/" + d.fleet + "/" + d.self
	if why != "" {
		d.m.Record(ctx, medic.Event{Time: d.m.Clock.Now(), Kind: "drill.refused", Target: target, Actor: actor,
			Reason: "fleet drill " + r.Scenario + " asked by " + r.By + ": " + why, Fields: map[string]string{"scenario": r.Scenario}})
		return
	}
	d.mu.Lock()
	d.active = true
	d.mu.Unlock()
	start := d.m.Clock.Now()
	var killed []string
	if r.Scenario == "host-kill" {
		pids := d.fs.fleetPIDs()
		d.fs.setDrill(r.Scenario)
		d.cut.Cut()
		for _, pid := range pids {
			if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			killed = append(killed, strconv.Itoa(pid))
		}
		for _, name := range d.fs.names {
			if err := d.fs.scale(ctx, name, 0); err != nil {
				d.m.Logger.Warn("fleet drill: keep the killed instances stopped", "service", name, "err", err)
			}
		}
	} else {
		d.fs.setDrill(r.Scenario)
		d.cut.Cut()
	}
	d.m.Logger.Warn("fleet drill: this host simulates its loss", "scenario", r.Scenario, "by", r.By, "drill", r.ID, "for", r.For)
	d.m.Record(ctx, medic.Event{Time: start, Kind: medic.EventFleetDrillDown, Target: target, Actor: actor,
		Reason: fmt.Sprintf("%s asked by %s (%s): this host simulates its loss for %v", r.Scenario, r.By, r.Actor, r.For),
		Fields: map[string]string{"scenario": r.Scenario, "for": r.For.String(), "killed": fmt.Sprint(killed)}})
	tm := d.m.Clock.NewTimer(r.For.D())
	select {
	case <-ctx.Done():
	case <-tm.C():
	}
	tm.Stop()
	d.cut.Restore()
	d.fs.setDrill("")
	d.mu.Lock()
	d.active = false
	d.mu.Unlock()
	d.m.Logger.Info("fleet drill: this host's simulated loss ended; joining again", "scenario", r.Scenario)
	d.m.Record(context.WithoutCancel(ctx), medic.Event{Time: d.m.Clock.Now(), Kind: medic.EventFleetDrillUp, Target: target, Actor: actor,
		Reason: fmt.Sprintf("%s asked by %s ended after %.1fs: etcd reachable again, this host joins again and runs the share etcd gives it",
			r.Scenario, r.By, d.m.Clock.Now().Sub(start).Seconds()),
		Fields: map[string]string{"scenario": r.Scenario}})
}
