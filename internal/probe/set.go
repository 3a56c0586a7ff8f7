package probe

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
)

// Update reports that a probe's state changed. Updates are edge-triggered:
// one per change, never one per probe.
type Update struct {
	Kind   medic.ProbeKind
	Health medic.Health // HealthSuccess or HealthFailure
	Detail string       // the Outcome.Detail of the probe that caused the change
	Time   time.Time    // when that probe finished, on Set.Clock
}

// String renders the update for logs: "liveness failure: HTTP 503".
func (u Update) String() string { return fmt.Sprintf("%s %s: %s", u.Kind, u.Health, u.Detail) }

// Set runs the probes of one instance process with Kubernetes semantics. The
// supervisor builds a Set when the process starts, runs Serve, and cancels it
// when the process exits; a restarted process gets a new Set, so no state
// carries over (kubelet keys its workers by container ID for the same reason).
//
// What OnUpdate receives:
//
//   - Startup: the first success sends {startup, success}: the instance is
//     started. FailureThreshold consecutive failures send {startup, failure}
//     and the startup probe stops (the supervisor restarts the instance).
//     Without a startup probe, {startup, success} is sent at once, so the
//     supervisor has one code path.
//   - Liveness and readiness run only once started. Their first probe runs
//     InitialDelay after Serve began (or at once if that has already passed).
//   - Liveness starts as Success and sends nothing for it. FailureThreshold
//     consecutive failures send {liveness, failure}; the probe then stops
//     (kubelet's onHold) until the supervisor replaces the Set.
//   - Readiness starts as Failure (not ready; Success with ReadyAtStart) and
//     sends nothing for it.
//     SuccessThreshold consecutive successes send {readiness, success},
//     FailureThreshold consecutive failures {readiness, failure}, on every edge.
//
// Startup and liveness always use a success threshold of 1, as Kubernetes
// requires. Zero fields of a Probe take the Default* values. Fields must not
// change while Serve runs.
type Set struct {
	Startup, Liveness, Readiness *config.Probe
	// Target is the instance the checkers probe.
	Target Target
	// Clock drives delays, periods, timeouts and timestamps; nil means the wall clock.
	Clock clock.Clock
	// OnUpdate receives every state change. It is never called concurrently,
	// and never after Serve returns. It must not block for long: the probe
	// that caused the change waits for it.
	OnUpdate func(Update)
	// Observe, if set, receives every probe result with its duration (for
	// metrics). It may be called concurrently by different probes.
	Observe func(kind medic.ProbeKind, o Outcome, took time.Duration)
	// Missed, if set, receives the number of periods a probe skipped because
	// the previous probe ran past them (for a counter metric). Missed ticks
	// are counted, never run. It may be called concurrently by different probes.
	Missed func(kind medic.ProbeKind, n int)
	// OnShortage, if set, is told when a probe could not judge because medic
	// itself is short of resources (Outcome.Own): once when that starts, again
	// only after a judged result came between. The result is Unknown and counts
	// toward nothing. It may be called concurrently by different probes.
	OnShortage func(kind medic.ProbeKind, o Outcome)
	// ReadyAtStart makes readiness start as Success instead of Failure (an
	// instance adopted from a previous medic under which it was ready):
	// FailureThreshold consecutive failures then send {readiness, failure}.
	ReadyAtStart bool
	// Scheduler, if set, runs the probes (one timer and a pool of workers
	// shared by every Set of an agent); nil gives each probe its own
	// goroutine and timer. Its Clock must be Clock.
	Scheduler *Scheduler
	// NewChecker builds the checkers; nil means the package's NewChecker.
	// Tests swap it for fakes.
	NewChecker func(*config.Probe, Target) (Checker, error)
}

