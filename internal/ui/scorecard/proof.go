package scorecard

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// The questions answered from what medic keeps and what drills measured.

// rollbackDrills prove a rollback: a bad version crash-loops and medic returns to the good one.
var rollbackDrills = []string{"crashloop-rollback", "crashloop"}

func rollback(in Input, _ time.Time) []Subject {
	serving, workers := services(in)
	names := append(serving, workers...)
	sort.Strings(names)
	var out []Subject
	for _, name := range names {
		svc := in.Config.Services[name]
		s := subject(name)
		r, rok := latestRelease(in, name, func(r ReleaseRun) bool { return r.Source == "rollback" && r.Outcome == "live" })
		d, ok := latest(in, name, rollbackDrills)
		if rok && (!ok || r.Ended.After(d.Started)) {
			took := time.Duration(r.DurationSeconds * float64(time.Second))
			if took > rollbackMax {
				s.fail(fmt.Sprintf("the last rollback (to %s, %s) took %s > %s", r.Version, day(r.Ended), secs(r.DurationSeconds), rollbackMax),
					fmt.Sprintf("shorten the way back: services.%s.stop.grace and readiness bound each step of the rollout", name))
			} else {
				s.Evidence = append(s.Evidence, fmt.Sprintf("the last rollback (to %s, %s) took %s", r.Version, day(r.Ended), secs(r.DurationSeconds)))
			}
			out = append(out, s)
			continue
		}
		if ok && in.DrillsKnown {
			ttr := time.Duration(d.TTRSeconds * float64(time.Second))
			switch {
			case !d.Passed:
				s.fail(fmt.Sprintf("the last %s drill (%s) failed", d.Scenario, day(d.Started)), "read the drill's report; make sure a known-good version is kept")
			case ttr > rollbackMax:
				s.fail(fmt.Sprintf("the last %s drill (%s) recovered in %s > %s", d.Scenario, day(d.Started), secs(d.TTRSeconds), rollbackMax),
					fmt.Sprintf("shorten the way back: services.%s.stop.grace and the startup probe bound it", name))
			default:
				s.Evidence = append(s.Evidence, fmt.Sprintf("the last %s drill (%s) recovered in %s", d.Scenario, day(d.Started), secs(d.TTRSeconds)))
			}
			out = append(out, s)
			continue
		}
		switch {
		case in.Previous == nil:
			s.add(Unknown, "only the running agent knows whether a previous version is kept", "ask the agent: `medic scorecard`")
		case !in.Previous[name]:
			s.fail("no previous version kept: there is nothing to roll back to",
				"deploy changes with `medic reload`: medic keeps the version before each change for POST /v1/services/"+name+"/rollback")
		case svc.Stop.Grace.D() >= rollbackMax:
			s.fail(fmt.Sprintf("stop grace %s alone exceeds %s", svc.Stop.Grace.D(), rollbackMax), fmt.Sprintf("services.%s.stop.grace: 10s", name))
		default:
			// Kept is not proven: only a measured rollback answers yes.
			s.add(Unknown, fmt.Sprintf("the previous version is kept, but no rollback has been measured (a rollback stops the service within grace %s and starts it)", svc.Stop.Grace.D()),
				"prove it: `medic drill crashloop-rollback --service "+name+"` measures the time back to the good version")
		}
		out = append(out, s)
	}
	return out
}

// targets are the subjects that must prove their recovery: serving services and databases.
func targets(in Input) []string {
	serving, _ := services(in)
	for _, db := range in.Databases {
		serving = append(serving, db.Name)
	}
	return serving
}

