package canary

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/verdict"
)

// Audit event kinds of a canary.
const (
	EventStarted    medic.EventKind = "deploy.canary.started"    // the canary and baseline groups start
	EventStep       medic.EventKind = "deploy.canary.step"       // the proxy's weights moved to a step
	EventApproval   medic.EventKind = "deploy.canary.approval"   // a promotion waits for an approval, or got its answer
	EventVerdict    medic.EventKind = "deploy.canary.verdict"    // the verdict that decided (fields: one per metric)
	EventPromoted   medic.EventKind = "deploy.canary.promoted"   // every stable instance runs the new release
	EventRollback   medic.EventKind = "deploy.canary.rollback"   // the decision to roll back, with its reason
	EventRolledBack medic.EventKind = "deploy.canary.rolledback" // traffic on stable, canary and baseline stopped
)

// Groups is what a canary needs of the supervisor: instance groups of a
// service beside its stable instances, on spare ports.
type Groups interface {
	// StartGroup starts n instances of spec as the service's group.
	StartGroup(ctx context.Context, service, group string, spec *config.Service, n int) error
	// GroupStatus shows the group's instances (Restarts since StartGroup).
	GroupStatus(service, group string) GroupStatus
	// StopGroup drains and stops the group's instances.
	StopGroup(ctx context.Context, service, group string) error
}

// Traffic is what a canary needs of the service's proxy.
type Traffic interface {
	// SetWeights sets the groups' shares of the next requests (percent by
	// group name; a group left out gets none); nil ends the weighting (the
	// groups are gone: every instance in rotation serves).
	SetWeights(service string, weights map[string]int) error
	// Cursor is where the group's next request will be (its counters may
	// hold an earlier canary's requests).
	Cursor(service, group string) uint64
	// Outcomes returns the outcomes of the group's requests from cursor on
	// and the cursor to ask from next.
	Outcomes(service, group string, cursor uint64) ([]verdict.Outcome, uint64)
	// Counts are the service's requests through the proxy and those answered
	// 5xx or not at all; ok is false without a proxy.
	Counts(service string) (requests, errors uint64, ok bool)
}

// Promoter rolls the service's stable instances out to the new release (the
// rolling rollout of internal/release, within the disruption budget).
type Promoter interface {
	Promote(ctx context.Context, service string, spec *config.Service, actor, why string) error
}

// Runner carries out canaries: one per service at a time.
type Runner struct {
	Groups   Groups
	Traffic  Traffic
	Promoter Promoter
	// Prober sends the synthetic load of a canary whose settings ask for
	// it; nil: none is sent.
	Prober Prober
	// Scraper reads the scraped counters of a canary whose settings name
	// some; nil: none is read (those metrics stay undecided).
	Scraper Scraper
	// Emit records audit events; nil: none.
	Emit  func(context.Context, medic.Event)
	Clock clock.Clock
	// Tick is how often the controller is asked. Default 250ms.
	Tick time.Duration
	// MaxOutcomes bounds each group's kept outcomes; past it the oldest half
	// is dropped (the verdict then judges the newer half). Default 200000.
	MaxOutcomes int

	mu      sync.Mutex
	running map[string]*run
	last    map[string]Report
}

// ErrRunning: the service already has a canary under way.
var ErrRunning = errors.New("canary: one is already running for this service")

// ErrNoCanary: no canary waits for an approval of this service.
var ErrNoCanary = errors.New("canary: none awaiting an approval")

type run struct {
	mu       sync.Mutex
	report   Report
	approved string // actor, when approved
	denied   string
}

