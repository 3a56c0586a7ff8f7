package app

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"

	"github.com/medic-dev/medic/internal/bypass"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/egress"
	"github.com/medic-dev/medic/internal/release"
	"github.com/medic-dev/medic/internal/sqlite"
	"github.com/medic-dev/medic/internal/ui"
	"github.com/medic-dev/medic/internal/ui/scorecard"
)

func init() { register(40, "ui", buildUI) }

// drillsForScorecard is how many recorded drills the scorecard reads: enough
// for 90 days of daily drills of a few scenarios.
const drillsForScorecard = 500

// buildUI makes the dashboard: the page and its routes, the session cookie
// middleware for the API handler, and the sampler that keeps an hour of
// history in the store. It is stopped last among the components (order 40):
// the sampler only reads.
func buildUI(m *Main) (*component, error) {
	var cur atomic.Pointer[config.Config]
	cur.Store(m.cfg)
	m.onReload(func(_ context.Context, cfg *config.Config) error { cur.Store(cfg); return nil })
	opts := ui.Options{
		Live: m.tokens, Clock: m.Clock, Logger: m.Logger.With("component", "ui"), Record: m.Record,
		Sample: func() ui.Snapshot {
			return ui.Snapshot{Services: m.sup.Status(), Proxies: m.traffic.Stats(), Latency: ui.LatencyFrom(m.mets.Registry)}
		},
		Scorecard: func(ctx context.Context) (scorecard.Input, error) { return m.scorecardInput(ctx, cur.Load()) },
	}
	if m.db != nil {
		opts.History = ui.NewHistory(m.db, ui.DefaultKeep)
	}
	u := ui.New(opts)
	return &component{serve: u.Serve, mount: u.Mount, wrap: u.Wrap}, nil
}

// scorecardInput gathers what the scorecard is computed from: the running
// config, the drills recorded in the store, the rollback targets the
// supervisor keeps, and the managed databases.
func (m *Main) scorecardInput(ctx context.Context, cfg *config.Config) (scorecard.Input, error) {
	in, err := ScorecardInput(ctx, cfg, m.db, m.sup.Previous)
	in.Dependencies = []scorecard.DependencySeen{} // known: the running agent sees every listener
	for _, d := range m.Dependencies() {
		in.Dependencies = append(in.Dependencies, scorecard.DependencySeen{Service: d.Service, Dependency: d.Dependency,
			Timeout: d.Timeout, Calls: d.Total(), TimedOut: d.Calls[egress.OutcomeTimeout]})
	}
	in.Bypasses = m.bypasses(cfg)
	for _, ps := range m.Proxies() {
		if in.Listening == nil {
			in.Listening = map[string]string{}
		}
		in.Listening[ps.Service] = ps.Listen
	}
	return in, err
}