func objectives(in Input, _ time.Time) []Subject {
	var out []Subject
	for _, name := range targets(in) {
		s := subject(name)
		obj, ok := in.Objectives[name]
		if !ok {
			s.fail("no RTO or RPO declared: nobody can say whether a recovery was fast enough",
				"declare "+name+"'s recovery time (RTO) and recovery point (RPO) objectives")
			out = append(out, s)
			continue
		}
		s.Evidence = append(s.Evidence, fmt.Sprintf("declared: RTO %s, RPO %s", obj.RTO, obj.RPO))
		if !in.DrillsKnown {
			s.add(Unknown, "drill records are not available here", "ask the agent: `medic scorecard`")
			out = append(out, s)
			continue
		}
		// The latest run of each scenario against this subject.
		last := map[string]DrillRun{}
		for _, d := range in.Drills {
			if d.Service == name && (last[d.Scenario].Started.IsZero() || d.Started.After(last[d.Scenario].Started)) {
				last[d.Scenario] = d
			}
		}
		if len(last) == 0 {
			s.add(Unknown, "no drill has measured a recovery yet", "`medic drill kill --service "+name+"`")
			out = append(out, s)
			continue
		}
		scen := make([]string, 0, len(last))
		for k := range last {
			scen = append(scen, k)
		}
		sort.Strings(scen)
		for _, k := range scen {
			d := last[k]
			ttr := time.Duration(d.TTRSeconds * float64(time.Second))
			if !d.Passed || ttr > obj.RTO {
				s.fail(fmt.Sprintf("the last %s drill (%s) recovered in %s (passed: %t): RTO %s not met", k, day(d.Started), secs(d.TTRSeconds), d.Passed, obj.RTO),
					"find what slows the "+k+" recovery in its report (detection, restart, readiness)")
			} else {
				s.Evidence = append(s.Evidence, fmt.Sprintf("the last %s drill recovered in %s ≤ RTO", k, secs(d.TTRSeconds)))
			}
			if d.DataLossSeconds != nil {
				if loss := time.Duration(*d.DataLossSeconds * float64(time.Second)); loss > obj.RPO {
					s.fail(fmt.Sprintf("the last %s drill lost %s of writes > RPO %s", k, loss, obj.RPO), "replicate synchronously or shorten the failover's lag bound")
				}
			}
		}
		out = append(out, s)
	}
	return out
}

func failoverDrill(in Input, now time.Time) []Subject {
	dbs := map[string]bool{}
	for _, db := range in.Databases {
		dbs[db.Name] = true
	}
	var out []Subject
	for _, name := range targets(in) {
		s := subject(name)
		scen, run := instanceFailover, "medic drill kill --service "+name
		if dbs[name] {
			scen, run = dbFailoverDrills, "medic drill db-kill-primary --service "+name
		}
		fix := "run `" + run + "` while client traffic flows through the proxy"
		if !in.DrillsKnown {
			s.add(Unknown, "drill records are not available here", "ask the agent: `medic scorecard`")
			out = append(out, s)
			continue
		}
		var proof, last DrillRun
		for _, d := range in.Drills {
			if d.Service != name || !slices.Contains(scen, d.Scenario) {
				continue
			}
			if d.Started.After(last.Started) {
				last = d
			}
			if d.Passed && d.UnderLoad && now.Sub(d.Started) <= drillWindow && d.Started.After(proof.Started) {
				proof = d
			}
		}
		switch {
		case !proof.Started.IsZero():
			s.Evidence = append(s.Evidence, fmt.Sprintf("%s drill under load passed %s (%d days ago): recovered in %s, %d client errors",
				proof.Scenario, day(proof.Started), int(now.Sub(proof.Started).Hours()/24), secs(proof.TTRSeconds), proof.ClientErrors))
		case last.Started.IsZero():
			s.fail("no failover drill recorded", fix)
		case now.Sub(last.Started) > drillWindow:
			s.fail(fmt.Sprintf("the last failover drill was %s, %d days ago", day(last.Started), int(now.Sub(last.Started).Hours()/24)), fix)
		case !last.UnderLoad:
			s.fail(fmt.Sprintf("the last failover drill (%s) ran without client traffic", day(last.Started)), fix)
		default:
			s.fail(fmt.Sprintf("the last failover drill under load (%s) failed", day(last.Started)), "read its report, fix the cause, then "+fix)
		}
		out = append(out, s)
	}
	return out
}
