package drill_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/drill/load"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ev(d time.Duration, seq int64, kind, target string, kv ...string) drill.Observation {
	o := drill.Observation{Time: at(d), Seq: seq, Kind: kind, Target: target, Actor: "supervisor"}
	for i := 0; i+1 < len(kv); i += 2 {
		if o.Fields == nil {
			o.Fields = map[string]string{}
		}
		o.Fields[kv[i]] = kv[i+1]
	}
	return o
}

func builtin(t *testing.T, name string) drill.Scenario {
	t.Helper()
	s, err := drill.NewCatalog().Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fptr(v *float64) string {
	if v == nil {
		return "nil"
	}
	return time.Duration(*v * float64(time.Second)).String()
}

// TestEvaluateTimelines judges synthetic event sequences: the verdict is a
// pure function of the timeline and the marks.
func TestEvaluateTimelines(t *testing.T) {
	web1 := drill.Subject{Service: "web", Instance: "web/1"}
	marks := drill.Marks{Start: at(0), Inject: at(2 * time.Second), Restore: at(4 * time.Second), End: at(7 * time.Second)}
	for _, c := range []struct {
		name     string
		scenario string
		events   []drill.Observation
		marks    drill.Marks
		pass     bool
		ttd, ttr string
		reason   string
	}{
		{name: "kill recovers", scenario: "kill", events: []drill.Observation{
			ev(1*time.Second, 10, "instance.restart", "web/1"), // before the injection: ignored
			ev(2*time.Second+5*time.Millisecond, 11, "instance.restart", "web/1"),
			ev(2*time.Second+10*time.Millisecond, 12, "instance.started", "web/0"), // another instance: no
			ev(2*time.Second+15*time.Millisecond, 13, "instance.started", "web/1"),
			ev(2*time.Second+400*time.Millisecond, 14, "instance.ready", "web/1"),
		}, pass: true, ttd: "5ms", ttr: "400ms"},
		{name: "kill: ready without a new start is not recovery", scenario: "kill", events: []drill.Observation{
			ev(2*time.Second+5*time.Millisecond, 11, "instance.restart", "web/1"),
			ev(2*time.Second+400*time.Millisecond, 14, "instance.ready", "web/1"),
		}, ttd: "5ms", ttr: "nil", reason: "not recovered within 30s: no instance.started on target"},
		{name: "kill: never detected", scenario: "kill", events: nil, ttd: "nil", ttr: "nil",
			reason: "not detected: no instance.exited on target or instance.restart on target"},
		{name: "hang: liveness failure field match", scenario: "hang", events: []drill.Observation{
			ev(2*time.Second+100*time.Millisecond, 20, "probe.changed", "web/1", "probe", "liveness", "health", "success"),
			ev(2*time.Second+300*time.Millisecond, 21, "probe.changed", "web/1", "probe", "liveness", "health", "failure"),
			ev(3*time.Second, 22, "instance.started", "web/1"),
			ev(3*time.Second+200*time.Millisecond, 23, "instance.ready", "web/1"),
		}, pass: true, ttd: "300ms", ttr: "1.2s"},
		{name: "unready: out of rotation just before the event counts", scenario: "unready", events: []drill.Observation{
			{Time: at(2*time.Second + 10*time.Millisecond), Kind: drill.ObservedOut, Target: "web/1"},
			ev(2*time.Second+12*time.Millisecond, 30, "instance.unready", "web/1"),
		}, pass: true, ttd: "12ms", ttr: "12ms"},
		{name: "unready: a restart while injected is forbidden", scenario: "unready", events: []drill.Observation{
			ev(2*time.Second+12*time.Millisecond, 30, "instance.unready", "web/1"),
			{Time: at(2*time.Second + 20*time.Millisecond), Kind: drill.ObservedOut, Target: "web/1"},
			ev(3*time.Second, 31, "instance.stopping", "web/1"),
		}, ttd: "12ms", ttr: "20ms", reason: "instance.stopping on web/1 at +1.00s while the fault was injected"},
		{name: "unready: a restart after the restoration is allowed", scenario: "unready", events: []drill.Observation{
			ev(2*time.Second+12*time.Millisecond, 30, "instance.unready", "web/1"),
			{Time: at(2*time.Second + 20*time.Millisecond), Kind: drill.ObservedOut, Target: "web/1"},
			ev(5*time.Second, 31, "instance.stopping", "web/1"),
		}, pass: true, ttd: "12ms", ttr: "20ms"},
		{name: "latency: failing then avoided", scenario: "latency", events: []drill.Observation{
			{Time: at(1 * time.Second), Kind: drill.ObservedAvoided, Target: "web/1"}, // before: ignored
			{Time: at(2*time.Second + 300*time.Millisecond), Kind: drill.ObservedFailing, Target: "web/1"},
			{Time: at(3*time.Second + 300*time.Millisecond), Kind: drill.ObservedAvoided, Target: "web/1"},
		}, pass: true, ttd: "300ms", ttr: "1.3s"},
		{name: "capacity lost and never regained", scenario: "kill", events: []drill.Observation{
			ev(2*time.Second+5*time.Millisecond, 11, "instance.restart", "web/1"),
			{Time: at(2*time.Second + 6*time.Millisecond), Kind: drill.ObservedDegraded, Target: "web"},
			ev(2*time.Second+15*time.Millisecond, 13, "instance.started", "web/1"),
			ev(2*time.Second+400*time.Millisecond, 14, "instance.ready", "web/1"),
		}, ttd: "5ms", ttr: "400ms", reason: "not back at full capacity: lost at +0.01s"},
		{name: "never injected", scenario: "kill", marks: drill.Marks{Start: at(0), End: at(time.Second)}, ttd: "nil", ttr: "nil",
			reason: "the fault was never injected"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mk := marks
			if !c.marks.Start.IsZero() {
				mk = c.marks
			}
			m := drill.Evaluate(drill.Input{Scenario: builtin(t, c.scenario), Subject: web1, Marks: mk, Events: c.events})
			if m.Passed != c.pass || fptr(m.TTD) != c.ttd || fptr(m.TTR) != c.ttr {
				t.Fatalf("passed %v ttd %s ttr %s (%q); want %v %s %s", m.Passed, fptr(m.TTD), fptr(m.TTR), m.Reasons, c.pass, c.ttd, c.ttr)
			}
			if c.reason != "" && (len(m.Reasons) == 0 || !strings.Contains(strings.Join(m.Reasons, "\n"), c.reason)) {
				t.Fatalf("reasons %q, want one containing %q", m.Reasons, c.reason)
			}
		})
	}
}

