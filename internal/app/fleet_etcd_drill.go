package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/fleet"
)

// The etcd-member-loss drill (docs/fleet.md, Drills). medic does not run
// the etcd members; a host may declare the one it runs beside it
// (fleet.etcd_member: its name and the argv that stop and start it), and
// publishes the name with its membership. The drill, run from any agent,
// picks a declared member whose loss keeps the quorum and asks its host
// through etcd (the key <prefix>/fleet/<fleet>/drills/etcd-member, created
// only if absent and bound to the drilling host's lease: one such drill in
// the fleet at a time). That host stops the member, answers, and starts it
// again on its own timer. Every agent follows the same key: while it is
// there, each checks the member's health and reports, under
// drills/etcd-member-seen/<host>, when it saw the member unhealthy and
// healthy again and under which fleet lease (a report written through the
// remaining members is itself the proof that its etcd client failed over).

// Events of the etcd-member-loss drill; Target is "etcd/<member>".
const (
	eventEtcdMemberStopped   medic.EventKind = "fleet.etcd.member_stopped"   // the host that runs it stopped it
	eventEtcdMemberStarted   medic.EventKind = "fleet.etcd.member_started"   // … and started it again
	eventEtcdMemberUnhealthy medic.EventKind = "fleet.etcd.member_unhealthy" // this agent saw it unhealthy
	eventEtcdMemberHealthy   medic.EventKind = "fleet.etcd.member_healthy"   // … and healthy again
	eventEtcdMemberAbsorbed  medic.EventKind = "fleet.etcd.member_loss_absorbed"
)

// memberCheckEvery and memberCheckTimeout bound the health checks every
// agent makes of the stopped member during the drill (one status request
// to that member's endpoint each time; nothing when no drill runs).
const (
	memberCheckEvery   = 200 * time.Millisecond
	memberCheckTimeout = 500 * time.Millisecond
	// memberDrillDefault is the default time the member stays stopped.
	memberDrillDefault = 10 * time.Second
	// memberObserveMax bounds an agent's observation of one drill, whatever
	// happens to the request key: the outage, the start and a minute.
	memberObserveMax = time.Minute
)

type memberDrillRequest struct {
	ID       int64           `json:"id"`
	By       string          `json:"by"`    // the drilling host
	Actor    string          `json:"actor"` // who asked the drilling agent
	Host     string          `json:"host"`  // the host that runs the member
	Member   string          `json:"member"`
	Endpoint string          `json:"endpoint"` // the member's client URL
	At       time.Time       `json:"at"`
	For      config.Duration `json:"for"`
}

type memberDrillAck struct {
	ID       int64     `json:"id"`
	By       string    `json:"by"`
	Accepted bool      `json:"accepted"`
	Reason   string    `json:"reason,omitempty"`
	Stopping bool      `json:"stopping,omitempty"` // accepted, the stop command runs
	Timeout  float64   `json:"timeout_seconds,omitempty"`
	Stopped  time.Time `json:"stopped,omitzero"` // the stop command returned
	Started  time.Time `json:"started,omitzero"` // the start command returned
	StartErr string    `json:"start_error,omitempty"`
	At       time.Time `json:"at"`
}

type memberSeen struct {
	ID        int64     `json:"id"`
	By        string    `json:"by"`
	Host      string    `json:"host"`
	Unhealthy time.Time `json:"unhealthy,omitzero"`
	Healthy   time.Time `json:"healthy,omitzero"`
	Lease     int64     `json:"lease"`         // this host's fleet lease when the drill began here
	LeaseNow  int64     `json:"lease_now"`     // … and at this report
	Errors    int       `json:"check_errors"`  // failed health checks of the member
	Joined    bool      `json:"joined_at_end"` // still a joined member at this report
}

func (d *fleetDrills) memberKey() string             { return d.prefix + "/etcd-member" }
func (d *fleetDrills) memberAckKey() string          { return d.prefix + "/etcd-member-ack" }
func (d *fleetDrills) memberSeenPrefix() string      { return d.prefix + "/etcd-member-seen/" }
func (d *fleetDrills) memberSeenKey(h string) string { return d.memberSeenPrefix() + h }

