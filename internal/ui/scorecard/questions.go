package scorecard

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// readinessTimeoutMax is the longest readiness timeout that still takes a
// slow instance out of rotation within a user's patience.
const readinessTimeoutMax = 200 * time.Millisecond

// rollbackMax is the rollback time the question asks for.
const rollbackMax = 60 * time.Second

// drillWindow is how recent a failover drill must be.
const drillWindow = 90 * 24 * time.Hour

// Scenarios that prove a failover: an instance killed behind the proxy, a
// database primary lost or switched.
var (
	instanceFailover = []string{"kill"}
	dbFailoverDrills = []string{"db-kill-primary", "db-partition", "db-switchover", "db-kill-postgres"}
)

// services returns the configured services sorted by name; serving ones
// (a port or a proxy) first split from workers.
func services(in Input) (serving, workers []string) {
	for name, s := range in.Config.Services {
		if s == nil {
			continue
		}
		if s.Port > 0 || s.Proxy != nil {
			serving = append(serving, name)
		} else {
			workers = append(workers, name)
		}
	}
	sort.Strings(serving)
	sort.Strings(workers)
	return serving, workers
}

// latest returns the most recent drill of one of scenarios against target.
func latest(in Input, target string, scenarios []string) (DrillRun, bool) {
	var best DrillRun
	found := false
	for _, d := range in.Drills {
		if d.Service == target && slices.Contains(scenarios, d.Scenario) && (!found || d.Started.After(best.Started)) {
			best, found = d, true
		}
	}
	return best, found
}

