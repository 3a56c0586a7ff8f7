package remedy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/action"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/supervise"
)

// plan is one decided (or to-be-decided) run of a runbook: the steps
// rendered with the trigger's values, their targets resolved, and the
// guardrail request built from them.
type plan struct {
	rb         *runbook
	trig       Trigger
	inc        *Incident
	target     string
	round      int
	level      Level
	steps      []step
	rollback   []step
	req        Request
	approvedBy string
	// The fleet-wide lock held for the run (Options.Fleet): its fence and
	// its release, called once by finish.
	fence        int64
	fleetRelease func(context.Context) error

	// Written by the run's goroutine only.
	results []result
}

// step is a rendered runbook step.
type step struct {
	index   int    // 1-based
	phase   string // steps | rollback
	name    string
	action  string
	approve bool
	timeout time.Duration
	in      action.Input
}

// result is what one executed step did.
type result struct {
	step     *step
	out      action.Output
	err      error
	took     time.Duration
	verified bool
}

// prepareLocked renders rb's steps for t and builds the guardrail request
// from the current state of the engine and the supervisor.
func (e *Engine) prepareLocked(now time.Time, rb *runbook, t Trigger, inc *Incident, round int) *plan {
	pl := &plan{rb: rb, trig: t, inc: inc, round: round, level: e.records[rb.name].Level}
	v := vars{t: t, params: rb.cfg.Params}
	var renderErr error
	pl.target = t.subject()
	if rb.cfg.Target != "" {
		target, err := v.expand(rb.cfg.Target)
		if err != nil {
			renderErr = fmt.Errorf("target: %w", err)
		} else {
			pl.target = target
		}
	}
	v.target = pl.target
	var status []supervise.ServiceStatus
	if e.sup != nil {
		status = e.sup.Status()
	}
	a := e.cfg.Automation
	req := Request{Runbook: rb.name, Rate: Window{Max: rb.cfg.Rate.Max, Per: rb.cfg.Rate.Per.D()}, Target: pl.target,
		FlapKey: t.key(), Incident: inc.ID, Paused: e.paused, Level: pl.level, MaxTargets: a.MaxTargets,
		DryRun: e.dryRun || rb.cfg.DryRun, Approval: rb.cfg.Approve == config.ApproveRequired, AuditDown: e.auditDown()}
	removing := map[string]int{}
	for _, list := range []struct {
		phase string
		cfg   []config.RunbookStep
		out   *[]step
	}{{"steps", rb.cfg.Steps, &pl.steps}, {"rollback", rb.cfg.Rollback, &pl.rollback}} {
		for i, sc := range list.cfg {
			st, err := e.render(v, rb, inc, round, list.phase, i+1, sc)
			if err != nil && renderErr == nil {
				renderErr = fmt.Errorf("%s[%d] %s: %w", list.phase, i, sc.Action, err)
			}
			*list.out = append(*list.out, st)
			if p := e.protectedService(st.in.Target, st.action); p != "" && req.Protected == "" {
				req.Protected = p
			}
			if list.phase != "steps" {
				continue
			}
			n, why := countTargets(st, status)
			req.Targets = append(req.Targets, n)
			req.TargetErrors = append(req.TargetErrors, why)
			if action.Disruptive(st.action) {
				svc, r := removal(st, status)
				removing[svc] += r
			}
		}
	}
	if p := e.protectedService(pl.target, ""); p != "" && req.Protected == "" {
		req.Protected = p
	}
	for _, s := range status {
		if r, ok := removing[s.Name]; ok {
			req.Budgets = append(req.Budgets, Budget{Service: s.Name, Ready: s.Ready, Removing: r, MinAvailable: s.MinAvailable})
			if b, ok := e.fleetBudgetOf(s.Name, s.Ready, r); ok {
				req.Budgets = append(req.Budgets, b)
			}
		}
	}
	req.RenderError = renderErr
	pl.req = req
	return pl
}