// memberLossInjector is the drilling side of etcd-member-loss.
type memberLossInjector struct{ d *fleetDrills }

// memberPick is the member a drill stops and the host that runs it.
type memberPick struct {
	host, member, endpoint string
	leader                 bool
}

// pickMember chooses the member to stop: the one named, or one declared by
// an up host, a follower first (its loss costs no election), by name. It
// refuses when any member is unhealthy or when the healthy members less
// one would lose the quorum. Pure: the members' health and the hosts are
// given.
func pickMember(members []etcd.MemberHealth, hosts []fleet.Member, want string) (memberPick, error) {
	if len(members) == 0 {
		return memberPick{}, errors.New("etcd lists no members")
	}
	healthy := 0
	for _, m := range members {
		if !m.Healthy {
			return memberPick{}, fmt.Errorf("etcd member %s is unhealthy (%s): one fault at a time, the drill waits until every member is healthy", m.Name, m.Err)
		}
		healthy++
	}
	if q := etcd.Quorum(len(members)); healthy-1 < q {
		return memberPick{}, fmt.Errorf("losing 1 of the %d etcd members leaves %d, below the quorum of %d: etcd would stop taking writes (the drill never makes things worse)", len(members), healthy-1, q)
	}
	declared := map[string]string{} // member → host
	for _, h := range hosts {
		if h.EtcdMember != "" && h.State == fleet.Up {
			declared[h.EtcdMember] = h.Host
		}
	}
	var cands []memberPick
	for _, m := range members {
		if want != "" && m.Name != want {
			continue
		}
		host, ok := declared[m.Name]
		if !ok {
			if want != "" {
				return memberPick{}, fmt.Errorf("no up host of the fleet declares etcd member %s (fleet.etcd_member on the host that runs it says how to stop and start it): medic does not run the etcd members and stops one only through the host that declares it", want)
			}
			continue
		}
		cands = append(cands, memberPick{host: host, member: m.Name, endpoint: m.Endpoint, leader: m.Leader})
	}
	if len(cands) == 0 {
		if want != "" {
			return memberPick{}, fmt.Errorf("etcd has no member %s (members: %s)", want, memberNames(members))
		}
		return memberPick{}, fmt.Errorf("no up host of the fleet declares one of the etcd members (%s): medic does not run the etcd members and the config of the host that runs one must say how to stop and start it (fleet.etcd_member: {name, stop, start}; docs/fleet.md, Drills)", memberNames(members))
	}
	slices.SortStableFunc(cands, func(a, b memberPick) int {
		if a.leader != b.leader {
			if a.leader {
				return 1
			}
			return -1
		}
		return strings.Compare(a.member, b.member)
	})
	return cands[0], nil
}

func memberNames(ms []etcd.MemberHealth) string {
	var ns []string
	for _, m := range ms {
		ns = append(ns, m.Name)
	}
	return strings.Join(ns, ", ")
}

