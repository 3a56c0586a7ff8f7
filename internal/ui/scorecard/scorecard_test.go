package scorecard_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/ui/scorecard"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files")

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func payments() map[string]*config.Dependency {
	return map[string]*config.Dependency{"payments": {Kind: "external", URL: "https://pay.example", Listen: "127.0.0.1:9701"}}
}

// good is a service that answers yes to every config question: 3 instances
// behind a proxy with retries, distinct readiness with a 200 ms timeout.
func good() *config.Service {
	return &config.Service{
		Command:   []string{"./web"},
		Instances: 3,
		Port:      9100,
		Probes: config.Probes{
			Liveness:  &config.Probe{HTTP: &config.HTTPProbe{Path: "/healthz/live"}},
			Readiness: &config.Probe{HTTP: &config.HTTPProbe{Path: "/healthz/ready"}, Period: config.Duration(time.Second), Timeout: config.Duration(200 * time.Millisecond)},
		},
		Proxy: &config.Proxy{Listen: "127.0.0.1:8080"},
	}
}

// input builds an Input from one service "web" changed by mod, with defaults applied.
func input(mod func(s *config.Service, in *scorecard.Input)) scorecard.Input {
	s := good()
	in := scorecard.Input{DrillsKnown: true, Previous: map[string]bool{"web": true}}
	if mod != nil {
		mod(s, &in)
	}
	cfg := &config.Config{Services: map[string]*config.Service{"web": s}}
	cfg.SetDefaults()
	in.Config = cfg
	return in
}

func drill(scenario string, passed bool, ago time.Duration, ttr float64, load bool) scorecard.DrillRun {
	return scorecard.DrillRun{Scenario: scenario, Service: "web", Passed: passed, Started: now.Add(-ago), TTRSeconds: ttr, UnderLoad: load}
}

func item(t *testing.T, c scorecard.Card, id string) scorecard.Item {
	t.Helper()
	for _, it := range c.Items {
		if it.ID == id {
			return it
		}
	}
	t.Fatalf("no item %s", id)
	return scorecard.Item{}
}