// ScorecardInput gathers the scorecard's inputs from cfg (defaults applied),
// the drills recorded in db (nil: unknown) and previous, the supervisor's
// rollback targets (nil: unknown, as for `medic scorecard --offline`).
func ScorecardInput(ctx context.Context, cfg *config.Config, db *sqlite.DB, previous func(service string) *config.Service) (scorecard.Input, error) {
	in := scorecard.Input{Config: cfg}
	if previous != nil {
		in.Previous = map[string]bool{}
		for name := range cfg.Services {
			in.Previous[name] = previous(name) != nil
		}
	}
	for name, svc := range cfg.Services {
		if svc != nil && svc.Objectives != nil {
			if in.Objectives == nil {
				in.Objectives = map[string]scorecard.Objective{}
			}
			in.Objectives[name] = scorecard.Objective{RTO: svc.Objectives.RTO.D(), RPO: svc.Objectives.RPO.D()}
		}
	}
	for name, d := range cfg.Databases {
		sd := scorecard.Database{Name: name, ManagedFailover: cfg.Etcd != nil && d != nil}
		if d != nil && d.Proxy != nil {
			sd.ClientAccess = "proxy"
		}
		in.Databases = append(in.Databases, sd)
		if d != nil && d.Objectives != nil {
			if in.Objectives == nil {
				in.Objectives = map[string]scorecard.Objective{}
			}
			in.Objectives[name] = scorecard.Objective{RTO: d.Objectives.RTO.D(), RPO: d.Objectives.RPO.D()}
		}
	}
	if db == nil {
		return in, nil
	}
	store := drill.NewSQLStore(db.SQL())
	runs, err := store.List(ctx, drillsForScorecard)
	if err != nil {
		return in, fmt.Errorf("read recorded drills: %w", err)
	}
	in.DrillsKnown = true
	for _, r := range runs {
		if r.State == drill.StateRunning || r.State == drill.StateAborted {
			continue
		}
		d := scorecard.DrillRun{Scenario: r.Scenario, Service: r.Service, Passed: r.Passed, Started: r.Started,
			ClientErrors: r.ClientErrors, UnderLoad: r.Requests > 0}
		if r.TTD != nil {
			d.TTDSeconds = *r.TTD
		}
		if r.TTR != nil {
			d.TTRSeconds = *r.TTR
		}
		if cfg.Databases[r.Service] != nil { // database drills measure their data loss
			if full, err := store.Get(ctx, r.ID); err == nil {
				d.DataLossSeconds, d.TTRSeconds = dataLoss(full, d.TTRSeconds)
			}
		}
		in.Drills = append(in.Drills, d)
	}
	rels, err := release.NewStore(db.SQL()).List(ctx, "")
	if err != nil {
		return in, fmt.Errorf("read the release history: %w", err)
	}
	for _, r := range rels {
		if r.Ended == nil {
			continue
		}
		rr := scorecard.ReleaseRun{Service: r.Service, Version: r.Version, Source: r.Source, Outcome: r.Outcome, Ended: *r.Ended}
		if r.DurationSeconds != nil {
			rr.DurationSeconds = *r.DurationSeconds
		}
		if r.Requests != nil && r.ClientErrors != nil {
			rr.Requests, rr.ClientErrors = *r.Requests, *r.ClientErrors
		}
		in.Releases = append(in.Releases, rr)
	}
	return in, nil
}

// dataLoss is a database drill's measured recovery point and its recovery
// time: a restore drill measures both itself (the restore's time, not the
// wait for the archive before it); a failover drill that read back every
// acknowledged write lost none (0 s). nil when nothing was measured.
func dataLoss(r drill.Result, ttr float64) (*float64, float64) {
	if v, ok := r.Figures["data_loss_seconds"]; ok {
		if rto, ok := r.Figures["rto_seconds"]; ok {
			ttr = rto
		}
		return &v, ttr
	}
	if w := r.Writes; w != nil && w.Error == "" && w.Acked > 0 && w.Lost == 0 {
		zero := 0.0
		return &zero, ttr
	}
	return nil, ttr
}

// bypasses lists the outbound connections the instances hold to addresses
// that are not medic's own listeners (dependency listeners, proxies, the
// API): calls medic cannot bound. nil when /proc cannot be read (not Linux).
func (m *Main) bypasses(cfg *config.Config) []scorecard.Bypass {
	own := map[uint16]bool{}
	port := func(addr string) {
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			own[ap.Port()] = true
		}
	}
	port(cfg.API.Listen)
	for _, svc := range cfg.Services {
		for _, d := range svc.Dependencies {
			if d != nil {
				port(d.Listen)
			}
		}
	}
	for _, ps := range m.Proxies() {
		port(ps.Listen)
	}
	for _, d := range cfg.Databases {
		if d != nil && d.Proxy != nil {
			port(d.Proxy.Primary)
			port(d.Proxy.Replicas)
		}
	}
	if _, err := os.Stat("/proc/self/net/tcp"); err != nil {
		return nil
	}
	out := []scorecard.Bypass{}
	for _, st := range m.sup.Status() {
		count := map[string]int{}
		for _, is := range st.Instances {
			if is.PID <= 0 {
				continue
			}
			conns, err := bypass.Outbound("/proc", is.PID)
			if err != nil {
				continue // exited meanwhile
			}
			for _, c := range conns {
				if c.Remote.Addr().IsLoopback() && own[c.Remote.Port()] {
					continue // through medic
				}
				count[c.Remote.String()]++
			}
		}
		for remote, n := range count {
			out = append(out, scorecard.Bypass{Service: st.Name, Remote: remote, Connections: n})
		}
	}
	return out
}