func (h *memberLossInjector) Plan(req drill.Request, sc *drill.Scenario, subj *drill.Subject) error {
	d := h.d
	st := d.a.Status()
	switch {
	case !st.Joined || d.a.Lease() == 0:
		return fmt.Errorf("this host %s is not a joined member of fleet %s (its lease is not held): it cannot ask for or measure a fleet drill", d.self, d.fleet)
	case !st.Watching:
		return fmt.Errorf("this agent has not read the fleet's hosts yet")
	case st.StormBrake:
		return fmt.Errorf("storm brake engaged in fleet %s: no drill while automation is paused", d.fleet)
	}
	for _, m := range st.Hosts {
		if m.State != fleet.Up {
			return fmt.Errorf("host %s is %s: one fault at a time, the drill waits until every host is up", m.Host, m.State)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	members, err := d.cli.Members(ctx, time.Second)
	if err != nil {
		return fmt.Errorf("read the etcd members: %w", err)
	}
	p, err := pickMember(members, st.Hosts, req.Member)
	if err != nil {
		return err
	}
	out := memberDrillDefault
	if req.Duration > 0 {
		out = req.Duration.D()
	}
	if out < time.Second || out > time.Hour {
		return fmt.Errorf("duration %v: the member stays stopped from 1s to 1h", out)
	}
	sc.Hold = config.Duration(out)
	sc.Deadline = config.Duration(out + time.Second)
	subj.Member = p.member
	subj.Host = d.hostTarget(p.host)
	return nil
}

func (h *memberLossInjector) Inject(ctx context.Context, t *drill.Target) (drill.Restore, error) {
	d := h.d
	lease := d.a.Lease()
	if lease == 0 {
		return nil, fmt.Errorf("this host %s does not hold its fleet lease", d.self)
	}
	// Plan picked the member; read the members again for its host and endpoint.
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	members, err := d.cli.Members(cctx, time.Second)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("read the etcd members: %w", err)
	}
	st := d.a.Status()
	p, err := pickMember(members, st.Hosts, t.Member)
	if err != nil {
		return nil, err
	}
	var hosts []string
	for _, m := range st.Hosts {
		hosts = append(hosts, m.Host)
	}
	req := memberDrillRequest{ID: t.Drill, By: d.self, Actor: t.Actor(), Host: p.host, Member: p.member, Endpoint: p.endpoint,
		At: t.Clock.Now(), For: config.Duration(t.Hold)}
	b, _ := json.Marshal(req)
	actx, cancel := context.WithTimeout(ctx, fleetDrillAck)
	defer cancel()
	if err := d.cli.Create(actx, d.memberKey(), string(b), lease); err != nil {
		if errors.Is(err, etcd.ErrExists) {
			return nil, fmt.Errorf("an etcd-member-loss drill is already under way in fleet %s (%s exists)", d.fleet, d.memberKey())
		}
		return nil, fmt.Errorf("ask host %s to stop etcd member %s: %w", p.host, p.member, err)
	}
	drop := func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = d.cli.Delete(c, d.memberKey())
		_ = d.cli.Delete(c, d.memberAckKey())
		_ = d.cli.DeletePrefix(c, d.memberSeenPrefix())
	}
	asked := t.Clock.Now()
	ack, err := d.waitMemberAck(actx, t.Drill, func(a memberDrillAck) bool { return true })
	if err == nil && ack.Accepted && ack.Stopped.IsZero() {
		// Accepted: the stop command runs, within the host's timeout.
		wctx, wcancel := context.WithTimeout(ctx, time.Duration(ack.Timeout*float64(time.Second))+2*time.Second)
		ack, err = d.waitMemberAck(wctx, t.Drill, func(a memberDrillAck) bool { return !a.Accepted || !a.Stopped.IsZero() })
		wcancel()
	}
	if err != nil {
		drop()
		return nil, fmt.Errorf("host %s did not answer the etcd-member-loss drill (its agent must run a medic with fleet drills and hold its lease): %w", p.host, err)
	}
	if !ack.Accepted {
		drop()
		return nil, fmt.Errorf("host %s refused to stop etcd member %s: %s", p.host, p.member, ack.Reason)
	}
	role := "a follower"
	if p.leader {
		role = "the leader"
	}
	t.Note("asked %s to stop etcd member %s (%s, %s) for %v; stopped %.2fs later", p.host, p.member, role, p.endpoint, t.Hold, ack.Stopped.Sub(asked).Seconds())
	t.Figure("members", float64(len(members)))
	t.Figure("stopped_was_leader", map[bool]float64{true: 1, false: 0}[p.leader])
	mon := d.watchMemberSeen(t, req, ack.Stopped, hosts)
	return func(ctx context.Context) error {
		defer drop()
		defer mon.stop()
		return mon.waitBack(ctx, t)
	}, nil
}

