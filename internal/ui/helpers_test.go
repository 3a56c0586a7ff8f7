package ui_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/events"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/sqlite"
	"github.com/medic-dev/medic/internal/supervise"
	"github.com/medic-dev/medic/internal/ui"
	"github.com/medic-dev/medic/internal/ui/scorecard"
)

// fakeSupervisor serves a settable status and records the actions it gets;
// an action changes the instance's state as the real supervisor would and
// publishes the events through the fixture's Record.
type fakeSupervisor struct {
	mu       sync.Mutex
	services []supervise.ServiceStatus
	calls    []string
	record   func(ctx context.Context, ev medic.Event)
	now      func() time.Time
}

func (f *fakeSupervisor) Status() []supervise.ServiceStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]supervise.ServiceStatus, len(f.services))
	for i, s := range f.services {
		s.Instances = append([]supervise.InstanceStatus(nil), s.Instances...)
		out[i] = s
	}
	return out
}

// set changes one instance and publishes kind with reason.
func (f *fakeSupervisor) set(id string, kind medic.EventKind, reason string, change func(in *supervise.InstanceStatus)) {
	f.mu.Lock()
	for si := range f.services {
		for ii := range f.services[si].Instances {
			in := &f.services[si].Instances[ii]
			if in.ID == id {
				change(in)
			}
		}
		ready := 0
		for _, in := range f.services[si].Instances {
			if in.Ready {
				ready++
			}
		}
		f.services[si].Ready = ready
	}
	f.mu.Unlock()
	f.record(context.Background(), medic.Event{Kind: kind, Target: id, Actor: "supervisor", Reason: reason})
}

func (f *fakeSupervisor) act(what string, id medic.InstanceID, actor string) error {
	f.mu.Lock()
	f.calls = append(f.calls, what+" "+id.String()+" by "+actor)
	f.mu.Unlock()
	switch what {
	case "stop":
		f.set(id.String(), medic.EventStopped, "stopped by "+actor, func(in *supervise.InstanceStatus) {
			in.State, in.Ready, in.PID = medic.StateStopped, false, 0
		})
	default:
		f.set(id.String(), medic.EventStarted, what+" by "+actor, func(in *supervise.InstanceStatus) {
			in.State, in.Ready, in.PID, in.StartedAt = medic.StateRunning, true, 4242, f.now()
			if what == "restart" {
				in.Restarts++
			}
		})
	}
	return nil
}

func (f *fakeSupervisor) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeSupervisor) RestartInstance(_ context.Context, id medic.InstanceID, actor, _ string) error {
	return f.act("restart", id, actor)
}
func (f *fakeSupervisor) StopInstance(_ context.Context, id medic.InstanceID, actor, _ string) error {
	return f.act("stop", id, actor)
}
func (f *fakeSupervisor) StartInstance(_ context.Context, id medic.InstanceID, actor, _ string) error {
	return f.act("start", id, actor)
}
func (f *fakeSupervisor) RollingRestart(_ context.Context, svc, actor string, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "rolling "+svc+" by "+actor)
	return nil
}
func (f *fakeSupervisor) Scale(context.Context, string, int, string) error { return nil }
func (f *fakeSupervisor) Rollback(context.Context, string, string) error   { return nil }

// fakeTraffic serves fixed proxy figures.
type fakeTraffic struct{ stats []proxy.Stats }

func (t fakeTraffic) Stats() []proxy.Stats                         { return t.stats }
func (t fakeTraffic) SetFault(medic.InstanceID, proxy.Fault) error { return nil }

// fixture is the real API server with the dashboard mounted and wrapped, as
// the agent serves it, over a fake supervisor.
type fixture struct {
	handler  http.Handler
	srv      *api.Server
	mounts   []func(*http.ServeMux, api.Guards) // more routes: call rebuild after adding
	ui       *ui.UI
	sup      *fakeSupervisor
	log      *audit.Log
	db       *sqlite.DB
	history  *ui.History
	clock    clock.Clock
	op, view string
}

