package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/discovery"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/placement"
	"github.com/medic-dev/medic/internal/pmap"
	"github.com/medic-dev/medic/internal/supervise"
)

func init() { register(36, "fleet services", buildFleetServices) }

// fleetLocalPeriod is how often the fleet services look at this host's own
// instances and membership (in memory, no etcd request): the delay before a
// readiness change is published or a placement step is taken.
const fleetLocalPeriod = 200 * time.Millisecond

// buildFleetServices runs, for every service with a fleet section: the
// publication of this host's instances (discovery), the proxy's remote
// backends from every other host's publications, and the placement (this
// host's share, and the assignment when this host coordinates). It stops
// after the fleet agent (order 35), whose leaving takes the publications
// with its lease.
func buildFleetServices(m *Main) (*component, error) {
	if m.cfg.Fleet == nil || m.fleetAgent == nil {
		return nil, nil
	}
	var names []string
	for name, s := range m.cfg.Services {
		if s != nil && s.Fleet != nil {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	slices.Sort(names)
	cli, err := dialEtcd(m, m.fleetCut)
	if err != nil {
		return nil, fmt.Errorf("fleet services: %w", err)
	}
	f := *m.cfg.Fleet
	f.SetDefaults()
	a, self := m.fleetAgent, m.fleetHost
	fs := &fleetServices{m: m, ready: map[string]map[string]int{}, remote: map[string]map[string][]string{},
		peers: map[string]map[string][]string{}, peersStale: map[string]bool{}, pubs: map[string]pmap.Map[discovery.Publication]{}, names: names, self: m.fleetHost, specs: map[string]config.ServiceFleet{}}
	for _, name := range names {
		fs.specs[name] = *m.cfg.Services[name].Fleet
	}
	// A reload that changes services.X.fleet of a fleet service takes
	// effect at once: the coordinator plans with the new spec, and this
	// host's share is bounded by the new most. A service that gains or
	// loses its fleet section on a reload still needs a restart.
	m.onReload(func(_ context.Context, cfg *config.Config) error { return fs.reload(cfg) })
	if m.fleet != nil {
		m.fleet.fs.Store(fs)
	}
	drills := &fleetDrills{m: m, a: a, fs: fs, cli: cli, cut: m.fleetCut, fleet: f.Name, self: self,
		prefix: m.cfg.Etcd.Prefix + "/fleet/" + f.Name + "/drills", ttl: f.LeaseTTL.D(), grace: f.Grace.D(),
		storm: f.StormShare(), handled: map[string]bool{}}
	if m.drills != nil {
		drills.register(m.drills.Injectors())
	}
	return &component{
		serve: func(ctx context.Context) error {
			defer cli.Close()
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); drills.serveAll(ctx) }()
			go func() {
				defer wg.Done()
				fs.standDown(ctx, a, f.Grace.D(), f.LeaseTTL.D()/3, func(ctx context.Context, service string) (int, error) {
					return currentShare(ctx, cli, placement.Key(m.cfg.Etcd.Prefix, f.Name, service), self)
				})
			}()
			for _, name := range names {
				sc := m.cfg.Services[name]
				prefix := discovery.Prefix(m.cfg.Etcd.Prefix, f.Name, name)
				pub := &discovery.Publisher{Etcd: cli, Key: prefix + "/" + self, Host: self, Lease: a.Lease,
					Period: f.LeaseTTL.D() / 3, Clock: m.Clock, Logger: m.Logger}
				spec := placement.Spec{Instances: sc.Fleet.Instances, Hosts: sc.Fleet.Hosts, MaxPerHost: sc.Fleet.MaxPerHost}
				specNow := func() placement.Spec {
					sf, _ := fs.spec(name)
					return placement.Spec{Instances: sf.Instances, Hosts: sf.Hosts, MaxPerHost: sf.MaxPerHost}
				}
				r := &placement.Runner{Spec: spec, SpecNow: specNow, Service: name, Self: self, Key: placement.Key(m.cfg.Etcd.Prefix, f.Name, name),
					Etcd: cli, View: func() placement.View {
						return fencedView(a.Status(), a.Lease(), fleet.HostsPrefix(m.cfg.Etcd.Prefix, f.Name)+"/"+self)
					},
					Ready: func() map[string]int { return fs.readyOf(name) },
					Apply: func(ctx context.Context, n int) error {
						sf, _ := fs.spec(name)
						return fs.apply(ctx, name, n, sf.MaxShare())
					},
					Changed: func(ctx context.Context, prev, next placement.Assignment, st placement.Step) {
						m.Record(ctx, medic.Event{Time: m.Clock.Now(), Kind: medic.EventPlacement, Target: name, Actor: "fleet",
							Reason: st.Why, Fields: map[string]string{"from": prev.String(), "to": next.String(), "host": self}})
					},
					Clock: m.Clock, Logger: m.Logger.With("component", "placement")}
				wg.Add(4)
				go func() { defer wg.Done(); pub.Run(ctx) }()
				go func() { defer wg.Done(); fs.publishLocal(ctx, name, sc, f.Address, pub) }()
				go func() {
					defer wg.Done()
					_ = discovery.Follow(ctx, cli, prefix, m.Clock, m.Logger, func(u discovery.Update) {
						fs.follow(name, self, u)
					})
				}()
				go func() { defer wg.Done(); _ = r.Run(ctx) }()
			}
			<-ctx.Done()
			wg.Wait()
			return nil
		},
		mount: func(mux *http.ServeMux, g api.Guards) {
			// Unauthenticated on purpose, like /healthz: an external load
			// balancer's health check asks it, and it tells only 200 or 503.
			mux.Handle("GET /v1/fleet/services/{service}/health", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fs.health(w, r.PathValue("service"), self)
			}))
		},
	}, nil
}

