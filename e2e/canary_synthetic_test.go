package e2e_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/release"
)

// canarySyntheticConfig is canaryConfig with the default steps (5 % first)
// and synthetic load: medic tops the canary and the baseline up to 20
// requests per second each while a step is undecided.
const canarySyntheticConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}", --latency, 20ms, --latency-spread, "0.3"]
    instances: 2
    port: %[3]d
    stop: {grace: 2s}
    restart: {initial: 200ms, max: 1s}
    proxy: {listen: "127.0.0.1:0", try_timeout: 2s, retries: {on_status: [500, 502, 503, 504]}}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 300ms, timeout: 200ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 100ms}
    deploy:
      strategy: canary
      ready_timeout: 20s
      step_max_duration: 2m
      synthetic: {path: /, rate: 20}
`

// TestCanarySynthetic: at the default first step of 5 % of 100 req/s the
// canary gets 5 req/s, and a 5 % error canary needs about 80 requests to
// judge (16 s); with synthetic load (20 req/s per group) it is rolled back
// ≤ 15 s after its first traffic, and a good canary is promoted through the
// 5 % step. MEDIC_CANARY_SYNTH_RUNS repeats each (default 1).
func TestCanarySynthetic(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	a := startAgentIn(t, dir, canarySyntheticConfig)
	a.token = op
	a.eventually(15*time.Second, "2 ready", func() bool { return a.status().Services[0].Ready == 2 })
	var bad, good []float64
	defer func() {
		sort.Float64s(bad)
		sort.Float64s(good)
		t.Logf("summary: bad canaries rolled back after %v s, good canaries promoted after %v s (from the first traffic)", bad, good)
	}()
	for i := range envInt("MEDIC_CANARY_SYNTH_RUNS", 1) {
		rel, doc, ok, failed := deployCanary(t, a, fmt.Sprintf("v2-bad-synth-%d", i), "--error-rate", "0.05")
		if rel.Outcome != release.Failed || doc.Outcome != "rolled-back" || !strings.Contains(doc.State.Reason, "errors 5xx") {
			t.Fatalf("release %s (%s), canary %s: %s", rel.Outcome, rel.Detail, doc.Outcome, doc.State.Reason)
		}
		bad = append(bad, doc.TimeToRollbackSeconds)
		if doc.SyntheticRequests == 0 || !strings.Contains(doc.Text, "synthetic load: ") {
			t.Fatalf("no synthetic request was sent:\n%s", doc.Text)
		}
		if doc.TimeToRollbackSeconds <= 0 || doc.TimeToRollbackSeconds > 15 {
			t.Fatalf("rolled back %.2fs after the canary's first traffic, want ≤ 15s", doc.TimeToRollbackSeconds)
		}
		if total := ok + failed; float64(failed) > 0.005*float64(total) {
			t.Fatalf("%d of %d requests failed, more than 0.5 %%", failed, total)
		}

		id := fmt.Sprintf("good-synth-%d", i)
		rel, doc, _, _ = deployCanary(t, a, id, "--id", id)
		if rel.Outcome != release.Live || doc.Outcome != "promoted" {
			t.Fatalf("good canary: release %s (%s), canary %s: %s", rel.Outcome, rel.Detail, doc.Outcome, doc.State.Reason)
		}
		good = append(good, doc.TimeToVerdictSeconds)
	}
}
