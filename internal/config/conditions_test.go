package config_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

// parseConditions decodes a conditions: section through the real loader and
// returns the conditions with their defaults applied.
func parseConditions(t *testing.T, yml string) map[string]*config.Condition {
	t.Helper()
	cfg, err := config.Parse("medic.yaml", []byte("conditions:\n"+yml))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for _, c := range cfg.Conditions {
		c.SetDefaults()
	}
	return cfg.Conditions
}

func TestConditionGood(t *testing.T) {
	conds := parseConditions(t, `
  disk_full:   {signal: host_disk_used_percent, labels: {path: /var/data}, above: 90, clear_below: 80, for: 30s}
  rss_leak:    {signal: instance_rss_bytes, labels: {service: web}, trend: {window: 10m, above_per_hour: 200MiB}, for: 1m}
  latency_odd: {signal: proxy_latency_p99_seconds, anomaly: {confidence: 0.99, warmup: 10m}, for: 30s}
  crashloop:   {event: instance.crashloop}
  am_alert:    {alert: {match: {alertname: DiskFull}}}
  slow:        {signal: probe_duration_seconds, op: ">=", value: 250ms, keep_firing_for: 1m}
  few_ready:   {signal: instance_ready, aggregate: sum, by: [service], below: 2, clear_above: 2}
  seasonal:    {signal: proxy_requests_per_second, anomaly: {season: 24h, direction: up}}
`)
	for name, c := range conds {
		if is := c.Validate(); len(is) > 0 {
			t.Errorf("%s: unexpected issues %+v", name, is)
		}
	}
	want := map[string]string{"disk_full": "threshold", "rss_leak": "trend", "latency_odd": "anomaly",
		"crashloop": "event", "am_alert": "alert", "slow": "threshold", "few_ready": "threshold", "seasonal": "anomaly"}
	for name, kind := range want {
		if got := conds[name].Kind(); got != kind {
			t.Errorf("%s: Kind() = %q, want %q", name, got, kind)
		}
	}
	if op, v, clear, ok := conds["disk_full"].Threshold(); op != ">" || v != 90 || clear != 80 || !ok {
		t.Errorf("disk_full threshold = %s %v clear %v %v", op, v, clear, ok)
	}
	if op, v, _, _ := conds["slow"].Threshold(); op != ">=" || v != 0.25 {
		t.Errorf("slow threshold = %s %v, want >= 0.25 (seconds)", op, v)
	}
	if a := *conds["rss_leak"].Trend.AbovePerHour; a != 200<<20 {
		t.Errorf("above_per_hour = %v, want 200MiB in bytes", a)
	}
	// Defaults.
	if c := conds["disk_full"]; c.Aggregate != "each" || c.StaleAfter.D() != config.DefaultStaleAfter {
		t.Errorf("threshold defaults: aggregate %q stale_after %v", c.Aggregate, c.StaleAfter)
	}
	if tr := conds["rss_leak"].Trend; tr.MinPoints != config.DefaultTrendMinPoints {
		t.Errorf("trend defaults: %+v", tr)
	}
	a := conds["latency_odd"].Anomaly
	if a.Window.D() != config.DefaultAnomalyWindow || a.Warmup.D().Minutes() != 10 || a.Direction != "both" {
		t.Errorf("anomaly defaults: %+v", a)
	}
	if s := conds["seasonal"].Anomaly; s.SeasonBuckets != 24 || s.Warmup != s.Window || *s.Confidence != 0.99 || *s.ClearConfidence != 0.5 {
		t.Errorf("seasonal defaults: %+v", s)
	}
	if r := conds["crashloop"].ResolveOn; len(r) != 1 || r[0] != "instance.ready" {
		t.Errorf("resolve_on default = %v", r)
	}
}

