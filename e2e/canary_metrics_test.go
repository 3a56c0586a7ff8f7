package e2e_test

import (
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/release"
	"github.com/medic-dev/medic/internal/verdict"
)

// TestCanaryScrapedMetric: the real binary at 100 req/s through the proxy;
// web's canary settings name a counter scraped from the instances
// (deploy.metrics: demo_backend_errors_total). A canary that answers every
// request 200 but counts a backend error on 20 % of them (demoapp
// --event-rate 0.2) passes the proxy's own metrics and is rolled back on
// the scraped one, which the verdict explains.
func TestCanaryScrapedMetric(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	cfg := strings.Replace(canaryConfigFor(), "      step_max_duration: 2m\n", "      step_max_duration: 2m\n      metrics: [{name: demo_backend_errors_total}]\n", 1)
	a := startAgentIn(t, dir, cfg)
	a.token = op
	a.eventually(15*time.Second, "2 ready", func() bool { return a.status().Services[0].Ready == 2 })
	rel, doc, ok, failed := deployCanary(t, a, "v2-backend-errors", "--event-rate", "0.2")
	if rel.Outcome != release.Failed || !strings.Contains(rel.Detail, "scraped demo_backend_errors_total") {
		t.Fatalf("release %s: %s", rel.Outcome, rel.Detail)
	}
	var m verdict.Metric
	for _, x := range doc.State.Verdict.Metrics {
		if x.Name == "scraped demo_backend_errors_total" {
			m = x
		}
	}
	if m.Decision != verdict.Fail || m.LogLR < 4.55 || m.CanaryValue <= m.BaselineValue || !strings.Contains(m.Reason, "rose by") {
		t.Errorf("the scraped metric in the verdict: %+v", m)
	}
	if failed != 0 {
		t.Errorf("%d of %d client requests failed: the canary answered 200", failed, ok+failed)
	}
	t.Logf("rolled back %.2fs after the canary's first traffic: %s", doc.TimeToRollbackSeconds, m.Reason)
}
