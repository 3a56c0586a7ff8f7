package probe_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/probe"
)

// The loop tests run inside synctest bubbles: time.Sleep there advances a
// fake clock once every goroutine is blocked, so "sleep 1500ms, then Wait"
// is a deterministic step to t0+1.5s, not a guess at real scheduling.

const (
	S = medic.HealthSuccess
	F = medic.HealthFailure
)

// script is a fake checker: call i returns results[i] (the last one once the
// script runs out) after delay(i), and records when it was called.
type script struct {
	results []medic.Health
	delay   func(i int) time.Duration // nil: answer at once
	block   bool                      // wait for the context, then claim success

	mu    sync.Mutex
	calls []time.Time
}

func (s *script) Check(ctx context.Context) probe.Outcome {
	s.mu.Lock()
	i := len(s.calls)
	s.calls = append(s.calls, time.Now())
	s.mu.Unlock()
	if s.block {
		<-ctx.Done()
		return probe.Pass("too late")
	}
	if s.delay != nil {
		select {
		case <-time.After(s.delay(i)):
		case <-ctx.Done():
			return probe.Outcome{Detail: "cut"}
		}
	}
	return probe.Outcome{Health: s.results[min(i, len(s.results)-1)], Detail: fmt.Sprintf("call %d", i)}
}

// times returns the call times as offsets from t0.
func (s *script) times(t0 time.Time) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	for _, c := range s.calls {
		out = append(out, c.Sub(t0))
	}
	return out
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// recorder collects updates and fails the test if OnUpdate is ever entered twice at once.
type recorder struct {
	t      testing.TB
	inside atomic.Int32
	mu     sync.Mutex
	ups    []probe.Update
}

func (r *recorder) onUpdate(u probe.Update) {
	if r.inside.Add(1) != 1 {
		r.t.Errorf("OnUpdate called concurrently")
	}
	defer r.inside.Add(-1)
	r.mu.Lock()
	r.ups = append(r.ups, u)
	r.mu.Unlock()
}

func (r *recorder) list() []probe.Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ups)
}

// edges renders updates as "kind health @offset" for comparison.
func (r *recorder) edges(t0 time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, u := range r.ups {
		out = append(out, fmt.Sprintf("%s %s @%v", u.Kind, u.Health, u.Time.Sub(t0)))
	}
	return out
}

func every(period time.Duration) *config.Probe {
	return &config.Probe{Exec: &config.ExecProbe{Command: []string{"unused"}}, Period: config.Duration(period), Timeout: config.Duration(period)}
}

// newSet wires fake checkers to probe configs and records updates.
func newSet(t testing.TB, checkers map[*config.Probe]probe.Checker) (*probe.Set, *recorder) {
	rec := &recorder{t: t}
	s := &probe.Set{
		OnUpdate: rec.onUpdate,
		NewChecker: func(p *config.Probe, _ probe.Target) (probe.Checker, error) {
			c, ok := checkers[p]
			if !ok {
				return nil, errors.New("no fake checker for this probe")
			}
			return c, nil
		},
	}
	return s, rec
}

// start runs s.Serve in the background; stop cancels it and returns its
// error. A test that fails before calling stop is stopped by its cleanup.
// viaScheduler makes start run Sets on a probe.Scheduler (TestSetOnTheScheduler).
var viaScheduler bool

func start(t testing.TB, s *probe.Set) (stop func() error) {
	if viaScheduler {
		s.Scheduler = &probe.Scheduler{Clock: s.Clock, Slack: -1}
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	stop = sync.OnceValue(func() error {
		cancel()
		return <-errc
	})
	t.Cleanup(func() { _ = stop() })
	return stop
}

func wantEdges(t testing.TB, rec *recorder, t0 time.Time, want ...string) {
	t.Helper()
	if got := rec.edges(t0); !slices.Equal(got, want) {
		t.Fatalf("updates:\n got %q\nwant %q", got, want)
	}
}

func TestSetWithoutStartupProbeIsStartedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		ready := &script{results: []medic.Health{F}}
		rp := every(time.Second)
		s, rec := newSet(t, map[*config.Probe]probe.Checker{rp: ready})
		s.Readiness = rp
		stop := start(t, s)
		synctest.Wait()
		wantEdges(t, rec, t0, "startup success @0s") // readiness starts failed: nothing to send
		if got := ready.times(t0); !slices.Equal(got, []time.Duration{0}) {
			t.Fatalf("readiness probed at %v, want once at once", got)
		}
		if err := stop(); err != nil {
			t.Fatalf("Serve: %v", err)
		}
	})
}

