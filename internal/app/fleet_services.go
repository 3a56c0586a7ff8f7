package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/discovery"
	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/placement"
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
	cli, err := dialEtcd(m, nil)
	if err != nil {
		return nil, fmt.Errorf("fleet services: %w", err)
	}
	f := *m.cfg.Fleet
	f.SetDefaults()
	a, self := m.fleetAgent, m.fleetHost
	fs := &fleetServices{m: m, ready: map[string]map[string]int{}, names: names, self: m.fleetHost, instances: map[string]int{}}
	for _, name := range names {
		fs.instances[name] = m.cfg.Services[name].Fleet.Instances
	}
	if m.fleet != nil {
		m.fleet.fs.Store(fs)
	}
	return &component{
		serve: func(ctx context.Context) error {
			defer cli.Close()
			var wg sync.WaitGroup
			for _, name := range names {
				sc := m.cfg.Services[name]
				prefix := discovery.Prefix(m.cfg.Etcd.Prefix, f.Name, name)
				pub := &discovery.Publisher{Etcd: cli, Key: prefix + "/" + self, Host: self, Lease: a.Lease,
					Period: f.LeaseTTL.D() / 3, Clock: m.Clock, Logger: m.Logger}
				spec := placement.Spec{Instances: sc.Fleet.Instances, Hosts: sc.Fleet.Hosts, MaxPerHost: sc.Fleet.MaxPerHost}
				r := &placement.Runner{Spec: spec, Service: name, Self: self, Key: placement.Key(m.cfg.Etcd.Prefix, f.Name, name),
					Etcd: cli, View: func() placement.View { return placementView(a.Status(), a.Lease() != 0) },
					Ready: func() map[string]int { return fs.readyOf(name) },
					Apply: func(ctx context.Context, n int) error { return fs.apply(ctx, name, n, sc.Fleet.MaxShare()) },
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
					_ = discovery.Follow(ctx, cli, prefix, m.Clock, m.Logger, func(p map[string]discovery.Publication) {
						fs.follow(name, self, p)
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

// placementView is the membership as the placement needs it. This host
// coordinates when it is joined within its safe time and is the first up
// host by name in its own view.
func placementView(st fleet.Status, joined bool) placement.View {
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

type fleetServices struct {
	m      *Main
	mu     sync.Mutex
	ready  map[string]map[string]int // service → host → ready instances, as published
	remote map[string][]string       // service → remote backend ids set in its proxy
	names  []string                  // the fleet services, as configured at the start
	// self is this host's name; instances the fleet-wide count of each
	// fleet service, as configured at the start (read by the remedy
	// engine's fleet-wide budget).
	self      string
	instances map[string]int
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

// follow applies every host's publications of service: the ready counts
// for the placement, and the other hosts' instances as the proxy's remote
// backends (those no longer published leave its rotation).
func (fs *fleetServices) follow(service, self string, pubs map[string]discovery.Publication) {
	ready := map[string]int{}
	for h, p := range pubs {
		ready[h] = p.Ready()
	}
	p := fs.m.traffic.get(service)
	var ids []string
	if p != nil {
		for h, pb := range pubs {
			if h == self {
				continue
			}
			for _, in := range pb.Instances {
				id := discovery.Remote(h, in.ID)
				p.SetRemoteBackend(id, in.Addr, in.Ready)
				ids = append(ids, id)
			}
		}
	}
	fs.mu.Lock()
	fs.ready[service] = ready
	if fs.remote == nil {
		fs.remote = map[string][]string{}
	}
	old := fs.remote[service]
	fs.remote[service] = ids
	fs.mu.Unlock()
	if p != nil {
		for _, id := range old {
			if !slices.Contains(ids, id) {
				p.RemoveBackend(id)
			}
		}
	}
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