func day(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

func secs(f float64) string {
	return (time.Duration(f * float64(time.Second))).Round(100 * time.Millisecond).String()
}

// drillProof answers "is it proven?" for target from its latest drill of scenarios.
func drillProof(in Input, target string, scenarios []string, run string) (Answer, string, string) {
	if !in.DrillsKnown {
		return Unknown, "drill records are not available here", "run this against the agent (`medic scorecard`), which keeps the drill records"
	}
	d, ok := latest(in, target, scenarios)
	if !ok {
		return Unknown, fmt.Sprintf("no %s drill recorded for %s", strings.Join(scenarios, "/"), target), "prove it: `" + run + "`"
	}
	if !d.Passed {
		return No, fmt.Sprintf("the last %s drill (%s) failed: %d client errors, recovered in %s", d.Scenario, day(d.Started), d.ClientErrors, secs(d.TTRSeconds)),
			"read the drill's report, fix the cause, then `" + run + "` again"
	}
	return Yes, fmt.Sprintf("the last %s drill (%s) passed: recovered in %s with %d client errors", d.Scenario, day(d.Started), secs(d.TTRSeconds), d.ClientErrors), ""
}

func subject(name string) Subject { return Subject{Name: name, Answer: Yes} }

// fail marks s No with its evidence and fix.
func (s *Subject) fail(evidence, fix string) {
	s.Answer = No
	s.Evidence = append(s.Evidence, evidence)
	if fix != "" {
		s.Fix = append(s.Fix, fix)
	}
}

// add records a further answer: the subject keeps its worst.
func (s *Subject) add(a Answer, evidence, fix string) {
	if a.rank() > s.Answer.rank() {
		s.Answer = a
	}
	if evidence != "" {
		s.Evidence = append(s.Evidence, evidence)
	}
	if fix != "" && a != Yes {
		s.Fix = append(s.Fix, fix)
	}
}

func instanceLoss(in Input, _ time.Time) []Subject {
	serving, _ := services(in)
	var out []Subject
	for _, name := range serving {
		svc := in.Config.Services[name]
		s := subject(name)
		if svc.Instances < 2 {
			s.fail(fmt.Sprintf("%d instance: its death is an outage", svc.Instances), fmt.Sprintf("services.%s.instances: 2 or more", name))
		}
		if svc.Proxy == nil {
			s.fail("no proxy: clients connect to one instance and see it die", fmt.Sprintf("add services.%s.proxy so clients reach whichever instance is ready", name))
		} else if svc.Proxy.Retries.Max == nil || *svc.Proxy.Retries.Max < 1 {
			s.fail("proxy retries are off: a request caught by the death fails", fmt.Sprintf("services.%s.proxy.retries.max: 2", name))
		}
		if s.Answer == Yes {
			listen := svc.Proxy.Listen
			if a := in.Listening[name]; a != "" {
				listen = a
			}
			s.Evidence = append(s.Evidence, fmt.Sprintf("%d instances behind the proxy on %s, %d retries on another instance", svc.Instances, listen, *svc.Proxy.Retries.Max))
			s.add(drillProof(in, name, instanceFailover, "medic drill kill --service "+name))
		}
		out = append(out, s)
	}
	return out
}

func dbFailover(in Input, _ time.Time) []Subject {
	if len(in.Databases) == 0 {
		return []Subject{{Name: "databases", Answer: Unknown, Evidence: []string{"medic manages no database here"},
			Fix: []string{"declare the cluster under databases: so medic fails it over and routes clients to the primary"}}}
	}
	var out []Subject
	for _, db := range in.Databases {
		s := subject(db.Name)
		if !db.ManagedFailover {
			s.fail("failover is not managed: promoting a standby is a human's job", "give medic the cluster (databases."+db.Name+") and an etcd for the leader lease")
		}
		switch db.ClientAccess {
		case "proxy":
			s.Evidence = append(s.Evidence, "clients connect through medic's proxy, which follows the primary")
		case "multi-host-dsn":
			s.Evidence = append(s.Evidence, "clients use a multi-host DSN with target_session_attrs=read-write")
		default:
			s.fail("clients connect to one fixed host: after a failover they need a new address",
				"route clients through a medic tcp proxy, or give them a multi-host DSN with target_session_attrs=read-write")
		}
		if s.Answer == Yes {
			s.add(drillProof(in, db.Name, dbFailoverDrills, "medic drill db-kill-primary --service "+db.Name))
		}
		out = append(out, s)
	}
	return out
}

// probeTarget describes what a probe checks, for comparing readiness with liveness.
func probeTarget(p *config.Probe) string {
	port := func(n int) string {
		if n == 0 {
			return "" // the instance's own port
		}
		return fmt.Sprintf(" on port %d", n)
	}
	switch {
	case p == nil:
		return ""
	case p.HTTP != nil:
		return "http " + p.HTTP.Path + port(p.HTTP.Port)
	case p.TCP != nil:
		return "tcp connect" + port(p.TCP.Port)
	case p.Exec != nil:
		return "exec " + strings.Join(p.Exec.Command, " ")
	case p.GRPC != nil:
		return fmt.Sprintf("grpc health %q%s", p.GRPC.Service, port(p.GRPC.Port))
	}
	return "unknown probe"
}

func readiness(in Input, _ time.Time) []Subject {
	serving, _ := services(in)
	var out []Subject
	for _, name := range serving {
		svc := in.Config.Services[name]
		s := subject(name)
		r, l := svc.Probes.Readiness, svc.Probes.Liveness
		switch {
		case r == nil:
			s.fail("no readiness probe: an instance gets traffic as soon as its process runs",
				fmt.Sprintf("add services.%s.probes.readiness checking what serving needs (e.g. http /healthz/ready)", name))
		case l != nil && probeTarget(r) == probeTarget(l):
			s.fail("readiness is the same check as liveness ("+probeTarget(r)+"): it cannot tell \"cannot serve\" from \"hung\"",
				"make readiness check what serving needs (dependencies) and liveness only that the process responds")
		default:
			s.Evidence = append(s.Evidence, "readiness: "+probeTarget(r)+", distinct from liveness")
			if r.TCP != nil {
				s.Evidence = append(s.Evidence, "a tcp connect proves the port accepts, not that requests succeed")
			}
		}
		if r != nil {
			if t := r.Timeout.D(); t > readinessTimeoutMax {
				s.fail(fmt.Sprintf("readiness timeout %s > %s: a slow instance stays in rotation", t, readinessTimeoutMax),
					fmt.Sprintf("services.%s.probes.readiness.timeout: 200ms", name))
			} else {
				s.Evidence = append(s.Evidence, fmt.Sprintf("readiness timeout %s, every %s", t, r.Period.D()))
			}
		}
		out = append(out, s)
	}
	return out
}

// timeouts answers "is every outbound call bounded by a timeout?" from what
// medic sees of the calls a service makes: its declared dependencies, each
// behind a listener that bounds every call, and the calls seen through them.
// Never from config alone (issue 17): a declared dependency the application
// does not call through is not proof, and the inbound proxy's timeouts say
// nothing about the calls the service makes.
func timeouts(in Input, _ time.Time) []Subject {
	serving, workers := services(in)
	names := append(serving, workers...)
	sort.Strings(names)
	var out []Subject
	for _, name := range names {
		svc := in.Config.Services[name]
		s := subject(name)
		var by []string
		for _, b := range in.Bypasses {
			if b.Service == name {
				by = append(by, fmt.Sprintf("%s (%d connections)", b.Remote, b.Connections))
			}
		}
		if in.Bypasses == nil && in.Dependencies != nil && len(svc.Dependencies) > 0 {
			// Online, but the instances' sockets could not be read: calls that
			// go around the listeners cannot be ruled out, so no yes.
			s.add(Unknown, "the instances' outbound sockets could not be read (/proc): calls that bypass medic's listeners cannot be ruled out",
				"run medic on Linux with /proc readable to check the instances' outbound connections")
		}
		if len(by) > 0 {
			sort.Strings(by)
			s.add(Unknown, "outbound connections that bypass medic, seen from the instances' sockets: "+strings.Join(by, ", ")+"; medic cannot tell whether they are bounded",
				fmt.Sprintf("declare them under services.%s.dependencies and point the clients at the listeners (docs/dependencies.md)", name))
		}
		if len(svc.Dependencies) == 0 {
			s.add(Unknown, "no dependencies declared: medic sees none of this service's outbound calls and cannot tell whether they are bounded",
				fmt.Sprintf("declare them under services.%s.dependencies and point the clients at DEP_<NAME>_URL (docs/dependencies.md)", name))
			out = append(out, s)
			continue
		}
		deps := make([]string, 0, len(svc.Dependencies))
		for d := range svc.Dependencies {
			deps = append(deps, d)
		}
		sort.Strings(deps)
		for _, d := range deps {
			c := svc.Dependencies[d]
			env := config.DependencyEnv(d, c)
			seen, known := in.dependency(name, d)
			switch {
			case in.Dependencies == nil:
				s.add(Unknown, fmt.Sprintf("%s: declared with timeout %v; only the running agent knows whether calls go through it", d, c.Timeout.D()),
					"ask the running agent (medic check without --offline)")
			case !known || seen.Calls == 0:
				s.add(Unknown, fmt.Sprintf("%s: declared with timeout %v, but no call seen through %s yet", d, c.Timeout.D(), c.Listen),
					fmt.Sprintf("make the application call %s through %s (it reads %s)", d, c.Listen, env))
			default:
				s.add(Yes, fmt.Sprintf("%s: %d calls seen through %s, each bounded by %v (%d reached it)", d, seen.Calls, c.Listen, seen.Timeout, seen.TimedOut), "")
			}
		}
		out = append(out, s)
	}
	return out
}

// minAvailable is the service's effective disruption budget (as the supervisor computes it).
func minAvailable(svc *config.Service) int {
	if svc.MinAvailable != nil {
		return *svc.MinAvailable
	}
	return max(svc.Instances-1, 0)
}

func zeroDowntime(in Input, _ time.Time) []Subject {
	serving, _ := services(in)
	var out []Subject
	for _, name := range serving {
		svc := in.Config.Services[name]
		s := subject(name)
		ma := minAvailable(svc)
		if svc.Instances < 2 {
			s.fail(fmt.Sprintf("%d instance: restarting it is downtime", svc.Instances), fmt.Sprintf("services.%s.instances: 2 or more", name))
		} else if ma < 1 {
			s.fail("min_available 0: a rolling restart may leave no instance ready", fmt.Sprintf("services.%s.min_available: %d", name, svc.Instances-1))
		} else if ma >= svc.Instances {
			s.fail(fmt.Sprintf("min_available %d of %d instances: a rolling restart can never take one out", ma, svc.Instances),
				fmt.Sprintf("services.%s.min_available: %d", name, svc.Instances-1))
		}
		if svc.Probes.Readiness == nil {
			s.fail("no readiness probe: a restarted instance gets traffic before it can serve", fmt.Sprintf("add services.%s.probes.readiness", name))
		}
		if svc.Proxy == nil {
			s.fail("no proxy: clients of the instance being restarted are refused", fmt.Sprintf("add services.%s.proxy (it drains an instance before it stops)", name))
		}
		if s.Answer == Yes {
			s.Evidence = append(s.Evidence, fmt.Sprintf("rolling restart keeps ≥ %d of %d instances ready; readiness gates each step; the proxy drains before each stop", ma, svc.Instances))
			s.add(replacementProof(in, name))
		}
		out = append(out, s)
	}
	return out
}

// replacementDrills replace a service's instances one by one under load: a
// deploy, or the leak runbook's rolling restart.
var replacementDrills = []string{"deploy-rolling", "deploy-blue-green", "deploy-canary", "leak"}

// replacementProof answers "deployed without downtime?" from the latest
// measured replacement under load: configuration alone never says yes.
func replacementProof(in Input, name string) (Answer, string, string) {
	run := "medic drill leak --service " + name
	if !in.DrillsKnown {
		return Unknown, "drill records are not available here", "run this against the agent (`medic scorecard`), which keeps the drill records"
	}
	d, ok := latest(in, name, replacementDrills)
	if r, rok := latestRelease(in, name, func(r ReleaseRun) bool { return r.Requests > 0 && (r.Outcome == "live" || r.ClientErrors > 0) }); rok && (!ok || r.Ended.After(d.Started)) {
		if r.ClientErrors > 0 {
			return No, fmt.Sprintf("the last measured rollout (%s %s, %s) had %d client errors in %d requests", r.Source, r.Version, day(r.Ended), r.ClientErrors, r.Requests),
				"read the rollout's audit records (readiness that passes too early, a drain shorter than the slowest request)"
		}
		return Yes, fmt.Sprintf("the last measured rollout (%s %s, %s) replaced every instance under load: %d requests, 0 client errors", r.Source, r.Version, day(r.Ended), r.Requests), ""
	}
	switch {
	case !ok:
		return Unknown, "no replacement of its instances has been measured under load yet", "prove it: `" + run + "` (a rolling restart under load, client errors counted)"
	case !d.UnderLoad:
		return Unknown, fmt.Sprintf("the last %s drill (%s) ran without client load: nothing measured what clients saw", d.Scenario, day(d.Started)), "run it with load: `" + run + " --load 100`"
	case !d.Passed || d.ClientErrors > 0:
		return No, fmt.Sprintf("the last %s drill (%s) replaced instances with %d client errors", d.Scenario, day(d.Started), d.ClientErrors),
			"read the drill's report (readiness that passes too early, a drain shorter than the slowest request)"
	}
	return Yes, fmt.Sprintf("the last %s drill (%s) replaced instances under load with 0 client errors", d.Scenario, day(d.Started)), ""
}

// latestRelease returns the service's most recently ended rollout that ok accepts.
func latestRelease(in Input, name string, ok func(ReleaseRun) bool) (ReleaseRun, bool) {
	var best ReleaseRun
	found := false
	for _, r := range in.Releases {
		if r.Service == name && ok(r) && (!found || r.Ended.After(best.Ended)) {
			best, found = r, true
		}
	}
	return best, found
}