func TestSetStartupGatesLivenessAndReadiness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		sp, lp, rp := every(time.Second), every(time.Second), every(time.Second)
		sp.FailureThreshold = 5
		rp.InitialDelay = config.Duration(5 * time.Second)
		startup := &script{results: []medic.Health{F, F, S}}
		live, ready := &script{results: []medic.Health{S}}, &script{results: []medic.Health{S}}
		s, rec := newSet(t, map[*config.Probe]probe.Checker{sp: startup, lp: live, rp: ready})
		s.Startup, s.Liveness, s.Readiness = sp, lp, rp
		stop := start(t, s)

		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if live.count()+ready.count() != 0 {
			t.Fatalf("liveness/readiness ran before startup passed: %d/%d probes", live.count(), ready.count())
		}
		wantEdges(t, rec, t0)

		time.Sleep(4 * time.Second) // t0+5.5s
		synctest.Wait()
		// Startup passes at 2s and stops; liveness starts at once (its initial
		// delay of 0 is long over); readiness waits out its 5s initial delay.
		wantEdges(t, rec, t0, "startup success @2s", "readiness success @5s")
		if got := startup.times(t0); !slices.Equal(got, []time.Duration{0, time.Second, 2 * time.Second}) {
			t.Fatalf("startup probed at %v", got)
		}
		if got := live.times(t0); len(got) == 0 || got[0] != 2*time.Second {
			t.Fatalf("liveness probed at %v, want first at 2s", got)
		}
		if got := ready.times(t0); !slices.Equal(got, []time.Duration{5 * time.Second}) {
			t.Fatalf("readiness probed at %v, want first at 5s", got)
		}
		if err := stop(); err != nil {
			t.Fatalf("Serve: %v", err)
		}
	})
}

func TestSetStartupFailureHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		sp, lp, rp := every(time.Second), every(time.Second), every(time.Second)
		startup := &script{results: []medic.Health{F}}
		live, ready := &script{results: []medic.Health{S}}, &script{results: []medic.Health{S}}
		s, rec := newSet(t, map[*config.Probe]probe.Checker{sp: startup, lp: live, rp: ready})
		s.Startup, s.Liveness, s.Readiness = sp, lp, rp
		stop := start(t, s)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		wantEdges(t, rec, t0, "startup failure @2s") // the default failure_threshold is 3
		if n := startup.count(); n != 3 {
			t.Fatalf("startup probed %d times, want 3, then hold", n)
		}
		if live.count()+ready.count() != 0 {
			t.Fatalf("liveness/readiness ran after startup failed")
		}
		if err := stop(); err != nil {
			t.Fatalf("Serve: %v", err)
		}
	})
}

func TestSetLivenessFailsAfterExactlyThresholdThenHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		lp := every(time.Second)
		lp.FailureThreshold = 3
		// Two failures, a success that breaks the run, then three failures.
		live := &script{results: []medic.Health{S, S, F, F, S, F, F, F, S}}
		s, rec := newSet(t, map[*config.Probe]probe.Checker{lp: live})
		s.Liveness = lp
		stop := start(t, s)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		wantEdges(t, rec, t0, "startup success @0s", "liveness failure @7s")
		if n := live.count(); n != 8 {
			t.Fatalf("liveness probed %d times, want 8, then hold", n)
		}
		if d := rec.list()[1].Detail; d != "call 7" {
			t.Fatalf("update detail %q, want the failing probe's detail", d)
		}
		if err := stop(); err != nil {
			t.Fatalf("Serve: %v", err)
		}
	})
}

func TestSetReadinessFlapsOnEdgesOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		rp := every(time.Second)
		rp.SuccessThreshold, rp.FailureThreshold = 2, 2
		ready := &script{results: []medic.Health{F, F, S, S, S, F, S, F, F, S, S}}
		s, rec := newSet(t, map[*config.Probe]probe.Checker{rp: ready})
		s.Readiness = rp
		stop := start(t, s)
		time.Sleep(100 * time.Second) // 90 more successes after the script: no more updates
		synctest.Wait()
		wantEdges(t, rec, t0, "startup success @0s", "readiness success @3s", "readiness failure @8s", "readiness success @10s")
		if n := ready.count(); n != 101 {
			t.Fatalf("readiness probed %d times in 100s at 1s, want 101", n)
		}
		if err := stop(); err != nil {
			t.Fatalf("Serve: %v", err)
		}
	})
}

func TestSetSteadyStateSendsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		lp, rp := every(time.Second), every(time.Second)
		s, rec := newSet(t, map[*config.Probe]probe.Checker{
			lp: &script{results: []medic.Health{S}}, // liveness starts as success
			rp: &script{results: []medic.Health{F}}, // readiness starts as failure
		})
		s.Liveness, s.Readiness = lp, rp
		stop := start(t, s)
		time.Sleep(time.Hour)
		synctest.Wait()
		wantEdges(t, rec, t0, "startup success @0s")
		if err := stop(); err != nil {
			t.Fatalf("Serve: %v", err)
		}
	})
}

func TestSetTimeoutCutsSlowProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		lp := every(2 * time.Second)
		lp.Timeout, lp.FailureThreshold = config.Duration(time.Second), 2
		live := &script{block: true} // never answers before its deadline
		s, rec := newSet(t, map[*config.Probe]probe.Checker{lp: live})
		s.Liveness = lp
		var mu sync.Mutex
		var took []time.Duration
		s.Observe = func(k medic.ProbeKind, o probe.Outcome, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if k != medic.ProbeLiveness || o.Health != F || o.Detail != "timeout after 1s" {
				t.Errorf("observed %s %+v, want a liveness timeout failure", k, o)
			}
			took = append(took, d)
		}
		stop := start(t, s)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		wantEdges(t, rec, t0, "startup success @0s", "liveness failure @3s")
		if d := rec.list()[1].Detail; d != "timeout after 1s" {
			t.Fatalf("detail %q", d)
		}
		mu.Lock()
		if !slices.Equal(took, []time.Duration{time.Second, time.Second}) {
			t.Fatalf("observed durations %v, want two probes cut at 1s", took)
		}
		mu.Unlock()
		if err := stop(); err != nil {
			t.Fatalf("Serve: %v", err)
		}
	})
}

func TestSetCountsMissedTicksWithoutBursting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		rp := every(time.Second)
		rp.Timeout = config.Duration(10 * time.Second)
		ready := &script{results: []medic.Health{S}, delay: func(i int) time.Duration {
			if i == 0 {
				return 2500 * time.Millisecond
			}
			return 0
		}}
		s, _ := newSet(t, map[*config.Probe]probe.Checker{rp: ready})
		s.Readiness = rp
		var missed []int
		s.Missed = func(k medic.ProbeKind, n int) { missed = append(missed, n) }
		stop := start(t, s)
		time.Sleep(4500 * time.Millisecond)
		synctest.Wait()
		if got := ready.times(t0); !slices.Equal(got, []time.Duration{0, 3 * time.Second, 4 * time.Second}) {
			t.Fatalf("probes at %v, want 0s, 3s, 4s (ticks at 1s and 2s skipped)", got)
		}
		if err := stop(); err != nil {
			t.Fatalf("Serve: %v", err)
		}
		if !slices.Equal(missed, []int{2}) {
			t.Fatalf("missed %v, want [2]", missed)
		}
	})
}

func TestSetCancelStopsEverythingAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		sp, lp, rp := every(time.Hour), every(time.Second), every(time.Second)
		sp.Timeout = config.Duration(time.Hour)
		// Startup hangs, so liveness and readiness are parked on the gate.
		s, rec := newSet(t, map[*config.Probe]probe.Checker{sp: &script{block: true}, lp: &script{}, rp: &script{}})
		s.Startup, s.Liveness, s.Readiness = sp, lp, rp
		s.Observe = func(k medic.ProbeKind, o probe.Outcome, _ time.Duration) {
			t.Errorf("observed a cancelled probe: %s %+v", k, o)
		}
		stop := start(t, s)
		time.Sleep(500 * time.Millisecond)
		if err := stop(); err != nil {
			t.Fatalf("Serve: %v", err)
		}
		if d := time.Since(t0); d != 500*time.Millisecond {
			t.Fatalf("Serve returned at +%v, want at the cancel (+500ms)", d)
		}
		wantEdges(t, rec, t0)
	})
}

func TestSetCheckerErrorStartsNothing(t *testing.T) {
	rp := every(time.Second)
	s, rec := newSet(t, map[*config.Probe]probe.Checker{}) // no checker for rp
	s.Readiness = rp
	err := s.Serve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "probe readiness") {
		t.Fatalf("Serve = %v, want an error naming the readiness probe", err)
	}
	if ups := rec.list(); len(ups) != 0 {
		t.Fatalf("updates sent by a Set that could not start: %v", ups)
	}
}