// Run carries out a canary of service from the old spec (the stable
// instances', which the baseline copies) to next, until it is promoted or
// rolled back, and returns its report. When ctx ends first the canary is
// rolled back (traffic to stable, groups stopped).
func (r *Runner) Run(ctx context.Context, service string, cfg Config, old, next *config.Service, actor string) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	cfg = cfg.WithDefaults()
	clk := clock.Or(r.Clock)
	tick := r.Tick
	if tick <= 0 {
		tick = 250 * time.Millisecond
	}
	maxOut := r.MaxOutcomes
	if maxOut <= 0 {
		maxOut = 200_000
	}
	ru := &run{report: Report{Service: service, From: old.Version, To: next.Version, Actor: actor, Steps: cfg.Steps, Weights: WeightsAt(0)}}
	r.mu.Lock()
	if r.running == nil {
		r.running, r.last = map[string]*run{}, map[string]Report{}
	}
	if r.running[service] != nil {
		r.mu.Unlock()
		return Report{}, fmt.Errorf("canary of %s: %w", service, ErrRunning)
	}
	r.running[service] = ru
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.running, service)
		r.last[service] = ru.snapshot()
		r.mu.Unlock()
	}()

	var req0, err0 uint64
	measured := false
	if r.Traffic != nil {
		req0, err0, measured = r.Traffic.Counts(service)
	}
	now := clk.Now()
	s := Begin(now)
	ru.update(func(rep *Report) { rep.State = s })
	r.event(ctx, ru, EventStarted, service, actor, fmt.Sprintf("canary %s beside %s: %d canary and %d baseline instances, steps %s",
		next.Version, old.Version, cfg.Instances, cfg.Instances, stepsText(cfg.Steps)), nil)

	stopGroups := func(c context.Context) error {
		return errors.Join(r.Groups.StopGroup(c, service, Canary), r.Groups.StopGroup(c, service, Baseline))
	}
	if err := errors.Join(r.Groups.StartGroup(ctx, service, Canary, next, cfg.Instances), r.Groups.StartGroup(ctx, service, Baseline, old, cfg.Instances)); err != nil {
		s, _ = rollback(s, clk.Now(), "the groups could not start: "+err.Error())
		return r.rollBack(ctx, ru, s, actor, stopGroups, measured, req0, err0)
	}

	// Synthetic load: its requests end before the canary's groups stop.
	var sy *synth
	quiet := func() {}
	if cfg.Synthetic.Path != "" && r.Prober != nil {
		sctx, scancel := context.WithCancel(ctx)
		sy = newSynth(sctx, r.Prober, service, cfg.Synthetic.Path)
		var once sync.Once
		quiet = func() { once.Do(func() { scancel(); sy.wg.Wait() }) }
		defer quiet()
	}
	// Scraped counters: read from the groups' start, so each rise covers
	// the requests the group served.
	var sc *scraper
	if len(cfg.Metrics) > 0 && r.Scraper != nil {
		sctx, scancel := context.WithCancel(ctx)
		sc = newScraper(sctx, clk, r.Scraper, service, cfg.Metrics)
		defer func() { scancel(); sc.wg.Wait() }()
	}
	var carryC, carryB float64
	stopGroups = func(stop func(context.Context) error) func(context.Context) error {
		return func(c context.Context) error { quiet(); return stop(c) }
	}(stopGroups)

	var o Observation
	curC, curB := r.Traffic.Cursor(service, Canary), r.Traffic.Cursor(service, Baseline)
	t := clk.NewTimer(tick)
	defer t.Stop()
	last := clk.Now()
	for {
		select {
		case <-ctx.Done():
			s, _ = rollback(s, clk.Now(), "the canary was interrupted: "+context.Cause(ctx).Error())
			return r.rollBack(context.WithoutCancel(ctx), ru, s, actor, stopGroups, measured, req0, err0)
		case <-t.C():
			t.Reset(tick)
		}
		now := clk.Now()
		elapsed := min(now.Sub(last), 4*tick) // after a stall, no burst to catch up
		last = now
		o.Canary, o.Baseline = r.Groups.GroupStatus(service, Canary), r.Groups.GroupStatus(service, Baseline)
		var add []verdict.Outcome
		add, curC = r.Traffic.Outcomes(service, Canary, curC)
		realC := len(add)
		if sy != nil {
			add = append(add, sy.take(Canary)...)
		}
		o.CanarySample.Outcomes = bounded(append(o.CanarySample.Outcomes, add...), maxOut)
		add, curB = r.Traffic.Outcomes(service, Baseline, curB)
		realB := len(add)
		if sy != nil {
			add = append(add, sy.take(Baseline)...)
		}
		o.BaselineSample.Outcomes = bounded(append(o.BaselineSample.Outcomes, add...), maxOut)
		if sc != nil {
			o.CanarySample.Counters, o.BaselineSample.Counters = sc.rises(Canary), sc.rises(Baseline)
		}
		ru.mu.Lock()
		if ru.approved != "" {
			o.Approved = true
		}
		if ru.denied != "" {
			o.Denied = true
		}
		ru.mu.Unlock()

		prev := s
		var a Action
		s, a = Next(cfg, s, o, now)
		ru.update(func(rep *Report) {
			rep.State = s
			rep.Explain = Explain(s.Verdict)
			rep.CanaryRequests, rep.CanaryErrors = counts(o.CanarySample.Outcomes)
			rep.BaselineRequests, rep.BaselineErrors = counts(o.BaselineSample.Outcomes)
			if sy != nil {
				rep.SyntheticRequests, rep.SyntheticSkipped = sy.counts()
			}
		})
		if sy != nil {
			if SyntheticWanted(cfg, s, o) {
				var n int
				n, carryC = TopUp(cfg.Synthetic.Rate, elapsed, realC, carryC)
				sy.send(Canary, n)
				n, carryB = TopUp(cfg.Synthetic.Rate, elapsed, realB, carryB)
				sy.send(Baseline, n)
			} else {
				carryC, carryB = 0, 0
			}
		}
		switch a.Kind {
		case SetStep:
			if err := r.Traffic.SetWeights(service, a.Weights.Map()); err != nil {
				s, _ = rollback(s, clk.Now(), "the proxy refused the step's weights: "+err.Error())
				return r.rollBack(ctx, ru, s, actor, stopGroups, measured, req0, err0)
			}
			if o.CanarySample.Start.IsZero() {
				o.CanarySample.Start, o.BaselineSample.Start = now, now
			}
			ru.update(func(rep *Report) { rep.Weights = a.Weights })
			if prev.Phase == Awaiting {
				r.event(ctx, ru, EventApproval, service, ru.approver(), "promotion approved", nil)
			}
			ru.clearAnswer()
			o.Approved = false
			r.event(ctx, ru, EventStep, service, "canary", a.Reason, Fields(s.Verdict))
		case Ask:
			r.event(ctx, ru, EventApproval, service, "canary", a.Reason, Fields(s.Verdict))
		case Promote:
			if prev.Phase == Awaiting {
				r.event(ctx, ru, EventApproval, service, ru.approver(), "promotion approved", nil)
			}
			r.event(ctx, ru, EventVerdict, service, "canary", a.Reason, Fields(s.Verdict))
			return r.promote(ctx, ru, s, next, actor, stopGroups, measured, req0, err0)
		case Rollback:
			if o.Denied {
				r.event(ctx, ru, EventApproval, service, ru.denier(), "promotion refused", nil)
			}
			r.event(ctx, ru, EventVerdict, service, "canary", a.Reason, Fields(s.Verdict))
			return r.rollBack(ctx, ru, s, actor, stopGroups, measured, req0, err0)
		}
	}
}