// Start probes on s.Scheduler, which must be set, until ctx ends, without a
// goroutine of its own: wait returns once every probe stopped, after ctx
// ended. It returns an error, having started nothing, when a checker cannot
// be built.
func (s *Set) Start(ctx context.Context) (wait func(), err error) {
	if s.Scheduler == nil {
		return nil, fmt.Errorf("probe: Set.Start needs a Scheduler")
	}
	workers, begin, started, err := s.prepare()
	if err != nil {
		return nil, err
	}
	stopped := s.Scheduler.start(ctx, begin, workers, s.Startup != nil, started)
	return func() { stopped(); closeIdle(workers) }, nil
}

// Serve probes until ctx ends, then returns nil once every probe it started
// has stopped (an exec probe in flight is killed and reaped first). It returns
// an error, having started nothing, when a checker cannot be built.
func (s *Set) Serve(ctx context.Context) error {
	if s.Scheduler != nil {
		wait, err := s.Start(ctx)
		if err != nil {
			return err
		}
		<-ctx.Done()
		wait()
		return nil
	}
	workers, begin, started, err := s.prepare()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for i, w := range workers {
		run := func() { w.run(ctx, begin, started, nil) }
		if w.kind == medic.ProbeStartup {
			// Closing started after the startup update was delivered orders
			// it before any liveness or readiness update.
			run = func() { w.run(ctx, begin, nil, func() { close(started) }) }
		}
		if i == len(workers)-1 {
			// The last probe runs in Serve's own goroutine: one goroutine
			// (and its stack) less per instance.
			run()
			break
		}
		wg.Go(run)
	}
	<-ctx.Done()
	wg.Wait()
	closeIdle(workers)
	return nil
}

// prepare builds the workers of s; started is closed when liveness and
// readiness may begin (at once without a startup probe).
func (s *Set) prepare() (workers []*worker, begin time.Time, started chan struct{}, err error) {
	clk := clock.Or(s.Clock)
	newChecker := s.NewChecker
	if newChecker == nil {
		newChecker = NewChecker
	}
	e := &emitter{onUpdate: s.OnUpdate}
	for _, k := range []struct {
		kind medic.ProbeKind
		p    *config.Probe
	}{{medic.ProbeStartup, s.Startup}, {medic.ProbeLiveness, s.Liveness}, {medic.ProbeReadiness, s.Readiness}} {
		if k.p == nil {
			continue
		}
		chk, err := newChecker(k.p, s.Target)
		if err != nil {
			return nil, time.Time{}, nil, fmt.Errorf("probe %s: %w", k.kind, err)
		}
		w := newWorker(k.kind, k.p, chk, clk)
		if k.kind == medic.ProbeReadiness && s.ReadyAtStart {
			w.counter.State = medic.HealthSuccess
		}
		w.emit, w.observe, w.missed, w.short = e.send, s.Observe, s.Missed, s.OnShortage
		workers = append(workers, w)
	}

	keepReadinessConnection(workers)
	begin = clk.Now()
	started = make(chan struct{})
	if s.Startup == nil {
		e.send(Update{Kind: medic.ProbeStartup, Health: medic.HealthSuccess, Detail: "no startup probe", Time: begin})
		close(started)
	}
	return workers, begin, started, nil
}

// keepReadinessConnection lets an http readiness probe keep its connection
// between checks when an http liveness probe of the same address dials
// afresh each time (that one still finds a hung accept loop): one connect
// and close less per readiness check.
func keepReadinessConnection(workers []*worker) {
	var live, ready *worker
	for _, w := range workers {
		switch w.kind {
		case medic.ProbeLiveness:
			live = w
		case medic.ProbeReadiness:
			ready = w
		}
	}
	if live != nil && ready != nil && sameHTTPAddress(live.checker, ready.checker) {
		reuseConnection(ready.checker)
	}
}

// closeIdle closes the connections the workers' checkers kept.
func closeIdle(workers []*worker) {
	for _, w := range workers {
		if h, ok := w.checker.(*httpChecker); ok {
			h.closeIdle()
		}
	}
}

// emitter serialises calls to OnUpdate across workers.
type emitter struct {
	mu       sync.Mutex
	onUpdate func(Update)
}

func (e *emitter) send(u Update) {
	if e.onUpdate == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onUpdate(u)
}
