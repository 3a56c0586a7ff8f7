package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/fleet"
)

func init() { register(35, "fleet", buildFleet) }

// buildFleet makes this agent a member of the configured fleet. It stops
// with order 35: after remediation (which will ask the fleet for its
// guardrails) and the databases, before the proxies and the supervisor, so
// that the others see this host suspect while its instances still serve.
func buildFleet(m *Main) (*component, error) {
	if m.cfg.Fleet == nil {
		return nil, nil
	}
	if m.cfg.Etcd == nil {
		return nil, errors.New("the fleet needs the etcd section")
	}
	f := *m.cfg.Fleet
	f.SetDefaults()
	host := m.cfg.Name
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("fleet host name: no name in the config and no host name: %w", err)
		}
		host = h
	}
	m.fleetCut = &etcd.Cut{}
	cli, err := dialEtcd(m, m.fleetCut)
	if err != nil {
		return nil, fmt.Errorf("fleet %s: %w", f.Name, err)
	}
	a, err := fleet.New(fleet.Options{Fleet: f.Name, Host: host, Address: f.Address, Capacity: f.Capacity,
		Version: medic.Version, Prefix: m.cfg.Etcd.Prefix, LeaseTTL: f.LeaseTTL.D(), Grace: f.Grace.D(), StormShare: f.StormShare(), Etcd: cli,
		JoinJitter: f.Jitter(), EtcdMember: etcdMemberName(f.EtcdMember),
		Clock: m.Clock, Logger: m.Logger.With("component", "fleet"), Record: m.Record})
	if err != nil {
		cli.Close()
		return nil, err
	}
	if m.fleet != nil {
		m.fleet.g.Store(a.Guard())
	}
	m.fleetAgent, m.fleetHost = a, host
	for _, st := range []fleet.State{fleet.Up, fleet.Suspect, fleet.Lost} {
		err := m.mets.Registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "medic_fleet_hosts", Help: "Hosts of the fleet as this agent sees them, by state (up, suspect, lost).",
			ConstLabels: prometheus.Labels{"state": st.String()},
		}, func() float64 { return float64(countHosts(a.Status(), st)) }))
		if err != nil {
			cli.Close()
			return nil, fmt.Errorf("fleet metrics: %w", err)
		}
	}
	if err := m.mets.Registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "medic_fleet_lease_safe_seconds",
		Help: "How long this host's fleet lease lives at least (0 when it is not joined): counts down on a host cut from etcd.",
	}, func() float64 {
		st := a.Status()
		if !st.Joined {
			return 0
		}
		return max(st.SafeUntil.Sub(m.Clock.Now()).Seconds(), 0)
	})); err != nil {
		cli.Close()
		return nil, fmt.Errorf("fleet metrics: %w", err)
	}
	return &component{
		serve: func(ctx context.Context) error {
			defer cli.Close()
			return a.Serve(ctx)
		},
		mount: func(mux *http.ServeMux, g api.Guards) {
			mux.Handle("GET /v1/fleet/hosts", g.View(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				api.WriteJSON(w, http.StatusOK, a.Status())
			})))
		},
	}, nil
}

func etcdMemberName(em *config.EtcdMember) string {
	if em == nil {
		return ""
	}
	return em.Name
}

// fleetGuard is the fleet agent's guard as the remedy engine, built before
// the agent, sees it: until the agent is bound it refuses with
// fleet.ErrCutOff (no fleet-wide action before this host is a member).
type fleetGuard struct {
	g  atomic.Pointer[fleet.EtcdGuard]
	fs atomic.Pointer[fleetServices] // the other hosts' published instances, for the fleet-wide budget
}

// FleetReady tells the remedy engine's fleet-wide disruption budget how
// many instances of a fleet service the other hosts publish as ready, and
// the fleet-wide minimum: the fleet's instances less one (at most one
// instance of a fleet service is taken down on purpose at a time, counted
// over every host). Before the publications are followed, the others count
// as none ready.
func (f *fleetGuard) FleetReady(service string) (int, int, bool) {
	fs := f.fs.Load()
	if fs == nil {
		return 0, 0, false
	}
	sf, ok := fs.spec(service)
	if !ok {
		return 0, 0, false
	}
	want := sf.Instances
	n := 0
	for h, r := range fs.readyOf(service) {
		if h != fs.self {
			n += r
		}
	}
	return n, max(want-1, 0), true
}

func (f *fleetGuard) Take(ctx context.Context, key string, max int, per time.Duration) (bool, string, error) {
	g := f.g.Load()
	if g == nil {
		return false, "", fmt.Errorf("fleet agent not started: %w", fleet.ErrCutOff)
	}
	return g.Take(ctx, key, max, per)
}

func (f *fleetGuard) Hold(ctx context.Context, target string) (int64, func(context.Context) error, error) {
	g := f.g.Load()
	if g == nil {
		return 0, nil, fmt.Errorf("fleet agent not started: %w", fleet.ErrCutOff)
	}
	return g.Hold(ctx, target)
}

// Safe reports whether this host still holds its fleet lease (remedy checks
// it before each step of a run holding a fleet lock).
func (f *fleetGuard) Safe() error {
	g := f.g.Load()
	if g == nil {
		return fmt.Errorf("fleet agent not started: %w", fleet.ErrCutOff)
	}
	return g.Safe()
}

// Cool keeps a target's cooldown fleet-wide (remedy, when a run ends).
func (f *fleetGuard) Cool(ctx context.Context, target string, d time.Duration) error {
	g := f.g.Load()
	if g == nil {
		return fmt.Errorf("fleet agent not started: %w", fleet.ErrCutOff)
	}
	return g.Cool(ctx, target, d)
}

// Fenced checks that target's lock is still held under fence (remedy,
// before each step).
func (f *fleetGuard) Fenced(ctx context.Context, target string, fence int64) error {
	g := f.g.Load()
	if g == nil {
		return fmt.Errorf("fleet agent not started: %w", fleet.ErrCutOff)
	}
	return g.Fenced(ctx, target, fence)
}

func countHosts(st fleet.Status, s fleet.State) int {
	n := 0
	for _, m := range st.Hosts {
		if m.State == s {
			n++
		}
	}
	return n
}