// rollBack puts every request back on the stable instances first, then
// stops the canary and the baseline: the stable instances were never
// touched, so they keep their full capacity.
func (r *Runner) rollBack(ctx context.Context, ru *run, s State, actor string, stop func(context.Context) error, measured bool, req0, err0 uint64) (Report, error) {
	clk := clock.Or(r.Clock)
	service := ru.snapshot().Service
	r.event(ctx, ru, EventRollback, service, "canary", s.Reason, nil)
	ctx = context.WithoutCancel(ctx)
	var werr error
	for i := range 5 { // the proxy is local: a refusal is a bug, but try again before giving up
		if werr = r.Traffic.SetWeights(service, WeightsAt(0).Map()); werr == nil {
			break
		}
		w := clk.NewTimer(time.Duration(i+1) * 100 * time.Millisecond)
		<-w.C()
	}
	back := clk.Now()
	serr := stop(ctx)
	if werr == nil {
		werr = r.Traffic.SetWeights(service, nil) // no groups left: no weights
	}
	s.Phase = RolledBack
	ru.update(func(rep *Report) {
		rep.State, rep.Weights, rep.TrafficBack, rep.Ended, rep.Outcome = s, WeightsAt(0), back, clk.Now(), "rolled-back"
		if werr != nil {
			rep.TrafficBack = time.Time{}
		}
		if err := errors.Join(werr, serr); err != nil {
			rep.Error = err.Error()
		}
		r.figures(rep, measured, req0, err0)
	})
	rep := ru.snapshot()
	r.event(ctx, ru, EventRolledBack, service, actor, fmt.Sprintf("traffic back on stable %s after the canary's first traffic; canary and baseline stopped", rep.TimeToRollback().Round(time.Millisecond)), nil)
	return ru.snapshot(), errors.Join(werr, serr)
}