// PlacementView is the membership as the placement needs it (also read by
// the fleet demo's diagnosis). This host
// coordinates when it is joined within its safe time and is the first up
// host by name in its own view.
func PlacementView(st fleet.Status, joined bool) placement.View {
	v := placement.View{}
	first := ""
	for _, h := range st.Hosts {
		v.Hosts = append(v.Hosts, placement.Host{Name: h.Host, Lost: h.State == fleet.Lost, Capacity: h.Capacity})
		if h.State == fleet.Up && (first == "" || h.Host < first) {
			first = h.Host
		}
	}
	v.Coordinator = joined && st.Watching && first == st.Self
	return v
}

// fencedView is PlacementView with the fence of a coordinator's writes:
// its membership key must still be held under lease (0: not joined within
// its safe time, so it does not coordinate).
func fencedView(st fleet.Status, lease int64, memberKey string) placement.View {
	v := PlacementView(st, lease != 0)
	if v.Coordinator {
		v.MemberKey, v.Lease = memberKey, lease
	}
	return v
}

type fleetServices struct {
	m      *Main
	mu     sync.Mutex
	ready  map[string]map[string]int      // service → host → ready instances, as published
	remote map[string]map[string][]string // service → host → remote backend ids set in its proxy
	names  []string                       // the fleet services, as configured at the start
	// peers: service → host → the other hosts' instance addresses, as last
	// published; peersStale: the last known when no other host publishes.
	peers      map[string]map[string][]string
	peersStale map[string]bool
	down       bool      // stood down: cut from etcd and from the peers (standDown)
	downBy     time.Time // the stand-down's deadline: every instance stopped by then (zero: not stood down by standDown)
	// drill is the fleet drill this host is simulating ("host-kill",
	// "host-partition"; "" when none): it keeps a killed host down, and a
	// partitioned one reaching no peer (fleet_drills.go).
	drill string
	// pubs: service → every host's publications as last delivered (to give
	// the proxies the other hosts' instances back after a drill);
	// followMu orders the deliveries with that.
	pubs     map[string]pmap.Map[discovery.Publication]
	followMu sync.Mutex
	// self is this host's name; specs each fleet service's fleet section,
	// as last loaded (a reload changes it).
	self  string
	specs map[string]config.ServiceFleet
}

// spec returns service's fleet section as last loaded.
func (fs *fleetServices) spec(service string) (config.ServiceFleet, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	sf, ok := fs.specs[service]
	return sf, ok
}

// reload takes the new fleet sections of the fleet services.
func (fs *fleetServices) reload(cfg *config.Config) error {
	var missing []string
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, name := range fs.names {
		sc := cfg.Services[name]
		if sc == nil || sc.Fleet == nil {
			missing = append(missing, name)
			continue
		}
		if !reflect.DeepEqual(fs.specs[name], *sc.Fleet) {
			fs.m.Logger.Info("placement: services."+name+".fleet changed; planning with it now", "service", name,
				"instances", sc.Fleet.Instances)
		}
		fs.specs[name] = *sc.Fleet
	}
	if len(missing) > 0 {
		return fmt.Errorf("fleet services %v lost their fleet section: they keep their last one until medic restarts", missing)
	}
	return nil
}

