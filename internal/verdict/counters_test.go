package verdict_test

import (
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/verdict"
)

// clean is n requests of 200 in 20 ms, with a scraped counter's increase.
func clean(n int, counter string, rose float64) verdict.Sample {
	s := verdict.Sample{Start: time.Unix(0, 0)}
	for range n {
		s.Outcomes = append(s.Outcomes, verdict.Outcome{Status: 200, Latency: 20 * time.Millisecond})
	}
	if counter != "" {
		s.Counters = map[string]float64{counter: rose}
	}
	return s
}

func scraped(v verdict.Verdict, name string) verdict.Metric {
	for _, m := range v.Metrics {
		if m.Name == "scraped "+name {
			return m
		}
	}
	return verdict.Metric{}
}

// TestScrapedCounter: a counter scraped from the instances is judged like an
// error class: a canary whose counter rises on 10 % of its requests beside a
// baseline's 0 fails with the likelihood ratio in its reason; the same rise
// on both sides passes; not yet scraped from one group, it is undecided (and
// so the whole verdict cannot pass); a bad setting is refused.
func TestScrapedCounter(t *testing.T) {
	cfg := verdict.Config{Counters: []verdict.Counter{{Name: "app_db_errors_total"}}}
	now := time.Unix(60, 0)

	v := verdict.Evaluate(cfg, clean(80, "app_db_errors_total", 8), clean(80, "app_db_errors_total", 0), now)
	m := scraped(v, "app_db_errors_total")
	if v.Decision != verdict.Fail || m.Decision != verdict.Fail || m.LogLR < 4.55 || !strings.Contains(m.Reason, "rose by 8 over 80 canary requests") {
		t.Errorf("a counter rising on 10%% of the canary's requests: verdict %s, metric %s, log LR %.2f: %s", v.Decision, m.Decision, m.LogLR, m.Reason)
	}
	if m.CanaryValue != 0.1 || m.BaselineValue != 0 || m.Canary != 80 || m.Baseline != 80 {
		t.Errorf("values %v vs %v, samples %d vs %d", m.CanaryValue, m.BaselineValue, m.Canary, m.Baseline)
	}

	v = verdict.Evaluate(cfg, clean(600, "app_db_errors_total", 0), clean(600, "app_db_errors_total", 0), now)
	if m := scraped(v, "app_db_errors_total"); m.Decision != verdict.Pass {
		t.Errorf("a counter that never rose: %s: %s", m.Decision, m.Reason)
	}

	v = verdict.Evaluate(cfg, clean(600, "app_db_errors_total", 0), clean(600, "", 0), now)
	if m := scraped(v, "app_db_errors_total"); m.Decision != verdict.Continue || v.Decision == verdict.Pass || !strings.Contains(m.Reason, "not yet scraped") {
		t.Errorf("a counter not scraped from the baseline: metric %s, verdict %s: %s", m.Decision, v.Decision, m.Reason)
	}

	for _, bad := range []verdict.Counter{{Name: ""}, {Name: "x", Increase: 1}, {Name: "x", Increase: -0.1}} {
		if err := (verdict.Config{Counters: []verdict.Counter{bad}}).Validate(); err == nil {
			t.Errorf("counter %+v accepted", bad)
		}
	}
}