// render expands one step's inputs.
func (e *Engine) render(v vars, rb *runbook, inc *Incident, round int, phase string, index int, sc config.RunbookStep) (step, error) {
	st := step{index: index, phase: phase, name: sc.Name, action: sc.Action, approve: sc.Approve == config.ApproveRequired,
		timeout: sc.Timeout.D()}
	if st.timeout <= 0 {
		st.timeout = e.cfg.Automation.StepTimeout.D()
	}
	in := action.Input{Actor: actorOf(rb.name), Incident: inc.ID, Target: v.target, Dir: sc.Dir, Method: sc.Method,
		Status: sc.Status, Root: sc.Root, Glob: sc.Glob, OlderThan: sc.OlderThan.D(), By: sc.By, To: sc.To,
		ReadyTimeout: sc.ReadyTimeout.D(), Receiver: sc.Receiver, Severity: sc.Severity, Timeout: st.timeout,
		Flag: sc.Flag}
	if sc.Value != nil {
		in.FlagValue = strconv.FormatBool(*sc.Value)
	}
	in.Reason = fmt.Sprintf("runbook %s step %d (%s) for %s", rb.name, index, sc.Name, v.t.key())
	var errs []error
	do := func(dst *string, src string) {
		if src == "" {
			return
		}
		s, err := v.expand(src)
		if err != nil {
			errs = append(errs, err)
		}
		*dst = s
	}
	do(&in.Target, sc.Target)
	do(&in.URL, sc.URL)
	do(&in.Body, sc.Body)
	do(&in.Message, sc.Message)
	var err error
	if in.Command, err = v.expandAll(sc.Command); err != nil {
		errs = append(errs, err)
	}
	if in.Env, err = v.expandMap(sc.Env); err != nil {
		errs = append(errs, err)
	}
	if in.Headers, err = v.expandMap(sc.Headers); err != nil {
		errs = append(errs, err)
	}
	in.Key = fmt.Sprintf("%s/%s/%d/%s/%d", inc.ID, rb.name, round, phase, index)
	do(&in.Key, sc.Key)
	st.in = in
	if len(errs) > 0 {
		return st, errs[0]
	}
	return st, nil
}

// countTargets resolves how many targets a step acts on, or why none.
func countTargets(st step, status []supervise.ServiceStatus) (int, string) {
	switch action.ScopeOf(st.action) {
	case action.ScopeInstance:
		ids, err := action.Instances(st.in.Target, status)
		if err != nil {
			return 0, err.Error()
		}
		return len(ids), ""
	case action.ScopeService:
		if _, err := action.Service(st.in.Target, status); err != nil {
			return 0, err.Error()
		}
		return 1, ""
	}
	if strings.TrimSpace(st.in.Target) == "" {
		return 0, "empty target"
	}
	return 1, ""
}

// removal returns the service a disruptive step touches and how many of its
// ready instances it takes out at once.
func removal(st step, status []supervise.ServiceStatus) (string, int) {
	svc := action.ServiceOf(st.in.Target)
	if st.action == "rolling_restart" {
		for _, s := range status {
			if s.Name == svc && s.Ready > 0 {
				return svc, 1 // one at a time
			}
		}
		return svc, 0
	}
	ids, _ := action.Instances(st.in.Target, status)
	n := 0
	for _, s := range status {
		for _, in := range s.Instances {
			for _, id := range ids {
				if in.Service == id.Service && in.Index == id.Index && in.Ready {
					n++
				}
			}
		}
	}
	return svc, n
}

// protectedService returns the service target belongs to when that service
// is protected.
func (e *Engine) protectedService(target, act string) string {
	if target == "" {
		return ""
	}
	svc := action.ServiceOf(target)
	if s := e.cfg.Services[svc]; s != nil && s.Remedy != nil && s.Remedy.Protected {
		return svc
	}
	return ""
}

// describe renders the plan in one line: "disk_cleanup on /var/data: 1. delete_files …".
func (pl *plan) describe() string {
	parts := make([]string, len(pl.steps))
	for i, st := range pl.steps {
		parts[i] = fmt.Sprintf("%d. %s", st.index, st.line())
	}
	return fmt.Sprintf("%s on %s: %s", pl.rb.name, pl.target, strings.Join(parts, "; "))
}

// line describes a rendered step.
func (st step) line() string {
	in := st.in
	switch st.action {
	case "exec":
		return fmt.Sprintf("exec %q", in.Command)
	case "http":
		return fmt.Sprintf("http %s %s", in.Method, in.URL)
	case "delete_files":
		return fmt.Sprintf("delete_files %s under %s older than %v", in.Glob, in.Root, in.OlderThan)
	case "scale":
		if in.To > 0 {
			return fmt.Sprintf("scale %s to %d", in.Target, in.To)
		}
		return fmt.Sprintf("scale %s by %+d", in.Target, in.By)
	case "notify":
		return fmt.Sprintf("notify %s", in.Receiver)
	}
	return st.action + " " + in.Target
}
