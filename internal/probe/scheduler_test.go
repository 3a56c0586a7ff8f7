package probe_test

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/probe"
)

// The Set tests again, with the probes run by a Scheduler instead of a
// goroutine each: the semantics must not change.
func TestSetOnTheScheduler(t *testing.T) {
	viaScheduler = true
	defer func() { viaScheduler = false }()
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"WithoutStartupProbeIsStartedAtOnce", TestSetWithoutStartupProbeIsStartedAtOnce},
		{"StartupGatesLivenessAndReadiness", TestSetStartupGatesLivenessAndReadiness},
		{"StartupFailureHolds", TestSetStartupFailureHolds},
		{"LivenessFailsAfterExactlyThresholdThenHolds", TestSetLivenessFailsAfterExactlyThresholdThenHolds},
		{"ReadinessFlapsOnEdgesOnly", TestSetReadinessFlapsOnEdgesOnly},
		{"SteadyStateSendsNothing", TestSetSteadyStateSendsNothing},
		{"TimeoutCutsSlowProbes", TestSetTimeoutCutsSlowProbes},
		{"CountsMissedTicksWithoutBursting", TestSetCountsMissedTicksWithoutBursting},
		{"CancelStopsEverythingAtOnce", TestSetCancelStopsEverythingAtOnce},
		{"CheckerErrorStartsNothing", TestSetCheckerErrorStartsNothing},
		{"RunsOnTheInjectedClock", TestSetRunsOnTheInjectedClock},
		{"ProbesARealServer", TestSetProbesARealServer},
		{"CancelKillsAnExecProbeInFlight", TestSetCancelKillsAnExecProbeInFlight},
	} {
		t.Run(tc.name, tc.f)
	}
}

// Probes due within the slack of each other run in one wakeup, and keep
// sharing it: the grid is anchored at the run, not at the due time. A probe
// due later than the slack keeps its own time.
func TestSchedulerSharesWakeups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		sched := &probe.Scheduler{Slack: 25 * time.Millisecond}
		var scripts []*script
		for _, delay := range []time.Duration{time.Second, time.Second + 10*time.Millisecond, time.Second + 100*time.Millisecond} {
			rp := every(time.Second)
			rp.InitialDelay = config.Duration(delay)
			sc := &script{results: []medic.Health{S}}
			s, _ := newSet(t, map[*config.Probe]probe.Checker{rp: sc})
			s.Readiness, s.Scheduler = rp, sched
			start(t, s)
			scripts = append(scripts, sc)
		}
		time.Sleep(3500 * time.Millisecond)
		synctest.Wait()
		ms := time.Millisecond
		want := [][]time.Duration{
			{1000 * ms, 2000 * ms, 3000 * ms},
			{1000 * ms, 2000 * ms, 3000 * ms}, // 10 ms early once, then on the first one's grid
			{1100 * ms, 2100 * ms, 3100 * ms},
		}
		for i, sc := range scripts {
			if got := sc.times(t0); !slices.Equal(got, want[i]) {
				t.Errorf("probe %d ran at %v, want %v", i, got, want[i])
			}
		}
	})
}