func TestQuestions(t *testing.T) {
	day := 24 * time.Hour
	cases := []struct {
		item, name string
		mod        func(s *config.Service, in *scorecard.Input)
		want       scorecard.Answer
		says       string // a substring of the evidence or fix
	}{
		{scorecard.InstanceLoss, "proven by a kill drill", func(s *config.Service, in *scorecard.Input) {
			in.Drills = []scorecard.DrillRun{drill("kill", true, day, 1.5, true)}
		}, scorecard.Yes, "kill drill (2026-05-31 12:00 UTC) passed"},
		{scorecard.InstanceLoss, "no drill yet", nil, scorecard.Unknown, "medic drill kill --service web"},
		{scorecard.InstanceLoss, "the bound address, not :0", func(s *config.Service, in *scorecard.Input) {
			s.Proxy.Listen = "127.0.0.1:0"
			in.Listening = map[string]string{"web": "127.0.0.1:41234"}
		}, scorecard.Unknown, "behind the proxy on 127.0.0.1:41234"},
		{scorecard.InstanceLoss, "drill records unavailable", func(s *config.Service, in *scorecard.Input) { in.DrillsKnown = false }, scorecard.Unknown, "not available"},
		{scorecard.InstanceLoss, "the latest kill drill failed", func(s *config.Service, in *scorecard.Input) {
			in.Drills = []scorecard.DrillRun{drill("kill", true, 3*day, 1, true), drill("kill", false, day, 9, true)}
		}, scorecard.No, "failed"},
		{scorecard.InstanceLoss, "one instance", func(s *config.Service, in *scorecard.Input) { s.Instances = 1 }, scorecard.No, "services.web.instances: 2 or more"},
		{scorecard.InstanceLoss, "no proxy", func(s *config.Service, in *scorecard.Input) { s.Proxy = nil }, scorecard.No, "add services.web.proxy"},
		{scorecard.InstanceLoss, "retries off", func(s *config.Service, in *scorecard.Input) { s.Proxy.Retries.Max = ptr(0) }, scorecard.No, "retries.max: 2"},

		{scorecard.DBFailover, "no database", nil, scorecard.Unknown, "manages no database"},
		{scorecard.DBFailover, "managed, through the proxy, drilled", func(s *config.Service, in *scorecard.Input) {
			in.Databases = []scorecard.Database{{Name: "pg", ManagedFailover: true, ClientAccess: "proxy"}}
			in.Drills = []scorecard.DrillRun{{Scenario: "db-kill-primary", Service: "pg", Passed: true, Started: now.Add(-day), TTRSeconds: 4, UnderLoad: true}}
		}, scorecard.Yes, "db-kill-primary drill"},
		{scorecard.DBFailover, "clients on one host", func(s *config.Service, in *scorecard.Input) {
			in.Databases = []scorecard.Database{{Name: "pg", ManagedFailover: true}}
		}, scorecard.No, "multi-host DSN"},
		{scorecard.DBFailover, "unmanaged", func(s *config.Service, in *scorecard.Input) {
			in.Databases = []scorecard.Database{{Name: "pg", ClientAccess: "multi-host-dsn"}}
		}, scorecard.No, "not managed"},

		{scorecard.Readiness, "distinct and fast", nil, scorecard.Yes, "readiness timeout 200ms"},
		{scorecard.Readiness, "missing", func(s *config.Service, in *scorecard.Input) { s.Probes.Readiness = nil }, scorecard.No, "add services.web.probes.readiness"},
		{scorecard.Readiness, "same as liveness", func(s *config.Service, in *scorecard.Input) {
			s.Probes.Readiness.HTTP.Path = "/healthz/live"
		}, scorecard.No, "same check as liveness"},
		{scorecard.Readiness, "slow timeout", func(s *config.Service, in *scorecard.Input) {
			s.Probes.Readiness.Timeout = config.Duration(time.Second)
		}, scorecard.No, "readiness.timeout: 200ms"},
		{scorecard.Readiness, "a worker without port is not asked", func(s *config.Service, in *scorecard.Input) {
			s.Port, s.Proxy, s.Probes.Readiness = 0, nil, nil
		}, scorecard.Unknown, ""},

		{scorecard.Timeouts, "an inbound proxy is no answer", nil, scorecard.Unknown, "no dependencies declared"},
		{scorecard.Timeouts, "declared, offline", func(s *config.Service, in *scorecard.Input) { s.Dependencies = payments() }, scorecard.Unknown, "only the running agent knows"},
		{scorecard.Timeouts, "declared, never called", func(s *config.Service, in *scorecard.Input) {
			s.Dependencies = payments()
			in.Dependencies = []scorecard.DependencySeen{{Service: "web", Dependency: "payments", Timeout: 5 * time.Second}}
		}, scorecard.Unknown, "no call seen through 127.0.0.1:9701"},
		{scorecard.Timeouts, "declared and exercised", func(s *config.Service, in *scorecard.Input) {
			s.Dependencies = payments()
			in.Dependencies = []scorecard.DependencySeen{{Service: "web", Dependency: "payments", Timeout: 5 * time.Second, Calls: 120, TimedOut: 3}}
			in.Bypasses = []scorecard.Bypass{} // the sockets were read: none bypasses medic
		}, scorecard.Yes, "payments: 120 calls seen through 127.0.0.1:9701, each bounded by 5s (3 reached it)"},
		{scorecard.Timeouts, "exercised, but the sockets could not be read", func(s *config.Service, in *scorecard.Input) {
			s.Dependencies = payments()
			in.Dependencies = []scorecard.DependencySeen{{Service: "web", Dependency: "payments", Timeout: 5 * time.Second, Calls: 120}}
		}, scorecard.Unknown, "outbound sockets could not be read"},
		{scorecard.Timeouts, "one of two exercised", func(s *config.Service, in *scorecard.Input) {
			s.Dependencies = payments()
			s.Dependencies["cache"] = &config.Dependency{Kind: "cache", Address: "10.0.0.9:6379", Listen: "127.0.0.1:9702"}
			in.Dependencies = []scorecard.DependencySeen{{Service: "web", Dependency: "payments", Timeout: 5 * time.Second, Calls: 120}}
		}, scorecard.Unknown, "cache: declared with timeout 500ms, but no call seen"},
		{scorecard.Timeouts, "exercised, but a connection bypasses medic", func(s *config.Service, in *scorecard.Input) {
			s.Dependencies = payments()
			in.Dependencies = []scorecard.DependencySeen{{Service: "web", Dependency: "payments", Timeout: 5 * time.Second, Calls: 120}}
			in.Bypasses = []scorecard.Bypass{{Service: "web", Remote: "10.0.0.7:8080", Connections: 3}, {Service: "other", Remote: "10.0.0.8:1", Connections: 1}}
		}, scorecard.Unknown, "outbound connections that bypass medic, seen from the instances' sockets: 10.0.0.7:8080 (3 connections); medic cannot tell"},

		{scorecard.ZeroDowntime, "configured, never measured", nil, scorecard.Unknown, "no replacement of its instances has been measured"},
		{scorecard.ZeroDowntime, "a rolling restart under load without errors", func(s *config.Service, in *scorecard.Input) {
			in.Drills = []scorecard.DrillRun{drill("leak", true, day, 9, true)}
		}, scorecard.Yes, "replaced instances under load with 0 client errors"},
		{scorecard.ZeroDowntime, "a rolling restart with client errors", func(s *config.Service, in *scorecard.Input) {
			d := drill("leak", true, day, 9, true)
			d.ClientErrors = 4
			in.Drills = []scorecard.DrillRun{d}
		}, scorecard.No, "with 4 client errors"},
		{scorecard.ZeroDowntime, "a deploy measured under load", func(s *config.Service, in *scorecard.Input) {
			in.Releases = []scorecard.ReleaseRun{{Service: "web", Version: "v2", Source: "deploy", Outcome: "live", Ended: now.Add(-day), Requests: 900}}
		}, scorecard.Yes, "deploy v2, 2026-05-31 12:00 UTC) replaced every instance under load: 900 requests, 0 client errors"},
		{scorecard.ZeroDowntime, "the latest deploy had errors", func(s *config.Service, in *scorecard.Input) {
			in.Drills = []scorecard.DrillRun{drill("leak", true, 3*day, 9, true)}
			in.Releases = []scorecard.ReleaseRun{{Service: "web", Version: "v3", Source: "deploy", Outcome: "live", Ended: now.Add(-day), Requests: 900, ClientErrors: 7}}
		}, scorecard.No, "7 client errors in 900 requests"},
		{scorecard.ZeroDowntime, "a deploy without load proves nothing", func(s *config.Service, in *scorecard.Input) {
			in.Releases = []scorecard.ReleaseRun{{Service: "web", Version: "v2", Source: "deploy", Outcome: "live", Ended: now.Add(-day)}}
		}, scorecard.Unknown, "no replacement of its instances has been measured"},
		{scorecard.ZeroDowntime, "measured without load", func(s *config.Service, in *scorecard.Input) {
			in.Drills = []scorecard.DrillRun{drill("leak", true, day, 9, false)}
		}, scorecard.Unknown, "without client load"},
		{scorecard.ZeroDowntime, "budget of zero", func(s *config.Service, in *scorecard.Input) { s.MinAvailable = ptr(0) }, scorecard.No, "min_available: 2"},
		{scorecard.ZeroDowntime, "budget leaves no room", func(s *config.Service, in *scorecard.Input) { s.MinAvailable = ptr(3) }, scorecard.No, "can never take one out"},
		{scorecard.ZeroDowntime, "no readiness", func(s *config.Service, in *scorecard.Input) { s.Probes.Readiness = nil }, scorecard.No, "before it can serve"},

		{scorecard.Rollback, "previous kept, never measured", nil, scorecard.Unknown, "no rollback has been measured"},
		{scorecard.Rollback, "a rollback measured", func(s *config.Service, in *scorecard.Input) {
			in.Releases = []scorecard.ReleaseRun{{Service: "web", Version: "v1", Source: "rollback", Outcome: "live", Ended: now.Add(-day), DurationSeconds: 4.2}}
		}, scorecard.Yes, "the last rollback (to v1, 2026-05-31 12:00 UTC) took 4.2s"},
		{scorecard.Rollback, "a slow rollback", func(s *config.Service, in *scorecard.Input) {
			in.Releases = []scorecard.ReleaseRun{{Service: "web", Version: "v1", Source: "rollback", Outcome: "live", Ended: now.Add(-day), DurationSeconds: 95}}
		}, scorecard.No, "took 1m35s > 1m0s"},
		{scorecard.Rollback, "nothing kept", func(s *config.Service, in *scorecard.Input) { in.Previous = map[string]bool{} }, scorecard.No, "medic reload"},
		{scorecard.Rollback, "offline: unknown", func(s *config.Service, in *scorecard.Input) { in.Previous = nil }, scorecard.Unknown, "running agent"},
		{scorecard.Rollback, "a slow grace", func(s *config.Service, in *scorecard.Input) { s.Stop.Grace = config.Duration(90 * time.Second) }, scorecard.No, "stop.grace: 10s"},
		{scorecard.Rollback, "proven by a drill", func(s *config.Service, in *scorecard.Input) {
			in.Previous = map[string]bool{}
			in.Drills = []scorecard.DrillRun{drill("crashloop-rollback", true, day, 12, false)}
		}, scorecard.Yes, "recovered in 12s"},
		{scorecard.Rollback, "a drill too slow", func(s *config.Service, in *scorecard.Input) {
			in.Drills = []scorecard.DrillRun{drill("crashloop-rollback", true, day, 75, false)}
		}, scorecard.No, "1m15s > 1m0s"},

		{scorecard.Objectives, "none declared", nil, scorecard.No, "RTO"},
		{scorecard.Objectives, "declared, met", func(s *config.Service, in *scorecard.Input) {
			in.Objectives = map[string]scorecard.Objective{"web": {RTO: 30 * time.Second}}
			in.Drills = []scorecard.DrillRun{drill("kill", true, 2*day, 50, true), drill("kill", true, day, 3, true), drill("hang", true, day, 20, false)}
		}, scorecard.Yes, "the last hang drill recovered in 20s ≤ RTO"},
		{scorecard.Objectives, "declared, missed", func(s *config.Service, in *scorecard.Input) {
			in.Objectives = map[string]scorecard.Objective{"web": {RTO: 10 * time.Second}}
			in.Drills = []scorecard.DrillRun{drill("hang", true, day, 20, false)}
		}, scorecard.No, "RTO 10s not met"},
		{scorecard.Objectives, "declared, no drill", func(s *config.Service, in *scorecard.Input) {
			in.Objectives = map[string]scorecard.Objective{"web": {RTO: 10 * time.Second}}
		}, scorecard.Unknown, "no drill has measured"},
		{scorecard.Objectives, "RPO exceeded", func(s *config.Service, in *scorecard.Input) {
			in.Objectives = map[string]scorecard.Objective{"web": {RTO: time.Minute}}
			d := drill("kill", true, day, 3, true)
			d.DataLossSeconds = ptr(2.0)
			in.Drills = []scorecard.DrillRun{d}
		}, scorecard.No, "lost 2s of writes > RPO 0s"},

		{scorecard.FailoverDrill, "under load, recent", func(s *config.Service, in *scorecard.Input) {
			in.Drills = []scorecard.DrillRun{drill("kill", true, 10*day, 2, true)}
		}, scorecard.Yes, "(10 days ago)"},
		{scorecard.FailoverDrill, "too old", func(s *config.Service, in *scorecard.Input) {
			in.Drills = []scorecard.DrillRun{drill("kill", true, 91*day, 2, true)}
		}, scorecard.No, "91 days ago"},
		{scorecard.FailoverDrill, "without load", func(s *config.Service, in *scorecard.Input) {
			in.Drills = []scorecard.DrillRun{drill("kill", true, day, 2, false)}
		}, scorecard.No, "without client traffic"},
		{scorecard.FailoverDrill, "none", nil, scorecard.No, "no failover drill recorded"},
		{scorecard.FailoverDrill, "an older proof still counts", func(s *config.Service, in *scorecard.Input) {
			in.Drills = []scorecard.DrillRun{drill("kill", true, 20*day, 2, true), drill("kill", false, day, 2, false)}
		}, scorecard.Yes, "20 days ago"},
	}
	for _, c := range cases {
		t.Run(c.item+"/"+c.name, func(t *testing.T) {
			it := item(t, scorecard.Evaluate(input(c.mod), now), c.item)
			var text []string
			for _, s := range it.Subjects {
				text = append(text, s.Evidence...)
				text = append(text, s.Fix...)
			}
			joined := strings.Join(text, " | ")
			if it.Answer != c.want || !strings.Contains(joined, c.says) {
				t.Fatalf("%s = %s (%s); want %s mentioning %q", c.item, it.Answer, joined, c.want, c.says)
			}
			if it.Answer != scorecard.Yes && len(it.Subjects) > 0 && it.Subjects[0].Answer != scorecard.Yes && len(it.Subjects[0].Fix) == 0 {
				t.Fatalf("%s answers %s without saying what to change", c.item, it.Answer)
			}
		})
	}
}