func TestEvaluateClientView(t *testing.T) {
	sc := builtin(t, "kill")
	marks := drill.Marks{Start: at(0), Inject: at(time.Second), Restore: at(2 * time.Second), End: at(3 * time.Second)}
	var samples []load.Sample
	for i := range 300 { // 100 per second, 2ms each
		s := load.Sample{Intended: at(time.Duration(i) * 10 * time.Millisecond), Latency: 2 * time.Millisecond, OK: true, Status: 200}
		samples = append(samples, s)
	}
	// During the fault: two failures and a 400ms stall; afterwards clean.
	samples[110].OK, samples[110].Err, samples[110].Status = false, "http 502", 502
	samples[111].OK, samples[111].Err = false, "reset"
	samples[150].Latency = 400 * time.Millisecond
	events := []drill.Observation{
		ev(time.Second+time.Millisecond, 1, "instance.restart", "web/1"),
		ev(time.Second+2*time.Millisecond, 2, "instance.started", "web/1"),
		ev(time.Second+3*time.Millisecond, 3, "instance.ready", "web/1"),
		{Time: at(time.Second + 2*time.Millisecond), Kind: "instance.stopping", Target: "web/1", Actor: "drill:1"}, // the drill's own: not an action
	}
	m := drill.Evaluate(drill.Input{Scenario: sc, Subject: drill.Subject{Service: "web", Instance: "web/1"}, Marks: marks, Events: events, Samples: samples})
	if m.Requests != 300 || m.ClientErrors != 2 || m.ErrorKinds["reset"] != 1 || m.ErrorKinds["http 502"] != 1 {
		t.Fatalf("requests %d errors %d kinds %v", m.Requests, m.ClientErrors, m.ErrorKinds)
	}
	if m.Passed || !strings.Contains(m.Reasons[0], "client-visible errors: 2 of 300 requests (0.67%), allowed 0.00% (1 http 502, 1 reset)") {
		t.Fatalf("reasons %q", m.Reasons)
	}
	// The SLO derives from the baseline (p99 2ms → 100ms floor); the stall
	// ends the impact: due at +0.5s, done 400ms later.
	if m.SLO != 0.1 || fptr(m.ClientImpact) != "900ms" {
		t.Fatalf("slo %v impact %s", m.SLO, fptr(m.ClientImpact))
	}
	if m.Latency.Before.Count != 100 || m.Latency.During.Count != 100 || m.Latency.After.Count != 100 {
		t.Fatalf("phases %+v", m.Latency)
	}
	if m.Latency.During.Max != 0.4 || m.Latency.Before.P99 > 0.0021 {
		t.Fatalf("during max %v, before p99 %v", m.Latency.During.Max, m.Latency.Before.P99)
	}
	if len(m.Actions) != 2 || m.Actions[0].Seq != 1 || m.Actions[1].Kind != "instance.started" {
		t.Fatalf("actions %+v", m.Actions)
	}
	if len(m.Series) < 30 || m.Series[11].Errors != 2 || m.Series[11].Requests != 10 {
		t.Fatalf("series: %d buckets, bucket 11 %+v", len(m.Series), m.Series[11])
	}
}