// waitMemberAck waits for an answer to drill id that done accepts.
func (d *fleetDrills) waitMemberAck(ctx context.Context, id int64, done func(memberDrillAck) bool) (memberDrillAck, error) {
	return watchFor(ctx, d, d.memberAckKey(), func(a memberDrillAck) bool {
		return a.ID == id && a.By == d.self && done(a)
	})
}

// seenMonitor follows every host's reports during an etcd-member-loss drill.
type seenMonitor struct {
	d       *fleetDrills
	req     memberDrillRequest
	stopped time.Time
	hosts   []string
	cancel  context.CancelFunc
	done    chan struct{}

	mu       sync.Mutex
	seen     map[string]memberSeen
	absorbed bool
}

func (s *seenMonitor) stop() { s.cancel(); <-s.done }

func (d *fleetDrills) watchMemberSeen(t *drill.Target, req memberDrillRequest, stopped time.Time, hosts []string) *seenMonitor {
	ctx, cancel := context.WithCancel(context.Background())
	s := &seenMonitor{d: d, req: req, stopped: stopped, hosts: hosts, cancel: cancel, done: make(chan struct{}), seen: map[string]memberSeen{}}
	go func() {
		defer close(s.done)
		_ = d.cli.Watch(ctx, d.memberSeenPrefix(), d.m.Clock, func(snap etcd.Snapshot) {
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, kv := range snap.KVs {
				var r memberSeen
				if json.Unmarshal(kv.Value, &r) != nil || r.ID != req.ID || r.By != req.By {
					continue
				}
				s.seen[r.Host] = r
			}
			if s.absorbed {
				return
			}
			var last time.Time
			for _, h := range hosts {
				r, ok := s.seen[h]
				if !ok || r.Unhealthy.IsZero() {
					return
				}
				if r.Unhealthy.After(last) {
					last = r.Unhealthy
				}
			}
			s.absorbed = true
			all := last.Sub(stopped).Seconds()
			t.Figure("noticed_all_seconds", all)
			d.m.Record(ctx, medic.Event{Time: t.Clock.Now(), Kind: eventEtcdMemberAbsorbed, Target: "etcd/" + req.Member, Actor: t.Actor(),
				Reason: fmt.Sprintf("every host (%s) saw etcd member %s unhealthy, the last %.2fs after it stopped, and reported it through the other members", strings.Join(hosts, ", "), req.Member, all),
				Fields: map[string]string{"member": req.Member, "host": req.Host, "hosts": strings.Join(hosts, " ")}})
		})
	}()
	return s
}

// waitBack waits, after the outage, until every host saw the member
// healthy again, and checks that no host lost its fleet lease meanwhile.
func (s *seenMonitor) waitBack(ctx context.Context, t *drill.Target) error {
	d := s.d
	for {
		ack, _ := d.lastMemberAck(ctx, s.req.ID)
		if ack.StartErr != "" {
			return fmt.Errorf("host %s could not start etcd member %s again: %s (start it by hand)", s.req.Host, s.req.Member, ack.StartErr)
		}
		s.mu.Lock()
		back, last := !ack.Started.IsZero(), time.Time{}
		var lost []string
		for _, h := range s.hosts {
			r, ok := s.seen[h]
			if !ok || r.Healthy.IsZero() {
				back = false
				continue
			}
			if r.Healthy.After(last) {
				last = r.Healthy
			}
			if r.Lease != r.LeaseNow || !r.Joined {
				lost = append(lost, fmt.Sprintf("%s (lease %x, then %x)", h, r.Lease, r.LeaseNow))
			}
		}
		s.mu.Unlock()
		if back {
			ret := max(last.Sub(ack.Started), 0).Seconds()
			t.Figure("returned_seconds", ret)
			t.Note("etcd member %s started again by %s; every host saw it healthy %.2fs later", s.req.Member, s.req.Host, ret)
			if len(lost) > 0 {
				return fmt.Errorf("hosts lost their fleet lease during the loss of etcd member %s: %s", s.req.Member, strings.Join(lost, ", "))
			}
			return nil
		}
		tm := t.Clock.NewTimer(fleetDrillPoll)
		select {
		case <-ctx.Done():
			tm.Stop()
			return fmt.Errorf("etcd member %s not seen healthy again by every host (%s) after the outage: %w", s.req.Member, strings.Join(s.hosts, ", "), ctx.Err())
		case <-tm.C():
		}
	}
}