type fixtureOpts struct {
	noTokens  bool
	clock     clock.Clock
	instances int // per service "web"; default 3
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{clock: clock.Or(o.clock)}
	var toks *auth.Tokens
	if !o.noTokens {
		file := filepath.Join(dir, "tokens.yaml")
		var err error
		if f.op, err = auth.AddToken(file, "ops", auth.RoleOperator); err != nil {
			t.Fatal(err)
		}
		if f.view, err = auth.AddToken(file, "dash", auth.RoleViewer); err != nil {
			t.Fatal(err)
		}
		if toks, err = auth.LoadTokens(file); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sqlite.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.db = db
	if f.log, err = audit.Open(db, f.clock); err != nil {
		t.Fatal(err)
	}
	hub := events.New(500)
	record := func(ctx context.Context, ev medic.Event) {
		if ev.Time.IsZero() {
			ev.Time = f.clock.Now()
		}
		if _, err := f.log.Append(context.WithoutCancel(ctx), audit.Record{Time: ev.Time, Actor: ev.Actor, Kind: string(ev.Kind), Target: ev.Target, Reason: ev.Reason}); err != nil {
			t.Errorf("audit append: %v", err)
		}
		hub.Publish(ev)
	}
	n := o.instances
	if n == 0 {
		n = 3
	}
	f.sup = &fakeSupervisor{record: record, now: f.clock.Now, services: []supervise.ServiceStatus{
		service("web", n, f.clock.Now()), service("worker", 1, f.clock.Now()),
	}}
	f.sup.services[1].MinAvailable = 0
	traffic := fakeTraffic{stats: []proxy.Stats{{Service: "web", Mode: "http", Listen: "127.0.0.1:8080", Requests: 1200, Errors: 3, Retries: 7,
		Instances: []proxy.InstanceStats{{ID: "web/0", Ready: true, InRotation: true}, {ID: "web/1", Ready: true, InRotation: true}}}}}
	f.history = ui.NewHistory(db, time.Hour)
	cfg := &config.Config{Services: map[string]*config.Service{
		"web":    {Command: []string{"./web"}, Instances: n, Port: 9100, Proxy: &config.Proxy{Listen: "127.0.0.1:8080"}},
		"worker": {Command: []string{"./worker"}},
	}}
	cfg.SetDefaults()
	f.ui = ui.New(ui.Options{
		Tokens: toks, Clock: f.clock, Record: record, History: f.history,
		Sample: func() ui.Snapshot { return ui.Snapshot{Services: f.sup.Status(), Proxies: traffic.Stats()} },
		Scorecard: func(context.Context) (scorecard.Input, error) {
			return scorecard.Input{Config: cfg, DrillsKnown: true, Previous: map[string]bool{}}, nil
		},
	})
	f.srv = &api.Server{
		Tokens: toks, Supervisor: f.sup, Traffic: traffic, Hub: hub, Audit: f.log, Record: record,
		Metrics: prometheus.NewRegistry(), LogDir: dir, Logger: slog.New(slog.DiscardHandler), Clock: f.clock,
	}
	f.rebuild()
	return f
}

// rebuild makes the handler as api.Server.Serve does with Wrap set: the
// dashboard's routes mounted, the whole handler wrapped by its session middleware.
func (f *fixture) rebuild() {
	f.srv.Mounts = append([]func(*http.ServeMux, api.Guards){f.ui.Mount}, f.mounts...)
	f.srv.Wrap = f.ui.Wrap
	f.handler = f.srv.Wrap(f.srv.Handler())
}

func service(name string, n int, now time.Time) supervise.ServiceStatus {
	s := supervise.ServiceStatus{Name: name, Desired: n, Ready: n, MinAvailable: max(n-1, 0)}
	for i := range n {
		s.Instances = append(s.Instances, supervise.InstanceStatus{
			ID: fmt.Sprintf("%s/%d", name, i), Service: name, Index: i, State: medic.StateRunning, PID: 1000 + i, Ready: true, Started: true,
			Since: now.Add(-time.Hour), StartedAt: now.Add(-time.Hour), RSSBytes: uint64(20+i) << 20, CPU: float64(i),
		})
	}
	return s
}