func TestMatch(t *testing.T) {
	s := drill.Subject{Service: "web", Instance: "web/1", Dependency: "db"}
	o := drill.Observation{Kind: "remedy.step.end", Target: "web", Actor: "runbook:leak", Fields: map[string]string{"action": "rolling_restart", "ok": "true"}}
	for _, c := range []struct {
		m    drill.Match
		o    drill.Observation
		want bool
	}{
		{drill.Match{Kind: "instance.ready"}, drill.Observation{Kind: "instance.ready", Target: "web/1"}, true},
		{drill.Match{Kind: "instance.ready"}, drill.Observation{Kind: "instance.ready", Target: "web/10"}, false},
		{drill.Match{Kind: "instance.ready", On: "service"}, drill.Observation{Kind: "instance.ready", Target: "web/0"}, true},
		{drill.Match{Kind: "instance.ready", On: "service"}, drill.Observation{Kind: "instance.ready", Target: "webby/0"}, false},
		{drill.Match{Kind: "instance.stopped", On: "dependency"}, drill.Observation{Kind: "instance.stopped", Target: "db/0"}, true},
		{drill.Match{Kind: "remedy.*", On: "any"}, o, true},
		{drill.Match{Kind: "remedy.step.end", On: "service", Fields: map[string]string{"action": "rolling_restart"}, Actor: "runbook:"}, o, true},
		{drill.Match{Kind: "remedy.step.end", On: "service", Fields: map[string]string{"ok": "false"}}, o, false},
		{drill.Match{Kind: "remedy.step.end", On: "service", Actor: "api:"}, o, false},
		{drill.Match{Kind: "a|remedy.step.*", On: "any"}, o, true},
		{drill.Match{Kind: "a|b", On: "any"}, o, false},
		{drill.Match{Kind: "remedy.step.end", On: "bogus"}, o, false},
	} {
		if got := c.m.Matches(c.o, s); got != c.want {
			t.Errorf("%+v on %+v: %v, want %v", c.m, c.o, got, c.want)
		}
	}
}

// TestCatalogMatchesConfig keeps config.BuiltinDrillScenarios (what the
// config loader accepts in schedules) equal to the catalog.
func TestCatalogMatchesConfig(t *testing.T) {
	var names []string
	for _, s := range drill.Builtins() {
		if err := s.Validate(); err != nil {
			t.Error(err)
		}
		names = append(names, s.Name)
	}
	want := slices.Sorted(slices.Values(config.BuiltinDrillScenarios))
	if slices.Sort(names); !slices.Equal(names, want) {
		t.Fatalf("catalog %v\nconfig  %v", names, want)
	}
}

func TestFromConfigDefaults(t *testing.T) {
	s := drill.FromConfig("mine", &config.DrillScenario{Fault: config.DrillFault{Kind: "kill"},
		Detect: []config.DrillMatch{{Kind: "instance.restart"}}})
	if s.Deadline.D() != 30*time.Second || s.Warmup.D() != 2*time.Second || s.Scope != drill.ScopeInstance || s.FailureMode != "mine" || s.MaxErrorRate != 0.01 {
		t.Fatalf("%+v", s)
	}
	if err := (drill.Scenario{Name: "x"}).Validate(); err == nil || !strings.Contains(err.Error(), "no fault kind; no detect match") {
		t.Fatalf("validate: %v", err)
	}
}

// TestFullCapacityIsTheReturnThatLasts: a rolling restart loses and regains
// capacity once per instance; back at full capacity means the last return.
func TestFullCapacityIsTheReturnThatLasts(t *testing.T) {
	obs := func(d time.Duration, kind string) drill.Observation {
		return drill.Observation{Time: at(2*time.Second + d), Kind: kind, Target: "web"}
	}
	events := []drill.Observation{
		ev(2*time.Second+10*time.Millisecond, 1, "instance.restart", "web/1"),
		obs(100*time.Millisecond, drill.ObservedDegraded), obs(200*time.Millisecond, drill.ObservedFull),
		ev(2*time.Second+250*time.Millisecond, 2, "instance.started", "web/1"),
		obs(300*time.Millisecond, drill.ObservedDegraded),
		ev(2*time.Second+350*time.Millisecond, 3, "instance.ready", "web/1"),
		obs(500*time.Millisecond, drill.ObservedFull),
	}
	marks := drill.Marks{Start: at(0), Inject: at(2 * time.Second), Restore: at(3 * time.Second), End: at(4 * time.Second)}
	m := drill.Evaluate(drill.Input{Scenario: builtin(t, "kill"), Subject: drill.Subject{Service: "web", Instance: "web/1"}, Marks: marks, Events: events})
	if !m.Passed || fptr(m.FullCapacity) != "500ms" {
		t.Fatalf("full capacity %s, %q", fptr(m.FullCapacity), m.Reasons)
	}
	m = drill.Evaluate(drill.Input{Scenario: builtin(t, "kill"), Subject: drill.Subject{Service: "web", Instance: "web/1"}, Marks: marks, Events: events[:5]})
	if m.Passed || m.FullCapacity != nil {
		t.Fatalf("lost again at the end: full capacity %s, passed %v", fptr(m.FullCapacity), m.Passed)
	}
}