func (fs *fleetServices) readyOf(service string) map[string]int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := map[string]int{}
	for h, n := range fs.ready[service] {
		out[h] = n
	}
	return out
}

// apply runs this host's share, bounded by the largest share the config
// allows (an assignment in etcd is not trusted beyond it). A share of 0
// runs no instance.
func (fs *fleetServices) apply(ctx context.Context, service string, n, most int) error {
	if n > most {
		fs.m.Logger.Warn("placement: this host's share in etcd is above the most the config allows; running the most",
			"service", service, "share", n, "most", most)
		n = most
	}
	fs.mu.Lock()
	down := fs.down
	fs.mu.Unlock()
	if down {
		// The runner tries again next period: a share written between
		// standUp's read of etcd and its end is not lost (it was, when
		// this returned nil: the runner counted it applied).
		return errStoodDown
	}
	err := fs.scale(ctx, service, n)
	// A stand-down decided while this scale ran (after the check above)
	// may have stopped the service before the scale started instances:
	// stop them again, by the same deadline, so that no instance of a cut
	// host outlives its stand-down.
	fs.mu.Lock()
	down, by := fs.down, fs.downBy
	fs.mu.Unlock()
	if down && n > 0 && !by.IsZero() {
		sctx, cancel := context.WithTimeout(ctx, max(by.Sub(fs.m.Clock.Now()), 0)+5*time.Second)
		defer cancel()
		if _, serr := fs.m.sup.StopAllBy(sctx, service, by, "fleet", "stand-down: a share applied while this host stood down"); serr != nil {
			fs.m.Logger.Warn("fleet: stand down", "service", service, "err", serr)
		}
		return errStoodDown
	}
	return err
}

// errStoodDown: this host's share is not run while it stands down.
var errStoodDown = errors.New("this host stands down (cut from etcd and its peers, or simulating its loss for a fleet drill): it runs its share once it stands up")

// scale runs n instances of service on this host, waiting 2 s at most (a
// scale-in goes on within the disruption budget).
func (fs *fleetServices) scale(ctx context.Context, service string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := fs.m.sup.Scale(ctx, service, max(n, 0), "fleet")
	if errors.Is(err, supervise.ErrInProgress) {
		return nil // it goes on within the disruption budget
	}
	return err
}