func TestConditionBad(t *testing.T) {
	for _, c := range []struct{ yml, field, msg string }{
		{`{signal: x}`, "signal", "set one kind"},
		{`{signal: x, above: 1, trend: {above_per_hour: 1}}`, "trend", "both threshold and trend"},
		{`{event: instance.exited, alert: {match: {a: b}}}`, "alert", "both event and alert"},
		{`{above: 1}`, "signal", "required for a threshold"},
		{`{signal: 9lives, above: 1}`, "signal", "invalid signal name"},
		{`{signal: x, event: instance.exited}`, "signal", "watches no signal"},
		{`{signal: x, above: 1, below: 2}`, "below", "a threshold is one of above, below, or op"},
		{`{signal: x, op: "=>", value: 1}`, "op", "must be one of"},
		{`{signal: x, op: ">"}`, "value", "required with op"},
		{`{signal: x, value: 3}`, "op", "required with value"},
		{`{signal: x, above: 90, clear_below: 95}`, "clear_below", "above the threshold"},
		{`{signal: x, above: 90, clear_above: 95}`, "clear_above", "use clear_below"},
		{`{signal: x, below: 10, clear_above: 5}`, "clear_above", "below the threshold"},
		{`{signal: x, op: "==", value: 1, clear_below: 0}`, "clear_below", "applies to an above threshold"},
		{`{signal: x, trend: {above_per_hour: 1}, clear_below: 0}`, "clear_below", "applies to a threshold"},
		{`{signal: x, above: 1, aggregate: median}`, "aggregate", "must be one of"},
		{`{signal: x, trend: {above_per_hour: 1}, aggregate: max}`, "aggregate", "aggregate applies to thresholds only"},
		{`{signal: x, above: 1, by: [service]}`, "by", "set aggregate"},
		{`{signal: x, above: 1, aggregate: max, by: [service, service]}`, "by[1]", "listed twice"},
		{`{signal: x, above: 1, labels: {"bad-name": y}}`, "labels.bad-name", "invalid label name"},
		{`{signal: x, above: 1, resolve_after: 1m}`, "resolve_after", "applies to event and alert"},
		{`{signal: x, trend: {window: 10m}}`, "trend", "set above_per_hour"},
		{`{signal: x, trend: {above_per_hour: 1, below_per_hour: 1}}`, "trend.below_per_hour", "not both"},
		{`{signal: x, trend: {above_per_hour: 1, min_points: 2}}`, "trend.min_points", "at least 3"},
		{`{signal: x, trend: {above_per_hour: 1, window: 10ms}}`, "trend.window", "at least 1s"},
		{`{signal: x, anomaly: {confidence: 1}}`, "anomaly.confidence", "between 0 and 1"},
		{`{signal: x, anomaly: {confidence: 0}}`, "anomaly.confidence", "between 0 and 1"},
		{`{signal: x, anomaly: {confidence: 0.9, clear_confidence: 0.95}}`, "anomaly.clear_confidence", "above confidence"},
		{`{signal: x, anomaly: {clear_confidence: 0}}`, "anomaly.clear_confidence", "between 0 and 1"},
		{`{signal: x, anomaly: {direction: sideways}}`, "anomaly.direction", "both, up or down"},
		{`{signal: x, anomaly: {min_deviation: -1}}`, "anomaly.min_deviation", "negative"},
		{`{signal: x, anomaly: {season_buckets: 4}}`, "anomaly.season_buckets", "only with season"},
		{`{signal: x, anomaly: {season: 1h, season_buckets: 1}}`, "anomaly.season_buckets", "from 2 to"},
		{`{signal: x, anomaly: {season: 10m, season_buckets: 20}}`, "anomaly.season", "less than a minute"},
		{`{event: instance.crashed}`, "event", "unknown event"},
		{`{event: instance.exited, resolve_on: [instance.exited]}`, "resolve_on[0]", "both fires and resolves"},
		{`{event: instance.exited, resolve_on: []}`, "resolve_on", "at least one"},
		{`{event: instance.exited, labels: {path: /}}`, "labels.path", "only service and instance"},
		{`{event: instance.exited, stale_after: 1m}`, "stale_after", "not to an event condition"},
		{`{alert: {}}`, "alert.match", "required"},
		{`{alert: {match: {a: b}}, labels: {a: b}}`, "labels.a", "alert.match"},
		{`{alert: {match: {"a b": c}}}`, "alert.match.a b", "invalid label name"},
	} {
		t.Run(c.yml, func(t *testing.T) {
			// The loader calls SetDefaults and Validate on every condition and
			// prefixes the field with the condition's path.
			_, err := config.Parse("medic.yaml", []byte("conditions:\n  x: "+c.yml+"\n"))
			path := "conditions.x"
			if c.field != "" {
				path += "." + c.field
			}
			if err == nil || !strings.Contains(err.Error(), path+": ") || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("want an error at %s containing %q; got %v", path, c.msg, err)
			}
		})
	}
}

func TestQuantity(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
	}{
		{"90", 90}, {"0.5", 0.5}, {"-3", -3}, {"1e6", 1e6}, {"200MiB", 200 << 20}, {"1 GiB", 1 << 30},
		{"-1GiB", -(1 << 30)}, {"512KB", 512 << 10}, {"10B", 10}, {"250ms", 0.25}, {"2m", 120}, {"1h30m", 5400},
	} {
		var q config.Quantity
		if err := q.UnmarshalText([]byte(c.in)); err != nil || float64(q) != c.want {
			t.Errorf("%q: got %v, %v; want %v", c.in, float64(q), err, c.want)
		}
	}
	for _, in := range []string{"", "ten", "5M", "NaN", "inf", "0x10", "1_000", "3 parsecs", "1e999"} {
		var q config.Quantity
		if err := q.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q parsed as %v; want an error", in, float64(q))
		}
	}
	var v struct{ A, B config.Quantity }
	if err := json.Unmarshal([]byte(`{"A": 1.5, "B": "1KiB"}`), &v); err != nil || v.A != 1.5 || v.B != 1024 {
		t.Errorf("JSON: %+v, %v", v, err)
	}
	if b, _ := json.Marshal(v); string(b) != `{"A":1.5,"B":1024}` {
		t.Errorf("JSON out: %s", b)
	}
}
