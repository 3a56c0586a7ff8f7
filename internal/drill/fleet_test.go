package drill_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/events"
	"github.com/medic-dev/medic/internal/supervise"
)

// fakeHostDrill stands for the fleet component's host-kill injector: Plan
// refuses host "bad" (with a plain error) and sets short timings; Inject
// records what the drilling agent would see (the host suspect, capacity
// restored on the survivors).
type fakeHostDrill struct {
	record func(context.Context, medic.Event)
	mu     sync.Mutex
	target drill.Target
}

func (f *fakeHostDrill) Plan(req drill.Request, sc *drill.Scenario, s *drill.Subject) error {
	if req.Host == "bad" {
		return errors.New("capacity: 2 would be short")
	}
	d := func(v time.Duration) config.Duration { return config.Duration(v) }
	sc.Warmup, sc.Hold, sc.Deadline, sc.Settle, sc.Cooldown = d(10*time.Millisecond), d(150*time.Millisecond), d(2*time.Second), d(100*time.Millisecond), d(10*time.Millisecond)
	s.Host = "fleet/prod/" + req.Host
	return nil
}

func (f *fakeHostDrill) Inject(ctx context.Context, t *drill.Target) (drill.Restore, error) {
	f.mu.Lock()
	f.target = *t
	f.mu.Unlock()
	now := time.Now()
	f.record(ctx, medic.Event{Time: now, Kind: medic.EventHostSuspect, Target: "fleet/prod/h2", Actor: "fleet"}) // another host: not the detection
	f.record(ctx, medic.Event{Time: now, Kind: medic.EventHostSuspect, Target: "fleet/prod/" + t.Host, Actor: "fleet"})
	f.record(ctx, medic.Event{Time: now, Kind: medic.EventFleetCapacityRestored, Target: t.Service, Actor: t.Actor()})
	return func(context.Context) error { return nil }, nil
}

func TestFleetDrillPlanAndRun(t *testing.T) {
	allow := config.Drills{Allow: true}
	cfg := &config.Config{Services: map[string]*config.Service{
		"web":   {Drills: allow, Instances: 2, Fleet: &config.ServiceFleet{Instances: 6}},
		"plain": {Drills: allow, Instances: 2},
	}}
	h := &harness{sup: &fakeSup{svcs: []supervise.ServiceStatus{readySvc("web", 2), readySvc("plain", 2)}}, hub: events.New(100)}
	mgr, err := drill.NewManager(drill.Deps{Sup: h.sup, Events: h.hub, Record: h.record, Components: []string{"fleet"},
		Config: func() *config.Config { return cfg }, PollEvery: 10 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.mgr = mgr
	fake := &fakeHostDrill{record: h.record}
	mgr.Injectors().Register("host-kill", fake)
	mgr.Injectors().Register("etcd-member-loss", fake)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	for _, c := range []struct {
		req  drill.Request
		want string
	}{
		{drill.Request{Scenario: "host-kill", Service: "web"}, "name the host (--host)"},
		{drill.Request{Scenario: "host-kill", Service: "plain", Host: "h3"}, "has no fleet section"},
		{drill.Request{Scenario: "host-kill", Service: "web", Host: "bad"}, "capacity: 2 would be short"},
		{drill.Request{Scenario: "host-kill", Service: "web", Host: "h3", Instance: ptr(1)}, "takes a host, not an instance"},
		{drill.Request{Scenario: "kill", Service: "web", Host: "h3"}, "does not take a host"},
		{drill.Request{Scenario: "host-partition", Service: "web", Host: "h3"}, `no injector for fault "host-partition"`},
		{drill.Request{Scenario: "host-kill", Service: "web", Host: "h3", Member: "e1"}, "takes a host (--host), not an etcd member"},
		{drill.Request{Scenario: "etcd-member-loss", Service: "web", Host: "h3"}, "takes an etcd member (--member), not a host"},
	} {
		_, err := mgr.Start(c.req, "api:test")
		if !errors.Is(err, drill.ErrRefused) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want a refusal containing %q", c.req, err, c.want)
		}
	}
	// The only fleet service is the default.
	res, err := mgr.Start(drill.Request{Scenario: "host-kill", Host: "h3"}, "api:test")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	res, err = mgr.Wait(wctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Passed || res.Service != "web" || res.Subject.Host != "fleet/prod/h3" || res.TTD == nil || res.TTR == nil {
		t.Fatalf("verdict %s; reasons %q; subject %+v", res.Summary, res.Reasons, res.Subject)
	}
	if res.Detected.Target != "fleet/prod/h3" || res.Recovered.Kind != string(medic.EventFleetCapacityRestored) {
		t.Fatalf("detected %+v, recovered %+v", res.Detected, res.Recovered)
	}
	if !strings.Contains(res.Summary, "host-kill fleet/prod/h3 (web): passed") {
		t.Fatalf("summary %q", res.Summary)
	}
	fake.mu.Lock()
	tg := fake.target
	fake.mu.Unlock()
	if tg.Host != "h3" || tg.Hold != 150*time.Millisecond || tg.Service != "web" {
		t.Fatalf("target host %q hold %v service %q", tg.Host, tg.Hold, tg.Service)
	}
	// Without the fleet component, a fleet drill is refused.
	mgr2, _ := drill.NewManager(drill.Deps{Sup: h.sup, Events: h.hub, Record: h.record, Config: func() *config.Config { return cfg }}, nil)
	if _, err := mgr2.Start(drill.Request{Scenario: "host-kill", Service: "web", Host: "h3"}, "api:test"); err == nil || !strings.Contains(err.Error(), "needs the fleet component") {
		t.Fatalf("without the fleet component: %v", err)
	}
}

// The "host" of a match is the fleet host a fleet drill is aimed at.
func TestMatchOnHost(t *testing.T) {
	m := drill.Match{Kind: "fleet.host.suspect|fleet.host.lost", On: "host"}
	s := drill.Subject{Service: "web", Host: "fleet/prod/h3"}
	for _, c := range []struct {
		o    drill.Observation
		want bool
	}{
		{drill.Observation{Kind: "fleet.host.suspect", Target: "fleet/prod/h3"}, true},
		{drill.Observation{Kind: "fleet.host.lost", Target: "fleet/prod/h3"}, true},
		{drill.Observation{Kind: "fleet.host.suspect", Target: "fleet/prod/h2"}, false},
		{drill.Observation{Kind: "fleet.host.returned", Target: "fleet/prod/h3"}, false},
	} {
		if got := m.Matches(c.o, s); got != c.want {
			t.Errorf("%+v: %v, want %v", c.o, got, c.want)
		}
	}
	if (drill.Match{Kind: "fleet.host.suspect", On: "host"}).Matches(drill.Observation{Kind: "fleet.host.suspect", Target: ""}, drill.Subject{Service: "web"}) {
		t.Error("a match on host matched a drill without a host")
	}
}