// publishLocal hands this host's instances of service to pub whenever they
// change (read from the supervisor's status in memory).
func (fs *fleetServices) publishLocal(ctx context.Context, service string, sc *config.Service, address string, pub *discovery.Publisher) {
	var last string
	for {
		var ins []discovery.Instance
		for _, s := range fs.m.sup.Status() {
			if s.Name != service {
				continue
			}
			for _, in := range s.Instances {
				if in.Port > 0 {
					ins = append(ins, discovery.Instance{ID: in.ID, Addr: fmt.Sprintf("%s:%d", address, in.Port), Ready: in.Ready})
				}
			}
		}
		key := fmt.Sprint(ins)
		if key != last {
			pub.Set(ins)
			last = key
		}
		t := fs.m.Clock.NewTimer(fleetLocalPeriod)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// follow applies a delivery of the publications of service: the ready
// counts for the placement, the other hosts' instances as the proxy's
// remote backends (those no longer published leave its rotation) and the
// peers' addresses. Only the hosts that changed are touched (every host on
// a Reset), so a readiness change costs O(that host's instances), not
// O(fleet).
func (fs *fleetServices) follow(service, self string, u discovery.Update) {
	fs.followMu.Lock()
	defer fs.followMu.Unlock()
	hosts := u.Changed
	fs.mu.Lock()
	for _, m := range []map[string]map[string][]string{fs.remote, fs.peers} {
		if m[service] == nil {
			m[service] = map[string][]string{}
		}
	}
	if fs.ready[service] == nil {
		fs.ready[service] = map[string]int{}
	}
	fs.pubs[service] = u.All
	remote, peers, ready := fs.remote[service], fs.peers[service], fs.ready[service]
	drilled := fs.drill != "" // a drilled host reaches no peer: its proxy sends to none
	if u.Reset {
		hosts = u.All.Keys()
		for h := range remote {
			if _, ok := u.All.Get(h); !ok {
				hosts = append(hosts, h)
			}
		}
		for h := range ready {
			if _, ok := u.All.Get(h); !ok && !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
	}
	type backend struct {
		id, addr string
		ready    bool
	}
	var set []backend
	var removed []string
	peerChanges := make(map[string][]string, len(hosts))
	for _, h := range hosts {
		pub, ok := u.All.Get(h)
		if ok {
			ready[h] = pub.Ready()
		} else {
			delete(ready, h)
		}
		if h == self {
			continue
		}
		var ids, addrs []string
		for _, in := range pub.Instances {
			addrs = append(addrs, in.Addr)
			if !drilled {
				id := discovery.Remote(h, in.ID)
				set = append(set, backend{id, in.Addr, in.Ready})
				ids = append(ids, id)
			}
		}
		for _, id := range remote[h] {
			if !slices.Contains(ids, id) {
				removed = append(removed, id)
			}
		}
		if len(ids) > 0 {
			remote[h] = ids
		} else {
			delete(remote, h)
		}
		peerChanges[h] = addrs
	}
	fs.setPeers(service, peers, peerChanges)
	fs.mu.Unlock()
	if p := fs.m.traffic.get(service); p != nil {
		for _, b := range set {
			p.SetRemoteBackend(b.id, b.addr, b.ready)
		}
		for _, id := range removed {
			p.RemoveBackend(id)
		}
	}
}

// setPeers applies one delivery's changes to the peers of service: each
// host's instance addresses, none when it no longer publishes any (fs.mu
// held). A delivery that would leave no peer at all keeps the last known
// (stale) ones: a cut host must still know whom to try; the next delivery
// with a peer replaces them. It costs O(changes).
func (fs *fleetServices) setPeers(service string, peers map[string][]string, changes map[string][]string) {
	anyAdd := false
	for _, a := range changes {
		if len(a) > 0 {
			anyAdd = true
			break
		}
	}
	if !anyAdd {
		if fs.peersStale[service] {
			return
		}
		kept := false
		for h := range peers { // stops at the first host not changed: O(changes)
			if _, ch := changes[h]; !ch {
				kept = true
				break
			}
		}
		if !kept {
			fs.peersStale[service] = len(peers) > 0
			return
		}
	}
	if fs.peersStale[service] {
		clear(peers)
		fs.peersStale[service] = false
	}
	for h, a := range changes {
		if len(a) > 0 {
			peers[h] = slices.Sorted(slices.Values(a))
		} else {
			delete(peers, h)
		}
	}
}

// drilling returns the fleet drill this host simulates ("" when none).
func (fs *fleetServices) drilling() string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.drill
}

// setDrill starts (kind) or ends ("") this host's simulated loss. A
// host-kill stands the host down at once (its instances are killed, the
// placement does not start them again); the end of any drill lets the
// stand-down check bring the host back once it holds its lease again. At
// the start the proxies drop the other hosts' instances (a drilled host
// reaches no peer); the discovery watch gives them back after the drill.
func (fs *fleetServices) setDrill(kind string) {
	fs.mu.Lock()
	fs.drill = kind
	if kind == "host-kill" {
		fs.down = true
	}
	remote, pubs := fs.remote, maps.Clone(fs.pubs)
	if kind != "" {
		fs.remote = map[string]map[string][]string{}
	}
	fs.mu.Unlock()
	if kind == "" {
		// The other hosts' instances back in the proxies, from the
		// publications as last delivered (the watch sends only changes).
		for service, all := range pubs {
			fs.follow(service, fs.self, discovery.Update{All: all, Reset: true})
		}
		return
	}
	for service, byHost := range remote {
		if p := fs.m.traffic.get(service); p != nil {
			for _, ids := range byHost {
				for _, id := range ids {
					p.RemoveBackend(id)
				}
			}
		}
	}
}

// fleetPIDs returns the processes of this host's instances of every fleet service.
func (fs *fleetServices) fleetPIDs() []int {
	var pids []int
	for _, s := range fs.m.sup.Status() {
		if !slices.Contains(fs.names, s.Name) {
			continue
		}
		for _, in := range s.Instances {
			if in.PID > 1 {
				pids = append(pids, in.PID)
			}
		}
	}
	return pids
}

// health answers an external load balancer: 200 while this host's proxy
// of service has an instance in rotation (its own or another host's), else
// 503.
func (fs *fleetServices) health(w http.ResponseWriter, service, self string) {
	p := fs.m.traffic.get(service)
	if !slices.Contains(fs.names, service) || p == nil {
		api.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "no fleet service with a proxy named " + service})
		return
	}
	if fs.drilling() == "host-kill" {
		api.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"service": service, "host": self, "serving": false,
			"note": "this host simulates its death for a fleet drill"})
		return
	}
	local, remote := 0, 0
	for _, in := range p.Stats().Instances {
		if !in.InRotation {
			continue
		}
		if in.Remote {
			remote++
		} else {
			local++
		}
	}
	code := http.StatusOK
	if local+remote == 0 {
		code = http.StatusServiceUnavailable
	}
	api.WriteJSON(w, code, map[string]any{"service": service, "host": self, "local_in_rotation": local,
		"remote_in_rotation": remote, "serving": code == http.StatusOK})
}

