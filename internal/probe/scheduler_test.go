package probe_test

import "testing"

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
