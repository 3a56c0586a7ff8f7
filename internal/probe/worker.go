package probe

import (
	"context"
	"errors"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
)

// worker runs one probe of one instance: a loop (run) around a step (step)
// that tests call directly, as kubelet's worker_test calls doProbe.
type worker struct {
	kind         medic.ProbeKind
	checker      Checker
	counter      Counter
	clock        clock.Clock
	initialDelay time.Duration
	period       time.Duration
	timeout      time.Duration

	emit    func(Update) // never nil
	observe func(medic.ProbeKind, Outcome, time.Duration)
	missed  func(medic.ProbeKind, int)
	short   func(medic.ProbeKind, Outcome) // may be nil
	// inShortage: the last result was medic's own shortage (edge-triggers short).
	inShortage bool
}

// verdict is what a step tells the loop to do next.
type verdict int

const (
	keepProbing verdict = iota
	isStarted           // startup passed: this probe's job is done
	onHold              // startup or liveness failed: stop until the Set is replaced
	stopping            // the Set's context ended
)

func newWorker(kind medic.ProbeKind, p *config.Probe, chk Checker, clk clock.Clock) *worker {
	t := Threshold{Success: p.SuccessThreshold, Failure: p.FailureThreshold}
	if t.Success <= 0 {
		t.Success = DefaultSuccessThreshold
	}
	if t.Failure <= 0 {
		t.Failure = DefaultFailureThreshold
	}
	initial := medic.HealthUnknown
	switch kind {
	case medic.ProbeStartup:
		t.Success = 1
	case medic.ProbeLiveness:
		t.Success, initial = 1, medic.HealthSuccess
	case medic.ProbeReadiness:
		initial = medic.HealthFailure
	}
	w := &worker{
		kind: kind, checker: chk, counter: NewCounter(t, initial), clock: clk,
		initialDelay: p.InitialDelay.D(), period: p.Period.D(), timeout: p.Timeout.D(),
		emit: func(Update) {},
	}
	if w.period <= 0 {
		w.period = DefaultPeriod
	}
	if w.timeout <= 0 {
		w.timeout = DefaultTimeout
	}
	return w
}

// step runs one probe, cut at the timeout, and feeds its result to the
// counter, emitting an Update when the state changes. A result that arrives
// after ctx ended is dropped: a process being stopped must not be reported
// dead by the probe its stop interrupted.
func (w *worker) step(ctx context.Context) verdict {
	start := w.clock.Now()
	pctx, cancel := withTimeout(ctx, w.clock, w.timeout)
	o := w.checker.Check(pctx)
	var te *timeoutError
	if errors.As(context.Cause(pctx), &te) && ctx.Err() == nil && !o.Own {
		// Past its timeout a probe fails, whatever a slow checker said.
		o = Outcome{Health: medic.HealthFailure, Detail: te.Error()}
	}
	cancel()
	if ctx.Err() != nil {
		return stopping
	}
	now := w.clock.Now()
	if w.observe != nil {
		w.observe(w.kind, o, now.Sub(start))
	}
	if o.Own != w.inShortage {
		w.inShortage = o.Own
		if o.Own && w.short != nil {
			w.short(w.kind, o)
		}
	}
	state, changed := w.counter.Observe(o.Health)
	if changed {
		w.emit(Update{Kind: w.kind, Health: state, Detail: o.Detail, Time: now})
	}
	switch {
	case w.kind == medic.ProbeStartup && state == medic.HealthSuccess:
		return isStarted
	case w.kind != medic.ProbeReadiness && state == medic.HealthFailure:
		return onHold
	}
	return keepProbing
}

// run waits for gate (nil: no gate) and the initial delay, measured from
// begin, then steps every period until a step says stop. onStarted is called
// when a startup probe passes.
//
// The first probe runs as soon as the initial delay is over, with no random
// offset. Kubelet spreads first probes only after a kubelet restart, when
// every pod's probes would otherwise fire together. A Set starts with its
// process, so Sets are already spread by process start times, and the probe
// that ends a restart's outage (startup, readiness) should not wait longer
// than it must.
func (w *worker) run(ctx context.Context, begin time.Time, gate <-chan struct{}, onStarted func()) {
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return
		}
	}
	var timer clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	sleep := func(d time.Duration) bool {
		if d <= 0 {
			return ctx.Err() == nil
		}
		if timer == nil {
			timer = w.clock.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C():
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !sleep(w.initialDelay - w.clock.Now().Sub(begin)) {
		return
	}
	next := w.clock.Now()
	for {
		switch w.step(ctx) {
		case isStarted:
			if onStarted != nil {
				onStarted()
			}
			return
		case onHold, stopping:
			return
		}
		now := w.clock.Now()
		var missed int
		next, missed = nextTick(next, now, w.period)
		if missed > 0 && w.missed != nil {
			w.missed(w.kind, missed)
		}
		if !sleep(next.Sub(now)) {
			return
		}
	}
}

// nextTick returns the first tick after prev, on the grid prev+k·period, that
// is not already past at now, and how many ticks were skipped because a probe
// ran past them. Skipped ticks are counted, not run: a slow instance must not
// receive a burst of catch-up probes (prometheus counts IterationsMissed).
func nextTick(prev, now time.Time, period time.Duration) (next time.Time, missed int) {
	next = prev.Add(period)
	if !now.After(next) {
		return next, 0
	}
	late := now.Sub(next)
	n := late / period
	if late%period != 0 {
		n++
	}
	return next.Add(n * period), int(n)
}