// withFleetShares is next as the supervisor applies it on a reload: a fleet
// service keeps the number of instances its placement gives this host (its
// running desired count), not the instances of the file, which is only
// what it starts with. next itself is left as loaded (the running config
// compared with the next reload).
func withFleetShares(next *config.Config, running []supervise.ServiceStatus) *config.Config {
	c := *next
	c.Services = maps.Clone(next.Services)
	for _, st := range running {
		if s := c.Services[st.Name]; s != nil && s.Fleet != nil && st.Desired != s.Instances { // 0: a share of 0
			cp := *s
			cp.Instances = st.Desired
			c.Services[st.Name] = &cp
		}
	}
	return &c
}

// maxPeerProbes bounds the TCP connects of one isolation check, made at
// once and bounded together by peerProbeTimeout.
const (
	maxPeerProbes    = 8
	peerProbeTimeout = config.StandDownProbe
)

// standDown applies fleet.StandDown every period: a host cut from etcd past
// its lease, reaching none of the other hosts' instances, stops all its
// instances of every fleet service at once, by the decision's deadline
// (the others count it lost after the grace and run its share: this keeps
// the fleet's count within instances + the surge); when it holds its lease
// again it runs the share etcd gives it. Both are audited: the stand-down
// twice, when decided and when done (what it stopped, how long it took,
// how far from the deadline).
func (fs *fleetServices) standDown(ctx context.Context, a *fleet.Agent, grace, period time.Duration,
	share func(ctx context.Context, service string) (int, error)) {
	var lastSafe time.Time
	for {
		t := fs.m.Clock.NewTimer(period)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		now := fs.m.Clock.Now()
		st := a.Status()
		fs.mu.Lock()
		down, drilled := fs.down, fs.drill
		fs.mu.Unlock()
		if drilled == "host-kill" {
			continue // a simulated death: down until the drill ends, then back through standUp
		}
		if st.Joined && now.Before(st.SafeUntil) {
			lastSafe = st.SafeUntil
			if down && drilled == "" {
				fs.standUp(ctx, share)
			}
			continue
		}
		if down || lastSafe.IsZero() {
			continue // already down, or never joined: nobody counts on this host's share
		}
		known, reached := fs.probePeers(ctx)
		now = fs.m.Clock.Now() // after the probes
		d := fleet.StandDown(now, fleet.Isolation{Joined: st.Joined, SafeUntil: lastSafe, Grace: grace, Slack: config.StandDownSlack,
			PeersKnown: known, PeersReached: reached})
		if !d.Down {
			continue
		}
		fs.mu.Lock()
		fs.down, fs.downBy = true, d.By
		fs.mu.Unlock()
		fs.m.Logger.Warn("fleet: standing down: "+d.Why, "services", fs.names, "by", d.By)
		target := "fleet/" + st.Fleet + "/" + st.Self
		fs.m.Record(ctx, medic.Event{Time: now, Kind: medic.EventStoodDown, Target: target, Actor: "fleet",
			Reason: d.Why, Fields: map[string]string{"services": fmt.Sprint(fs.names), "by": d.By.Format(time.RFC3339Nano)}})
		stopped := fs.stopAllBy(ctx, d.By, "stand-down: "+d.Why)
		end := fs.m.Clock.Now()
		fields := map[string]string{"stopped": fmt.Sprint(stopped), "by": d.By.Format(time.RFC3339Nano),
			"took": end.Sub(now).Round(time.Millisecond).String()}
		why := fmt.Sprintf("stood down: %v stopped at once in %v, %v before the deadline",
			stopped, end.Sub(now).Round(time.Millisecond), d.By.Sub(end).Round(time.Millisecond))
		if end.After(d.By) {
			why = fmt.Sprintf("stood down: %v stopped at once in %v, %v PAST the deadline (the others may run this host's share already)",
				stopped, end.Sub(now).Round(time.Millisecond), end.Sub(d.By).Round(time.Millisecond))
		}
		fs.m.Record(ctx, medic.Event{Time: end, Kind: medic.EventStoodDown, Target: target, Actor: "fleet", Reason: why, Fields: fields})
	}
}