func TestCardTotalsAndRequired(t *testing.T) {
	c := scorecard.Evaluate(input(nil), now)
	if c.Yes+c.No+c.Unknown != len(scorecard.IDs) || len(c.Items) != 8 {
		t.Fatalf("totals %d+%d+%d over %d items", c.Yes, c.No, c.Unknown, len(c.Items))
	}
	if !c.Passed || len(c.Failed()) != 0 {
		t.Fatalf("the good config fails required items: %+v", c.Failed())
	}
	bad := scorecard.Evaluate(input(func(s *config.Service, in *scorecard.Input) { s.Instances = 1 }), now)
	if bad.Passed || len(bad.Failed()) != 2 { // instance-loss and zero-downtime
		t.Fatalf("one instance: passed=%v failed=%d, want false and 2", bad.Passed, len(bad.Failed()))
	}
	// Requiring only an item that answers yes passes again.
	only := scorecard.Evaluate(input(func(s *config.Service, in *scorecard.Input) {
		s.Instances = 1
		in.Required = []string{scorecard.Readiness}
	}), now)
	if !only.Passed {
		t.Fatalf("required=readiness should pass: %+v", only.Failed())
	}
}

// TestGoldenText pins the text `medic scorecard` prints (rewrite with -rewrite).
func TestGoldenText(t *testing.T) {
	in := input(func(s *config.Service, in *scorecard.Input) {
		in.Drills = []scorecard.DrillRun{drill("kill", true, 3*24*time.Hour, 1.2, true)}
	})
	in.Config.Services["worker"] = &config.Service{Command: []string{"./worker"}, Instances: 1}
	in.Config.SetDefaults()
	var b bytes.Buffer
	if err := scorecard.Evaluate(in, now).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "scorecard.txt")
	if *rewrite {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -rewrite to create it)", err)
	}
	if b.String() != string(want) {
		t.Fatalf("scorecard text changed (rerun with -rewrite and review the diff):\n%s", b.String())
	}
}

func TestRequire(t *testing.T) {
	c := scorecard.Evaluate(input(nil), now) // objectives and failover-drill answer no
	got, err := c.Require([]string{scorecard.Objectives})
	if err != nil || got.Passed || len(got.Failed()) != 1 || got.Failed()[0].ID != scorecard.Objectives {
		t.Fatalf("require objectives: passed=%v failed=%+v err=%v", got.Passed, got.Failed(), err)
	}
	if !c.Passed || c.Items[6].Required {
		t.Fatal("Require changed the card it was called on")
	}
	if none, _ := c.Require(nil); !none.Passed {
		t.Fatal("requiring nothing fails")
	}
	if _, err := c.Require([]string{"uptime"}); err == nil || !strings.Contains(err.Error(), "instance-loss") {
		t.Fatalf("unknown id: %v", err)
	}
}
