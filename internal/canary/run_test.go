package canary_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/canary"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/verdict"
)

// fakeFleet stands for the supervisor, the proxy and the rollout in the
// runner's unit tests (the real ones are in e2e): every Outcomes call serves
// perCall requests split by the weights, and every call is logged in order.
type fakeFleet struct {
	mu       sync.Mutex
	log      []string
	weights  map[string]int
	groups   map[string]*traffic
	status   map[string]canary.GroupStatus
	perCall  int
	promoted *config.Service
	reqs     uint64
	errs     uint64
	events   []medic.Event
}

func newFleet(seed uint64) *fakeFleet {
	return &fakeFleet{weights: map[string]int{"stable": 100}, perCall: 40,
		groups: map[string]*traffic{"canary": newTraffic(seed), "baseline": newTraffic(seed + 500), "stable": newTraffic(seed + 900)},
		status: map[string]canary.GroupStatus{}}
}

func (f *fakeFleet) note(s string) {
	f.log = append(f.log, s)
}

func (f *fakeFleet) StartGroup(_ context.Context, service, group string, spec *config.Service, n int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.note(fmt.Sprintf("start %s %s %s×%d", service, group, spec.Version, n))
	if _, ok := f.status[group]; !ok {
		f.status[group] = ready(n)
	}
	return nil
}

func (f *fakeFleet) GroupStatus(_, group string) canary.GroupStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status[group]
}

func (f *fakeFleet) StopGroup(_ context.Context, service, group string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.note("stop " + group)
	return nil
}

func (f *fakeFleet) Cursor(string, string) uint64 { return 0 }

func (f *fakeFleet) SetWeights(_ string, w map[string]int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w == nil {
		f.note("weights cleared")
		f.weights = map[string]int{"stable": 100}
		return nil
	}
	f.weights = w
	f.note(fmt.Sprintf("weights stable=%d canary=%d baseline=%d", w["stable"], w["canary"], w["baseline"]))
	return nil
}

func (f *fakeFleet) Outcomes(_, group string, cursor uint64) ([]verdict.Outcome, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []verdict.Outcome
	for range f.perCall * f.weights[group] / 100 {
		o := f.groups[group].next()
		out = append(out, o)
		f.reqs++
		if o.Status >= 500 {
			f.errs++
		}
	}
	return out, cursor + uint64(len(out))
}

func (f *fakeFleet) Counts(string) (uint64, uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs, f.errs, true
}

func (f *fakeFleet) Promote(_ context.Context, service string, spec *config.Service, actor, why string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.promoted = spec
	f.note("promote " + spec.Version)
	return nil
}

func (f *fakeFleet) emit(_ context.Context, e medic.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
}

func (f *fakeFleet) logText() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.log, "\n")
}

func newRunner(f *fakeFleet) *canary.Runner {
	return &canary.Runner{Groups: f, Traffic: f, Promoter: f, Emit: f.emit, Tick: 2 * time.Millisecond}
}

var (
	oldSpec = &config.Service{Version: "v1", Command: []string{"web"}}
	newSpec = &config.Service{Version: "v2", Command: []string{"web", "--v2"}}
)

// A bad canary: traffic goes back to stable before the groups stop, the
// stable instances are never touched, and the audit has the explained
// verdict.
func TestRunnerRollsBackBadCanary(t *testing.T) {
	f := newFleet(1)
	f.groups["canary"].errRate = 0.2
	r := newRunner(f)
	rep, err := r.Run(context.Background(), "web", canary.Config{}, oldSpec, newSpec, "api:ops")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome != "rolled-back" || rep.State.Phase != canary.RolledBack || rep.TrafficBack.IsZero() || rep.TimeToRollback() <= 0 {
		t.Fatalf("report: %s", rep.Text())
	}
	want := "start web canary v2×1\nstart web baseline v1×1\nweights stable=90 canary=5 baseline=5\nweights stable=100 canary=0 baseline=0\nstop canary\nstop baseline\nweights cleared"
	if got := f.logText(); got != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", got, want)
	}
	if f.promoted != nil {
		t.Fatal("a bad canary was promoted")
	}
	var verdictEv *medic.Event
	kinds := []string{}
	for i, e := range f.events {
		kinds = append(kinds, string(e.Kind))
		if e.Kind == canary.EventVerdict {
			verdictEv = &f.events[i]
		}
	}
	if got := strings.Join(kinds, " "); got != "deploy.canary.started deploy.canary.step deploy.canary.verdict deploy.canary.rollback deploy.canary.rolledback" {
		t.Fatalf("events: %s", got)
	}
	if verdictEv.Fields["verdict"] != "fail" || !strings.HasPrefix(verdictEv.Fields["metric.errors 5xx"], "fail: ") ||
		!strings.Contains(verdictEv.Fields["metric.errors 5xx"], "log LR") {
		t.Fatalf("verdict fields: %v", verdictEv.Fields)
	}
	text := rep.Text()
	for _, s := range []string{"phase: rolled-back (rolled-back)", "errors 5xx         fail", "time to rollback:", "clients:"} {
		if !strings.Contains(text, s) {
			t.Errorf("report lacks %q:\n%s", s, text)
		}
	}
	if got, ok := r.Status("web"); !ok || got.Outcome != "rolled-back" {
		t.Fatalf("Status after the end: %v %+v", ok, got.State)
	}
	if all := r.Reports(); len(all) != 1 || all[0].Service != "web" || all[0].Outcome != "rolled-back" {
		t.Fatalf("Reports after the end: %+v", all)
	}
}