// stopAllBy stops every instance of every fleet service of this host at
// once, each with its stop grace cut to end by (supervise.StopAllBy; the
// services in parallel), and returns how many it stopped per service.
func (fs *fleetServices) stopAllBy(ctx context.Context, by time.Time, reason string) map[string]int {
	// Bounded: every stop ends with a SIGKILL at by; 5 s more for the
	// exits and the rollout to 0 that follows.
	ctx, cancel := context.WithTimeout(ctx, max(by.Sub(fs.m.Clock.Now()), 0)+5*time.Second)
	defer cancel()
	var mu sync.Mutex
	stopped := map[string]int{}
	var wg sync.WaitGroup
	for _, name := range fs.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := fs.m.sup.StopAllBy(ctx, name, by, "fleet", reason)
			if err != nil {
				fs.m.Logger.Warn("fleet: stand down", "service", name, "err", err)
			}
			mu.Lock()
			stopped[name] = n
			mu.Unlock()
		}()
	}
	wg.Wait()
	return stopped
}

// standUp runs this host's share of every fleet service again once it
// holds its lease: the share read from etcd now (the others may have moved
// it while this host was cut off), never the one from before the cut. A
// share that cannot be read keeps the host down until the next period.
func (fs *fleetServices) standUp(ctx context.Context, share func(ctx context.Context, service string) (int, error)) {
	shares := map[string]int{}
	for _, name := range fs.names {
		n, err := share(ctx, name)
		if err != nil {
			fs.m.Logger.Warn("fleet: stand up: cannot read the share; staying down", "service", name, "err", err)
			return
		}
		shares[name] = n
	}
	fs.mu.Lock()
	fs.down, fs.downBy = false, time.Time{}
	fs.mu.Unlock()
	fs.m.Record(ctx, medic.Event{Time: fs.m.Clock.Now(), Kind: medic.EventStoodUp, Target: "fleet", Actor: "fleet",
		Reason: "this host holds its fleet lease again: it runs its share", Fields: map[string]string{"shares": fmt.Sprint(shares)}})
	for name, n := range shares {
		if err := fs.scale(ctx, name, n); err != nil {
			fs.m.Logger.Warn("fleet: stand up", "service", name, "err", err)
		}
	}
}

// probePeers tries a TCP connect to the other hosts' instances it last
// knew (at most maxPeerProbes, each within peerProbeTimeout) and stops at
// the first that answers.
func (fs *fleetServices) probePeers(ctx context.Context) (known, reached int) {
	fs.mu.Lock()
	var addrs []string
	for _, byHost := range fs.peers {
		for _, p := range byHost {
			addrs = append(addrs, p...)
		}
	}
	fs.mu.Unlock()
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	known = len(addrs)
	if fs.drilling() == "host-partition" {
		return known, 0 // the drill blocks this host's peer traffic
	}
	if len(addrs) > maxPeerProbes {
		addrs = addrs[:maxPeerProbes]
	}
	// All at once: an isolated host's connects time out rather than fail,
	// and the check must end well within the grace.
	cctx, cancel := context.WithTimeout(ctx, peerProbeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	var ok atomic.Int32
	for _, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d net.Dialer
			if c, err := d.DialContext(cctx, "tcp", addr); err == nil {
				c.Close()
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	return known, int(ok.Load())
}

// currentShare reads host's share of a service from its assignment in etcd
// (0 when the assignment does not list it), bounded by 2 s.
func currentShare(ctx context.Context, cli *etcd.Client, key, host string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	kv, ok, err := cli.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("no assignment at %s", key)
	}
	var rec placement.Record
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return 0, fmt.Errorf("assignment at %s: %w", key, err)
	}
	return rec.Assign[host], nil
}