func (d *fleetDrills) lastMemberAck(ctx context.Context, id int64) (memberDrillAck, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	kv, ok, err := d.cli.Get(cctx, d.memberAckKey())
	if err != nil || !ok {
		return memberDrillAck{}, err
	}
	var a memberDrillAck
	if json.Unmarshal(kv.Value, &a) != nil || a.ID != id {
		return memberDrillAck{}, nil
	}
	return a, nil
}

// serveMember follows the etcd-member-loss request of the fleet: every
// agent observes the member named; the host that runs it stops and starts it.
func (d *fleetDrills) serveMember(ctx context.Context) {
	key := d.memberKey()
	var (
		cur    string
		cancel context.CancelFunc = func() {}
	)
	_ = d.cli.Watch(ctx, key, d.m.Clock, func(s etcd.Snapshot) {
		kv, ok := s.KVs[key]
		var r memberDrillRequest
		if ok && json.Unmarshal(kv.Value, &r) != nil {
			d.m.Logger.Warn("fleet drill: an etcd-member-loss request this host cannot read", "key", key)
			ok = false
		}
		id := ""
		if ok {
			id = r.By + "/" + strconv.FormatInt(r.ID, 10)
		}
		if id == cur {
			return
		}
		cancel() // the request is gone or replaced: the observation ends
		cur, cancel = id, func() {}
		if !ok {
			return
		}
		d.mu.Lock()
		seen := d.handled["etcd/"+id]
		d.handled["etcd/"+id] = true
		d.mu.Unlock()
		if seen {
			return
		}
		octx, ocancel := context.WithTimeout(ctx, r.For.D()+memberObserveMax)
		cancel = ocancel
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.observeMember(octx, r) }()
		if r.Host == d.self {
			d.wg.Add(1)
			go func() { defer d.wg.Done(); d.stopMember(ctx, r) }()
		}
	})
	cancel()
}

// observeMember checks the member's health every memberCheckEvery until
// ctx ends and reports what it saw, with this host's lease, in its own
// audit and under drills/etcd-member-seen/<host>.
func (d *fleetDrills) observeMember(ctx context.Context, r memberDrillRequest) {
	actor := fmt.Sprintf("drill:%d@%s", r.ID, r.By)
	rep := memberSeen{ID: r.ID, By: r.By, Host: d.self, Lease: d.a.Lease()}
	// A report that fails (a write during etcd's election after a leader's
	// loss fails, and clientv3 does not retry a put) is written again at
	// every check until it lands.
	pending, warned := false, false
	report := func() {
		rep.LeaseNow, rep.Joined = d.a.Lease(), d.a.Status().Joined
		b, _ := json.Marshal(rep)
		cctx, cancel := context.WithTimeout(ctx, memberCheckTimeout)
		defer cancel()
		err := d.cli.Put(cctx, d.memberSeenKey(d.self), string(b))
		pending = err != nil
		if err != nil && ctx.Err() == nil && !warned {
			warned = true
			d.m.Logger.Warn("fleet drill: cannot report what this host saw of the etcd member yet; trying again", "member", r.Member, "err", err)
		}
	}
	unhealthy := false
	for {
		_, err := d.cli.MemberHealthy(ctx, r.Endpoint, memberCheckTimeout)
		if ctx.Err() != nil {
			return
		}
		now := d.m.Clock.Now()
		switch {
		case err != nil && !unhealthy:
			unhealthy = true
			rep.Unhealthy, rep.Errors = now, rep.Errors+1
			d.m.Record(ctx, medic.Event{Time: now, Kind: eventEtcdMemberUnhealthy, Target: "etcd/" + r.Member, Actor: actor,
				Reason: fmt.Sprintf("etcd member %s (%s) does not answer: %v; this host's etcd client uses the other members", r.Member, r.Endpoint, err),
				Fields: map[string]string{"member": r.Member, "endpoint": r.Endpoint}})
			report()
		case err != nil:
			rep.Errors++
			if pending {
				report()
			}
		case err == nil && unhealthy:
			unhealthy = false
			rep.Healthy = now
			d.m.Record(ctx, medic.Event{Time: now, Kind: eventEtcdMemberHealthy, Target: "etcd/" + r.Member, Actor: actor,
				Reason: fmt.Sprintf("etcd member %s (%s) healthy again, %.2fs after this host saw it unhealthy", r.Member, r.Endpoint, now.Sub(rep.Unhealthy).Seconds()),
				Fields: map[string]string{"member": r.Member, "endpoint": r.Endpoint}})
			report()
		case pending:
			report()
		}
		tm := d.m.Clock.NewTimer(memberCheckEvery)
		select {
		case <-ctx.Done():
			tm.Stop()
			return
		case <-tm.C():
		}
	}
}

