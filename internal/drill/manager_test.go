package drill_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/events"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/supervise"
)

// fakeSup is a supervisor whose services are plain data.
type fakeSup struct {
	mu    sync.Mutex
	svcs  []supervise.ServiceStatus
	calls []string
}

func (f *fakeSup) Status() []supervise.ServiceStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]supervise.ServiceStatus(nil), f.svcs...)
}

func (f *fakeSup) call(what string, id medic.InstanceID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, what+" "+id.String())
	return nil
}

func (f *fakeSup) RestartInstance(_ context.Context, id medic.InstanceID, _, _ string) error {
	return f.call("restart", id)
}
func (f *fakeSup) StopInstance(_ context.Context, id medic.InstanceID, _, _ string) error {
	return f.call("stop", id)
}
func (f *fakeSup) StartInstance(_ context.Context, id medic.InstanceID, _, _ string) error {
	return f.call("start", id)
}

func readySvc(name string, n int) supervise.ServiceStatus {
	st := supervise.ServiceStatus{Name: name, Desired: n, Ready: n, MinAvailable: n - 1}
	for i := range n {
		st.Instances = append(st.Instances, supervise.InstanceStatus{ID: fmt.Sprintf("%s/%d", name, i), Service: name, Index: i,
			Ready: true, PID: 1000 + i, Port: 9000 + i, State: medic.StateRunning})
	}
	return st
}

// harness is a manager over fakes, recording every event it is given.
type harness struct {
	mgr *drill.Manager
	sup *fakeSup
	hub *events.Hub
	mu  sync.Mutex
	evs []medic.Event
	// slowVerdict, if set, delays the recording of drill.verdict (a slow fsync).
	slowVerdict time.Duration
}

func (h *harness) record(_ context.Context, ev medic.Event) {
	if ev.Kind == "drill.verdict" && h.slowVerdict > 0 {
		time.Sleep(h.slowVerdict)
	}
	h.mu.Lock()
	h.evs = append(h.evs, ev)
	h.mu.Unlock()
	h.hub.Publish(ev)
}

func (h *harness) kinds(actorPrefix string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s []string
	for _, e := range h.evs {
		if strings.HasPrefix(e.Actor, actorPrefix) {
			s = append(s, string(e.Kind))
		}
	}
	return strings.Join(s, ",")
}