// promote rolls the stable instances out to the new release while the
// canary and baseline still serve their share, then puts all traffic on the
// stable instances and stops the groups.
func (r *Runner) promote(ctx context.Context, ru *run, s State, next *config.Service, actor string, stop func(context.Context) error, measured bool, req0, err0 uint64) (Report, error) {
	clk := clock.Or(r.Clock)
	service := ru.snapshot().Service
	perr := r.Promoter.Promote(ctx, service, next, actor, fmt.Sprintf("canary %s promoted", next.Version))
	werr := r.Traffic.SetWeights(service, WeightsAt(0).Map())
	serr := stop(context.WithoutCancel(ctx))
	if werr == nil {
		werr = r.Traffic.SetWeights(service, nil)
	}
	s.Phase = Promoted
	out := "promoted"
	if perr != nil {
		out = "failed"
	}
	ru.update(func(rep *Report) {
		rep.State, rep.Weights, rep.Ended, rep.Outcome = s, WeightsAt(0), clk.Now(), out
		if err := errors.Join(perr, werr, serr); err != nil {
			rep.Error = err.Error()
		}
		r.figures(rep, measured, req0, err0)
	})
	if perr == nil {
		r.event(ctx, ru, EventPromoted, service, actor, fmt.Sprintf("every stable instance runs %s", next.Version), nil)
	}
	return ru.snapshot(), errors.Join(perr, werr, serr)
}

func (r *Runner) figures(rep *Report, measured bool, req0, err0 uint64) {
	if !measured {
		return
	}
	if req1, err1, ok := r.Traffic.Counts(rep.Service); ok {
		n, e := int64(req1-req0), int64(err1-err0)
		rep.Requests, rep.ClientErrors = &n, &e
	}
}

func (r *Runner) event(ctx context.Context, ru *run, kind medic.EventKind, target, actor, reason string, fields map[string]string) {
	now := clock.Or(r.Clock).Now()
	ru.update(func(rep *Report) {
		rep.Timeline = append(rep.Timeline, Event{At: now, Kind: string(kind), Reason: reason})
	})
	if r.Emit != nil {
		r.Emit(context.WithoutCancel(ctx), medic.Event{Time: now, Kind: kind, Target: target, Actor: actor, Reason: reason, Fields: fields})
	}
}

// Status returns the service's running canary, or its last one.
func (r *Runner) Status(service string) (Report, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ru := r.running[service]; ru != nil {
		return ru.snapshot(), true
	}
	rep, ok := r.last[service]
	return rep, ok
}

// Reports returns, for every service with a canary running or ended since
// medic started, what Status returns, sorted by service.
func (r *Runner) Reports() []Report {
	r.mu.Lock()
	names := make([]string, 0, len(r.running)+len(r.last))
	for s := range r.running {
		names = append(names, s)
	}
	for s := range r.last {
		if r.running[s] == nil {
			names = append(names, s)
		}
	}
	r.mu.Unlock()
	slices.Sort(names)
	out := make([]Report, 0, len(names))
	for _, s := range names {
		if rep, ok := r.Status(s); ok {
			out = append(out, rep)
		}
	}
	return out
}

// Answer approves (ok) or refuses the promotion the service's canary waits
// for, on behalf of actor.
func (r *Runner) Answer(service, actor string, ok bool) error {
	r.mu.Lock()
	ru := r.running[service]
	r.mu.Unlock()
	if ru == nil || ru.snapshot().State.Phase != Awaiting {
		return fmt.Errorf("%s: %w", service, ErrNoCanary)
	}
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if ok {
		ru.approved = actor
	} else {
		ru.denied = actor
	}
	return nil
}

func (ru *run) update(f func(*Report)) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	f(&ru.report)
}

func (ru *run) snapshot() Report {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	rep := ru.report
	rep.Timeline = append([]Event(nil), rep.Timeline...)
	rep.Explain = append([]string(nil), rep.Explain...)
	return rep
}

func (ru *run) approver() string {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.approved
}

func (ru *run) denier() string {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.denied
}

func (ru *run) clearAnswer() {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	ru.approved, ru.denied = "", ""
}

// bounded drops the oldest half of os when it is longer than max.
func bounded(os []verdict.Outcome, max int) []verdict.Outcome {
	if len(os) <= max {
		return os
	}
	return append([]verdict.Outcome(nil), os[len(os)-max/2:]...)
}

// counts returns the requests and the errors (5xx or no response).
func counts(os []verdict.Outcome) (n, errs int) {
	for _, o := range os {
		if c := verdict.ClassOf(o.Status); c == verdict.Class5xx || c == verdict.NoResponse {
			errs++
		}
	}
	return len(os), errs
}

// Awaiting returns the reports of the running canaries whose promotion waits
// for an approval, by service name.
func (r *Runner) Awaiting() []Report {
	r.mu.Lock()
	runs := make([]*run, 0, len(r.running))
	for _, ru := range r.running {
		runs = append(runs, ru)
	}
	r.mu.Unlock()
	var out []Report
	for _, ru := range runs {
		if rep := ru.snapshot(); rep.State.Phase == Awaiting {
			out = append(out, rep)
		}
	}
	slices.SortFunc(out, func(a, b Report) int { return strings.Compare(a.Service, b.Service) })
	return out
}