// A good canary goes through every step, the stable instances are rolled
// out to the new release, then traffic is all on them and the groups stop.
func TestRunnerPromotesGoodCanary(t *testing.T) {
	f := newFleet(2)
	r := newRunner(f)
	rep, err := r.Run(context.Background(), "web", canary.Config{StepMinRequests: 40}, oldSpec, newSpec, "api:ops")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome != "promoted" || f.promoted != newSpec {
		t.Fatalf("report:\n%s", rep.Text())
	}
	want := "start web canary v2×1\nstart web baseline v1×1\nweights stable=90 canary=5 baseline=5\nweights stable=50 canary=25 baseline=25\nweights stable=0 canary=50 baseline=50\npromote v2\nweights stable=100 canary=0 baseline=0\nstop canary\nstop baseline\nweights cleared"
	if got := f.logText(); got != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", got, want)
	}
}

// Under propose the runner waits for an answer: nothing is promoted until
// Answer approves.
func TestRunnerWaitsForApproval(t *testing.T) {
	f := newFleet(3)
	r := newRunner(f)
	done := make(chan canary.Report, 1)
	go func() {
		rep, _ := r.Run(context.Background(), "web", canary.Config{Approve: true, Steps: []int{10, 100}}, oldSpec, newSpec, "api:ops")
		done <- rep
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if rep, ok := r.Status("web"); ok && rep.State.Phase == canary.Awaiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never awaited an approval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if strings.Contains(f.logText(), "promote") {
		t.Fatal("promoted before the approval")
	}
	if aw := r.Awaiting(); len(aw) != 1 || aw[0].Service != "web" || aw[0].State.Phase != canary.Awaiting {
		t.Fatalf("Awaiting lists %+v, want web's canary", aw)
	}
	if err := r.Answer("nope", "alice", true); !errors.Is(err, canary.ErrNoCanary) {
		t.Fatalf("answer to another service: %v", err)
	}
	if err := r.Answer("web", "api:alice", true); err != nil {
		t.Fatal(err)
	}
	rep := <-done
	if rep.Outcome != "promoted" {
		t.Fatalf("report:\n%s", rep.Text())
	}
	if aw := r.Awaiting(); len(aw) != 0 {
		t.Fatalf("Awaiting after the end: %+v", aw)
	}
	var approved bool
	for _, e := range f.events {
		if e.Kind == canary.EventApproval && e.Actor == "api:alice" {
			approved = true
		}
	}
	if !approved {
		t.Fatalf("no approval event by api:alice: %v", f.events)
	}
}

// A crash-looping canary and an interrupted canary roll back; a second
// canary of a running one is refused.
func TestRunnerCrashAndInterrupt(t *testing.T) {
	f := newFleet(4)
	f.status["canary"] = canary.GroupStatus{Want: 1, Ready: 0, Restarts: 3}
	rep, err := newRunner(f).Run(context.Background(), "web", canary.Config{}, oldSpec, newSpec, "ops")
	if err != nil || rep.Outcome != "rolled-back" || !strings.Contains(rep.State.Reason, "crash-loops") {
		t.Fatalf("crash loop: %v\n%s", err, rep.Text())
	}

	f = newFleet(5)
	f.perCall = 0 // no traffic: stays undecided
	r := newRunner(f)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan canary.Report, 1)
	go func() {
		rep, _ := r.Run(ctx, "web", canary.Config{}, oldSpec, newSpec, "ops")
		done <- rep
	}()
	for {
		if rep, ok := r.Status("web"); ok && rep.State.Phase == canary.Stepping {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if _, err := r.Run(ctx, "web", canary.Config{}, oldSpec, newSpec, "ops"); !errors.Is(err, canary.ErrRunning) {
		t.Fatalf("a second canary: %v", err)
	}
	cancel()
	rep = <-done
	if rep.Outcome != "rolled-back" || !strings.Contains(rep.State.Reason, "interrupted") || !strings.HasSuffix(f.logText(), "weights stable=100 canary=0 baseline=0\nstop canary\nstop baseline\nweights cleared") {
		t.Fatalf("interrupted:\n%s\n%s", rep.Text(), f.logText())
	}
}

// Refused settings are refused before anything starts.
func TestRunnerRefusesInvalid(t *testing.T) {
	f := newFleet(6)
	_, err := newRunner(f).Run(context.Background(), "web", canary.Config{Steps: []int{50}}, oldSpec, newSpec, "ops")
	if !errors.Is(err, canary.ErrInvalid) || f.logText() != "" {
		t.Fatalf("err %v, calls %q", err, f.logText())
	}
}

// A report read back from its JSON (the API's answer) is the same.
func TestReportJSON(t *testing.T) {
	f := newFleet(7)
	f.groups["canary"].errRate = 0.3
	rep, err := newRunner(f).Run(context.Background(), "web", canary.Config{}, oldSpec, newSpec, "ops")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back canary.Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Text() != rep.Text() || back.State.Phase != canary.RolledBack || back.State.Verdict.Decision != verdict.Fail {
		t.Fatalf("read back:\n%s\nwant:\n%s", back.Text(), rep.Text())
	}
}

// fakeProber answers synthetic requests from the fleet's group traffic.
type fakeProber struct{ f *fakeFleet }

func (p fakeProber) Get(_ context.Context, service, group, path string) verdict.Outcome {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	if path != "/items" {
		return verdict.Outcome{Status: 404}
	}
	return p.f.groups[group].next()
}

// A step starved of traffic (4 requests a tick, none of them for a 5 %
// canary) is rolled back undecided at step_max_duration without synthetic
// load; with it, the good canary is promoted on medic's own requests and
// the bad one rolled back on them, and the report counts them.
func TestRunnerSyntheticLoad(t *testing.T) {
	starved := func(seed uint64, errRate float64) *fakeFleet {
		f := newFleet(seed)
		f.perCall = 4
		f.groups["canary"].errRate = errRate
		return f
	}
	f := starved(3, 0)
	r := newRunner(f)
	rep, err := r.Run(context.Background(), "web", canary.Config{StepMaxDuration: time.Second}, oldSpec, newSpec, "api:ops")
	if err != nil || rep.Outcome != "rolled-back" || !strings.Contains(rep.State.Reason, "undecided at 5%") || rep.SyntheticRequests != 0 {
		t.Fatalf("starved, no synthetic load: %v\n%s", err, rep.Text())
	}

	syn := canary.Config{StepMaxDuration: time.Minute, Synthetic: canary.Synthetic{Path: "/items", Rate: 200}}
	f = starved(4, 0)
	r = newRunner(f)
	r.Prober = fakeProber{f}
	rep, err = r.Run(context.Background(), "web", syn, oldSpec, newSpec, "api:ops")
	if err != nil || rep.Outcome != "promoted" || rep.SyntheticRequests < 100 || !strings.Contains(rep.Text(), "synthetic load: ") {
		t.Fatalf("starved, synthetic load, good canary: %v\n%s", err, rep.Text())
	}
	t.Logf("good canary: %d synthetic requests of %d canary and %d baseline", rep.SyntheticRequests, rep.CanaryRequests, rep.BaselineRequests)

	f = starved(5, 0.2)
	r = newRunner(f)
	r.Prober = fakeProber{f}
	rep, err = r.Run(context.Background(), "web", syn, oldSpec, newSpec, "api:ops")
	if err != nil || rep.Outcome != "rolled-back" || !strings.Contains(rep.State.Reason, "errors 5xx") || rep.SyntheticRequests == 0 {
		t.Fatalf("starved, synthetic load, bad canary: %v\n%s", err, rep.Text())
	}
	if f.promoted != nil {
		t.Fatal("a bad canary was promoted")
	}
}

// TopUp fills a group to the rate, carrying fractions; real traffic above
// the rate owes nothing and carries nothing.
func TestTopUp(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		tick  time.Duration
		real  int
		carry float64
		n     int
		next  float64
	}{
		{20, 250 * time.Millisecond, 0, 0, 5, 0},
		{20, 250 * time.Millisecond, 2, 0, 3, 0},
		{20, 250 * time.Millisecond, 9, 0, 0, 0},
		{10, 250 * time.Millisecond, 0, 0, 2, 0.5},
		{10, 250 * time.Millisecond, 0, 0.5, 3, 0},
		{10, 250 * time.Millisecond, 3, 0.5, 0, 0},
	} {
		n, next := canary.TopUp(tc.rate, tc.tick, tc.real, tc.carry)
		if n != tc.n || next != tc.next {
			t.Errorf("%+v: %d carry %v, want %d carry %v", tc, n, next, tc.n, tc.next)
		}
	}
}