// refuseMember says why this host will not stop its member now ("" when it will).
func (d *fleetDrills) refuseMember(ctx context.Context, r memberDrillRequest) (string, *config.EtcdMember) {
	f := d.m.cfg.Fleet
	if f == nil || f.EtcdMember == nil || f.EtcdMember.Name != r.Member {
		return fmt.Sprintf("this host does not declare etcd member %s (fleet.etcd_member)", r.Member), nil
	}
	em := *f.EtcdMember
	if em.Timeout == 0 {
		em.Timeout = config.Duration(config.DefaultEtcdCmdTimeout)
	}
	switch {
	case r.For.D() <= 0 || r.For.D() > time.Hour:
		return fmt.Sprintf("outage %v: want more than 0, at most 1h", r.For), nil
	case d.a.Lease() == 0:
		return "this host does not hold its fleet lease", nil
	}
	// The quorum is checked again here, where the member is stopped.
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	members, err := d.cli.Members(cctx, time.Second)
	cancel()
	if err != nil {
		return fmt.Sprintf("cannot read the etcd members: %v", err), nil
	}
	if _, err := pickMember(members, d.a.Status().Hosts, r.Member); err != nil {
		return err.Error(), nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active {
		return "this host is simulating its loss or stopping its etcd member already", nil
	}
	d.active = true
	return "", &em
}

func (d *fleetDrills) answerMember(ctx context.Context, a memberDrillAck) error {
	a.At = d.m.Clock.Now()
	b, _ := json.Marshal(a)
	// Tried again every 200 ms for 5 s: the answer right after a leader's
	// stop meets etcd's election, during which a put fails.
	var err error
	for range 25 {
		cctx, cancel := context.WithTimeout(ctx, memberCheckTimeout)
		err = d.cli.Put(cctx, d.memberAckKey(), string(b))
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		tm := d.m.Clock.NewTimer(memberCheckEvery)
		select {
		case <-ctx.Done():
			tm.Stop()
			return ctx.Err()
		case <-tm.C():
		}
	}
	return err
}

// stopMember is the side of the host that runs the member: it stops it
// with its stop command, answers, and starts it again after r.For (at
// once when medic stops), whatever became of the drilling agent.
func (d *fleetDrills) stopMember(ctx context.Context, r memberDrillRequest) {
	actor := fmt.Sprintf("drill:%d@%s", r.ID, r.By)
	target := "etcd/" + r.Member
	why, em := d.refuseMember(ctx, r)
	ack := memberDrillAck{ID: r.ID, By: r.By, Accepted: why == "", Reason: why, Stopping: why == ""}
	if em != nil {
		ack.Timeout = em.Timeout.D().Seconds()
	}
	if err := d.answerMember(ctx, ack); err != nil {
		d.m.Logger.Warn("fleet drill: cannot answer the etcd-member-loss request", "by", r.By, "drill", r.ID, "err", err)
		if why == "" {
			d.mu.Lock()
			d.active = false
			d.mu.Unlock()
		}
		return
	}
	if why != "" {
		d.m.Record(ctx, medic.Event{Time: d.m.Clock.Now(), Kind: "drill.refused", Target: target, Actor: actor,
			Reason: "fleet drill etcd-member-loss asked by " + r.By + ": " + why, Fields: map[string]string{"scenario": "etcd-member-loss"}})
		return
	}
	defer func() {
		d.mu.Lock()
		d.active = false
		d.mu.Unlock()
	}()
	bg := context.WithoutCancel(ctx)
	start := func() {
		err := runMemberCmd(bg, em.Start, em.Timeout.D())
		ack.Started = d.m.Clock.Now()
		ev := medic.Event{Time: ack.Started, Kind: eventEtcdMemberStarted, Target: target, Actor: actor,
			Reason: fmt.Sprintf("etcd member %s started again (%s)", r.Member, strings.Join(em.Start, " ")), Fields: map[string]string{"member": r.Member}}
		if err != nil {
			ack.StartErr = err.Error()
			ev.Kind, ev.Reason = "fleet.etcd.member_start_failed", fmt.Sprintf("etcd member %s: the start command failed: %v; start it by hand", r.Member, err)
			d.m.Logger.Error("fleet drill: cannot start the etcd member again", "member", r.Member, "err", err)
		}
		d.m.Record(bg, ev)
		if err := d.answerMember(bg, ack); err != nil {
			d.m.Logger.Warn("fleet drill: cannot report the etcd member's start", "member", r.Member, "err", err)
		}
	}
	if err := runMemberCmd(ctx, em.Stop, em.Timeout.D()); err != nil {
		d.m.Logger.Warn("fleet drill: the etcd member's stop command failed; starting it again", "member", r.Member, "err", err)
		ack.Accepted, ack.Stopping, ack.Reason = false, false, fmt.Sprintf("the stop command failed: %v (the start command was run)", err)
		d.m.Record(bg, medic.Event{Time: d.m.Clock.Now(), Kind: "drill.refused", Target: target, Actor: actor,
			Reason: "fleet drill etcd-member-loss asked by " + r.By + ": " + ack.Reason, Fields: map[string]string{"scenario": "etcd-member-loss"}})
		start()
		return
	}
	ack.Stopped, ack.Stopping = d.m.Clock.Now(), false
	d.m.Record(bg, medic.Event{Time: ack.Stopped, Kind: eventEtcdMemberStopped, Target: target, Actor: actor,
		Reason: fmt.Sprintf("etcd-member-loss asked by %s (%s): etcd member %s stopped (%s) for %v", r.By, r.Actor, r.Member, strings.Join(em.Stop, " "), r.For),
		Fields: map[string]string{"member": r.Member, "for": r.For.String()}})
	if err := d.answerMember(bg, ack); err != nil {
		d.m.Logger.Warn("fleet drill: cannot report the etcd member's stop", "member", r.Member, "err", err)
	}
	tm := d.m.Clock.NewTimer(r.For.D())
	select {
	case <-ctx.Done():
	case <-tm.C():
	}
	tm.Stop()
	start()
}

// runMemberCmd runs argv (no shell) in its own process group within
// timeout; on timeout the group is killed. Its output (at most 2 KiB) is in
// the error.
func runMemberCmd(ctx context.Context, argv []string, timeout time.Duration) error {
	if len(argv) == 0 {
		return errors.New("no command")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second // a child that keeps the output open does not hold the drill
	var out bytes.Buffer
	w := &capped{b: &out, n: 2048}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%s: not done within %v (killed)", strings.Join(argv, " "), timeout)
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// capped writes at most n bytes to b, dropping the rest.
type capped struct {
	mu sync.Mutex
	b  *bytes.Buffer
	n  int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.n - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