func newHarness(t *testing.T, tr drill.Traffic) *harness {
	t.Helper()
	allow := config.Drills{Allow: true}
	cfg := &config.Config{Services: map[string]*config.Service{
		"web":    {Drills: allow, Instances: 3},
		"locked": {Instances: 3},
		"prot":   {Drills: allow, Instances: 3, Remedy: &config.ServiceRemedy{Protected: true}},
		"solo":   {Drills: allow, Instances: 1},
	}}
	if tr != nil {
		cfg.Services["web"].Proxy = &config.Proxy{Listen: "127.0.0.1:0"}
	}
	h := &harness{sup: &fakeSup{svcs: []supervise.ServiceStatus{readySvc("web", 3), readySvc("locked", 3), readySvc("prot", 3), readySvc("solo", 1)}},
		hub: events.New(100)}
	var err error
	h.mgr, err = drill.NewManager(drill.Deps{Sup: h.sup, Traffic: tr, Events: h.hub, Record: h.record,
		Config: func() *config.Config { return cfg }, PollEvery: 10 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.mgr.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return h
}

// quick is a scenario with short timings around a test injector.
func quick(name, fault string, deadline time.Duration) drill.Scenario {
	d := func(v time.Duration) config.Duration { return config.Duration(v) }
	return drill.Scenario{Name: name, FailureMode: "process crashes", Fault: drill.Fault{Kind: fault},
		Detect:  []drill.Match{{Kind: "instance.restart"}},
		Recover: []drill.Match{{Kind: "instance.started"}, {Kind: "instance.ready"}},
		Warmup:  d(20 * time.Millisecond), Deadline: d(deadline), Settle: d(200 * time.Millisecond), Cooldown: d(20 * time.Millisecond)}
}

// recovering is an injector standing for a supervisor that restarts the
// instance at once: it records the events the real one would.
func recovering(h *harness, restored *atomic.Int32) drill.Injector {
	return drill.InjectorFunc(func(ctx context.Context, t *drill.Target) (drill.Restore, error) {
		for _, k := range []medic.EventKind{"instance.restart", "instance.started", "instance.ready"} {
			h.record(ctx, medic.Event{Time: time.Now(), Kind: k, Target: t.Instance.String(), Actor: "supervisor", Reason: string(k)})
		}
		t.Note("pretended to kill %s", t.Instance)
		return func(context.Context) error { restored.Add(1); return nil }, nil
	})
}

// addQuickKill registers scenario quick-kill over the recovering injector
// and returns its count of restorations.
func addQuickKill(t *testing.T, h *harness) *atomic.Int32 {
	t.Helper()
	restored := &atomic.Int32{}
	h.mgr.Injectors().Register("pretend", recovering(h, restored))
	if err := h.mgr.Catalog().Add(quick("quick-kill", "pretend", 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	return restored
}

func TestDrillPassesAndIsKept(t *testing.T) {
	h := newHarness(t, nil)
	restored := addQuickKill(t, h)
	res, err := h.mgr.Start(drill.Request{Scenario: "quick-kill", Service: "web"}, "api:test")
	if err != nil {
		t.Fatal(err)
	}
	if res.State != drill.StateRunning || res.Subject.Instance != "web/2" || res.Load.URL != "" {
		t.Fatalf("started: %+v", res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err = h.mgr.Wait(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Passed || res.State != drill.StatePassed || res.TTD == nil || res.TTR == nil || restored.Load() != 1 {
		t.Fatalf("verdict: %s; reasons %q; restored %d", res.Summary, res.Reasons, restored.Load())
	}
	if len(res.Steps) != 2 || res.Steps[0].Detail != "pretended to kill web/2" || res.Steps[1].Action != "restore" {
		t.Fatalf("steps %+v", res.Steps)
	}
	if got := h.kinds("drill:"); got != "drill.started,drill.injected,drill.restored,drill.verdict" {
		t.Fatalf("drill records: %s", got)
	}
	list, _ := h.mgr.List(ctx, 10)
	modes, _ := h.mgr.Modes(ctx)
	if len(list) != 1 || list[0].ID != res.ID || len(modes) != 1 || modes[0].LastTTR == nil || modes[0].FailureMode != "process crashes" {
		t.Fatalf("list %+v modes %+v", list, modes)
	}
}

// A caller that saw a drill's verdict may start the next drill at once:
// the verdict shows only once it is recorded (slowly here) and the manager
// is free.
func TestNextDrillStartsOnceTheVerdictIsKnown(t *testing.T) {
	h := newHarness(t, nil)
	h.slowVerdict = 300 * time.Millisecond
	addQuickKill(t, h)
	res, err := h.mgr.Start(drill.Request{Scenario: "quick-kill", Service: "web"}, "api:test")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !res.Done() {
		if time.Now().After(deadline) {
			t.Fatal("no verdict")
		}
		time.Sleep(5 * time.Millisecond)
		if res, err = h.mgr.Get(context.Background(), res.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.mgr.Start(drill.Request{Scenario: "quick-kill", Service: "web"}, "api:test"); err != nil {
		t.Fatalf("the next drill after a verdict: %v", err)
	}
}

func TestDrillDeadlineRestoresAndFails(t *testing.T) {
	h := newHarness(t, nil)
	var restored atomic.Int32
	h.mgr.Injectors().Register("silent", drill.InjectorFunc(func(ctx context.Context, t *drill.Target) (drill.Restore, error) {
		return func(context.Context) error { restored.Add(1); return nil }, nil
	}))
	h.mgr.Catalog().Add(quick("nothing-happens", "silent", 200*time.Millisecond))
	res, err := h.mgr.Start(drill.Request{Scenario: "nothing-happens", Service: "web"}, "api:test")
	if err != nil {
		t.Fatal(err)
	}
	res, _ = h.mgr.Wait(context.Background(), res.ID)
	if res.Passed || res.State != drill.StateFailed || restored.Load() != 1 {
		t.Fatalf("%s; restored %d", res.Summary, restored.Load())
	}
	all := strings.Join(res.Reasons, "\n")
	for _, want := range []string{"deadline: not recovered within 200ms; the drill stopped injecting and restored what it changed", "not detected: no instance.restart on target"} {
		if !strings.Contains(all, want) {
			t.Errorf("reasons lack %q:\n%s", want, all)
		}
	}
}

func TestAbortAndShutdownRestore(t *testing.T) {
	h := newHarness(t, nil)
	var restored atomic.Int32
	h.mgr.Injectors().Register("silent", drill.InjectorFunc(func(ctx context.Context, t *drill.Target) (drill.Restore, error) {
		return func(context.Context) error { restored.Add(1); return nil }, nil
	}))
	h.mgr.Catalog().Add(quick("long", "silent", time.Minute))
	res, err := h.mgr.Start(drill.Request{Scenario: "long", Service: "web"}, "api:test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.mgr.Start(drill.Request{Scenario: "long", Service: "web"}, "api:other"); !errors.Is(err, drill.ErrBusy) {
		t.Fatalf("second drill: %v, want ErrBusy", err)
	}
	waitPhase(t, h.mgr, res.ID, drill.PhaseInjected)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err = h.mgr.Abort(ctx, "api:ops")
	if err != nil {
		t.Fatal(err)
	}
	if res.State != drill.StateAborted || res.Passed || res.Reasons[0] != "aborted by api:ops" || restored.Load() != 1 || len(res.Reasons) != 1 {
		t.Fatalf("after abort: %s %q restored %d", res.State, res.Reasons, restored.Load())
	}
	if _, err := h.mgr.Abort(ctx, "api:ops"); !errors.Is(err, drill.ErrNotFound) {
		t.Fatalf("abort with none running: %v", err)
	}
	if !strings.Contains(h.kinds("api:ops"), "drill.abort") {
		t.Fatalf("the abort request is not recorded: %s", h.kinds(""))
	}
}

func waitPhase(t *testing.T, m *drill.Manager, id int64, phase string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := m.Get(context.Background(), id)
		if err == nil && r.Phase == phase {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("drill %d never reached phase %s (at %s)", id, phase, r.Phase)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestShutdownAbortsTheRunningDrill(t *testing.T) {
	sup := &fakeSup{svcs: []supervise.ServiceStatus{readySvc("web", 3)}}
	hub := events.New(10)
	cfg := &config.Config{Services: map[string]*config.Service{"web": {Drills: config.Drills{Allow: true}}}}
	mgr, err := drill.NewManager(drill.Deps{Sup: sup, Events: hub, Record: func(_ context.Context, ev medic.Event) { hub.Publish(ev) },
		Config: func() *config.Config { return cfg }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var restored atomic.Int32
	mgr.Injectors().Register("silent", drill.InjectorFunc(func(ctx context.Context, t *drill.Target) (drill.Restore, error) {
		return func(context.Context) error { restored.Add(1); return nil }, nil
	}))
	mgr.Catalog().Add(quick("long", "silent", time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Serve(ctx) }()
	res, err := mgr.Start(drill.Request{Scenario: "long", Service: "web"}, "api:test")
	if err != nil {
		t.Fatal(err)
	}
	waitPhase(t, mgr, res.ID, drill.PhaseInjected)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	res, _ = mgr.Get(context.Background(), res.ID)
	if res.State != drill.StateAborted || res.Reasons[0] != "aborted: medic is stopping" || restored.Load() != 1 {
		t.Fatalf("after shutdown: %s %q restored %d", res.State, res.Reasons, restored.Load())
	}
	if _, err := mgr.Start(drill.Request{Scenario: "long", Service: "web"}, "api:test"); !errors.Is(err, drill.ErrClosed) {
		t.Fatalf("start after Serve returned: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	h := newHarness(t, nil)
	for _, c := range []struct {
		req  drill.Request
		is   error
		want string
	}{
		{drill.Request{Scenario: "nope", Service: "web"}, drill.ErrUnknownScenario, `unknown scenario "nope"`},
		{drill.Request{Scenario: "kill", Service: "nope"}, drill.ErrRefused, `unknown service "nope"`},
		{drill.Request{Scenario: "kill"}, drill.ErrRefused, "no service named"},
		{drill.Request{Scenario: "kill", Service: "locked"}, drill.ErrRefused, "does not allow drills"},
		{drill.Request{Scenario: "kill", Service: "prot"}, drill.ErrRefused, "protected"},
		{drill.Request{Scenario: "kill", Service: "solo"}, drill.ErrRefused, "disruption budget: solo has 1 of 1 instances ready"},
		{drill.Request{Scenario: "leak", Service: "web"}, drill.ErrRefused, "needs the remedy component"},
		{drill.Request{Scenario: "dependency-down", Service: "web"}, drill.ErrRefused, "has no depends_on"},
		{drill.Request{Scenario: "kill", Service: "web", Instance: ptr(7)}, drill.ErrRefused, "no instance 7"},
	} {
		_, err := h.mgr.Start(c.req, "api:test")
		if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %v containing %q", c.req, err, c.is, c.want)
		}
	}
	if got := strings.Count(h.kinds("api:test"), "drill.refused"); got != 8 {
		t.Fatalf("%d refusals recorded, want 8 (unknown scenarios are not refusals)", got)
	}
}

func ptr(i int) *int { return &i }

// fakeTraffic is a proxy in front of an httptest server, recording faults.
type fakeTraffic struct {
	addr   string
	hits   atomic.Uint64
	mu     sync.Mutex
	faults []string
}

func (f *fakeTraffic) Stats() []proxy.Stats {
	st := proxy.Stats{Service: "web", Mode: "http", Listen: f.addr, Requests: f.hits.Load()}
	for i := range 3 {
		st.Instances = append(st.Instances, proxy.InstanceStats{ID: fmt.Sprintf("web/%d", i), Ready: true, InRotation: true, Requests: f.hits.Load()})
	}
	return []proxy.Stats{st}
}

func (f *fakeTraffic) SetFault(id medic.InstanceID, fl proxy.Fault) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, fmt.Sprintf("%s error_rate=%v", id, fl.ErrorRate))
	return nil
}

// TestDrillWithLoadAndProxyFault runs the built-in proxy injector with real
// load against a local server: the drill counts requests and errors, and the
// fault is set and cleared.
func TestDrillWithLoadAndProxyFault(t *testing.T) {
	tr := &fakeTraffic{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tr.hits.Add(1)%50 == 0 {
			http.Error(w, "no", http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	tr.addr = strings.TrimPrefix(srv.URL, "http://")
	h := newHarness(t, tr)
	sc := quick("proxy-errors", "proxy", time.Second)
	sc.Fault.Params = map[string]string{"error_rate": "1"}
	sc.Detect = []drill.Match{{Kind: drill.ObservedFailing}}
	sc.Recover = nil
	h.mgr.Catalog().Add(sc)
	res, err := h.mgr.Start(drill.Request{Scenario: "proxy-errors", Service: "web", LoadRPS: 200}, "api:test")
	if err != nil {
		t.Fatal(err)
	}
	res, _ = h.mgr.Wait(context.Background(), res.ID)
	tr.mu.Lock()
	faults := strings.Join(tr.faults, "; ")
	tr.mu.Unlock()
	if faults != "web/2 error_rate=1; web/2 error_rate=0" {
		t.Fatalf("faults set: %s", faults)
	}
	if res.Requests < 100 || res.ClientErrors < 1 || res.Load.URL != srv.URL+"/" || len(res.Series) == 0 {
		t.Fatalf("load: %d requests, %d errors, url %s", res.Requests, res.ClientErrors, res.Load.URL)
	}
	// The fake proxy never counts a failed try, so nothing detects the fault:
	// a drill that measures nothing must not pass.
	if res.Passed || !strings.Contains(strings.Join(res.Reasons, "\n"), "not detected") {
		t.Fatalf("verdict: %s", res.Summary)
	}
}

func TestLeftoverFillFilesAreRemoved(t *testing.T) {
	dir := t.TempDir()
	left := filepath.Join(dir, "medic-drill-3.fill")
	keep := filepath.Join(dir, "cache.bin")
	for _, f := range []string{left, keep} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hub := events.New(10)
	var kinds []string
	cfg := &config.Config{Drills: &config.DrillsConfig{DiskPaths: []string{dir}}}
	mgr, err := drill.NewManager(drill.Deps{Sup: &fakeSup{}, Events: hub, Config: func() *config.Config { return cfg },
		Record: func(_ context.Context, ev medic.Event) { kinds = append(kinds, string(ev.Kind)) }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Serve cleans up, then stops at once
	mgr.Serve(ctx)
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover fill file: %v", err)
	}
	if _, err := os.Stat(keep); err != nil || strings.Join(kinds, ",") != "drill.leftover" {
		t.Fatalf("other file: %v; recorded %v", err, kinds)
	}
}

// TestProtectedDatabaseRefusesDrills: a database member marked protected is
// never the subject of a drill, even one it allows.
func TestProtectedDatabaseRefusesDrills(t *testing.T) {
	cfg := &config.Config{Databases: map[string]*config.Database{"pg": {Drills: config.Drills{Allow: true}, Protected: true}}}
	var recorded []medic.Event
	mgr, err := drill.NewManager(drill.Deps{Sup: &fakeSup{}, Events: events.New(10), Components: []string{"database"},
		Record: func(_ context.Context, ev medic.Event) { recorded = append(recorded, ev) },
		Config: func() *config.Config { return cfg }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mgr.Injectors().Register("db-kill-primary", drill.InjectorFunc(func(context.Context, *drill.Target) (drill.Restore, error) {
		t.Fatal("the injector ran against a protected database")
		return nil, nil
	}))
	_, err = mgr.Start(drill.Request{Scenario: "db-kill-primary", Service: "pg"}, "api:test")
	if !errors.Is(err, drill.ErrRefused) || !strings.Contains(err.Error(), "database pg is protected") {
		t.Fatalf("drill of a protected database: %v, want a refusal naming the protection", err)
	}
}
