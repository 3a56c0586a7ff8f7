package detect_test

import (
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/detect"
	"github.com/medic-dev/medic/internal/signal"
)

var data = map[string]signal.Labels{"d": {"path": "/data"}}

func v(x float64) map[string]float64 { return map[string]float64{"d": x} }

// TestThresholdForAndHysteresis: fire above 90 held for 30s; once firing,
// resolve only below 80.
func TestThresholdForAndHysteresis(t *testing.T) {
	c := mustCondition(t, `{signal: host_disk_used_percent, labels: {path: /data}, above: 90, clear_below: 80, for: 30s}`)
	const p = `{path="/data"}`
	all := runTimeline(t, c, "host_disk_used_percent", data, []step{
		{0, v(85), ""},
		{10 * time.Second, v(95), "inactive>pending" + p},
		{20 * time.Second, v(85), "pending>inactive" + p}, // transient: gone before `for`
		{30 * time.Second, v(95), "inactive>pending" + p},
		{40 * time.Second, nil, ""},                      // no new sample: the latest still holds
		{50 * time.Second, v(96), ""},                    // held 20s of 30s
		{60 * time.Second, v(97), "pending>firing" + p},  // held 30s: persistent
		{70 * time.Second, v(85), ""},                    // below 90 but not below 80: hysteresis
		{80 * time.Second, v(80), ""},                    // at the clear value: not below it
		{90 * time.Second, v(79), "firing>inactive" + p}, // resolved
		{100 * time.Second, v(85), ""},                   // back between 80 and 90: nothing
		{110 * time.Second, v(91), "inactive>pending" + p},
	})
	fired := all[3]
	if !fired.ActiveAt.Equal(t0.Add(30*time.Second)) || fired.Value != 97 || fired.Confidence != 1 || fired.Condition != "c" || fired.Kind != "threshold" {
		t.Errorf("firing transition = %+v", fired)
	}
	if !strings.Contains(fired.Reason, `host_disk_used_percent{path="/data"} = 97, > 90; held for 30s`) {
		t.Errorf("firing reason = %q", fired.Reason)
	}
	if r := all[4].Reason; !strings.Contains(r, "resolved") || !strings.Contains(r, "below the clear value 80") {
		t.Errorf("resolved reason = %q", r)
	}
	if r := all[1].Reason; !strings.Contains(r, "before firing") {
		t.Errorf("transient reason = %q", r)
	}
}

// TestThresholdNoHysteresis: without clear_below a firing alert resolves as
// soon as the comparison fails; for: 0 fires at once.
func TestThresholdNoHysteresis(t *testing.T) {
	c := mustCondition(t, `{signal: host_disk_used_percent, op: ">=", value: 90}`)
	const p = `{path="/data"}`
	runTimeline(t, c, "host_disk_used_percent", data, []step{
		{0, v(90), "inactive>firing" + p},
		{10 * time.Second, v(89.9), "firing>inactive" + p},
	})
}

func TestThresholdKeepFiringFor(t *testing.T) {
	c := mustCondition(t, `{signal: host_disk_used_percent, above: 90, keep_firing_for: 20s}`)
	const p = `{path="/data"}`
	runTimeline(t, c, "host_disk_used_percent", data, []step{
		{0, v(95), "inactive>firing" + p},
		{10 * time.Second, v(50), ""}, // keeps firing
		{20 * time.Second, v(95), ""}, // holds again: the keep timer restarts
		{30 * time.Second, v(50), ""},
		{45 * time.Second, v(50), ""},
		{50 * time.Second, v(50), "firing>inactive" + p}, // 20s after it stopped holding
	})
}

// TestThresholdPerSeries: each instance is its own alert with its labels.
func TestThresholdPerSeries(t *testing.T) {
	c := mustCondition(t, `{signal: instance_rss_bytes, labels: {service: web}, above: 1GiB, for: 10s}`)
	ls := map[string]signal.Labels{
		"0":  {"service": "web", "instance": "web/0"},
		"1":  {"service": "web", "instance": "web/1"},
		"db": {"service": "db", "instance": "db/0"},
	}
	const w0, w1 = `{instance="web/0",service="web"}`, `{instance="web/1",service="web"}`
	all := runTimeline(t, c, "instance_rss_bytes", ls, []step{
		{0, map[string]float64{"0": 2 << 30, "1": 1 << 20, "db": 5 << 30}, "inactive>pending" + w0},
		{5 * time.Second, map[string]float64{"0": 2 << 30, "1": 2 << 30, "db": 5 << 30}, "inactive>pending" + w1},
		{10 * time.Second, map[string]float64{"0": 2 << 30, "1": 2 << 30}, "pending>firing" + w0},
		{15 * time.Second, map[string]float64{"0": 1 << 20, "1": 2 << 30}, "firing>inactive" + w0 + " pending>firing" + w1},
	})
	if r := all[2].Reason; !strings.Contains(r, "= 2GiB, > 1GiB") {
		t.Errorf("reason %q: want sizes in IEC units", r)
	}
}

// TestThresholdStale: a series that stops reporting resolves its alert
// after stale_after.
func TestThresholdStale(t *testing.T) {
	c := mustCondition(t, `{signal: host_disk_used_percent, above: 90, stale_after: 1m}`)
	const p = `{path="/data"}`
	all := runTimeline(t, c, "host_disk_used_percent", data, []step{
		{0, v(95), "inactive>firing" + p},
		{60 * time.Second, nil, ""},
		{61 * time.Second, nil, "firing>inactive" + p},
	})
	if r := all[1].Reason; !strings.Contains(r, "no data") {
		t.Errorf("reason = %q", r)
	}
}

// TestThresholdAggregate: one alert per group, labelled with the matchers
// and the by labels; count of nothing is 0.
func TestThresholdAggregate(t *testing.T) {
	ls := map[string]signal.Labels{
		"w0": {"service": "web", "instance": "web/0"}, "w1": {"service": "web", "instance": "web/1"},
		"d0": {"service": "db", "instance": "db/0"},
	}
	sum := mustCondition(t, `{signal: instance_ready, aggregate: sum, by: [service], below: 2}`)
	runTimeline(t, sum, "instance_ready", ls, []step{
		{0, map[string]float64{"w0": 1, "w1": 1, "d0": 1}, `inactive>firing{service="db"}`},
		{time.Second, map[string]float64{"w0": 1, "w1": 0, "d0": 1}, `inactive>firing{service="web"}`},
	})
	count := mustCondition(t, `{signal: instance_ready, labels: {service: web}, aggregate: count, below: 1, stale_after: 1m}`)
	runTimeline(t, count, "instance_ready", ls, []step{
		{0, nil, `inactive>firing{service="web"}`}, // nothing reports at all
		{time.Second, map[string]float64{"w0": 1}, `firing>inactive{service="web"}`},
		{2 * time.Minute, nil, `inactive>firing{service="web"}`}, // gone stale
	})
	max := mustCondition(t, `{signal: instance_ready, aggregate: max, above: 0.5}`)
	runTimeline(t, max, "instance_ready", ls, []step{
		{0, nil, ""}, // max of nothing is undefined: no alert
		{time.Second, map[string]float64{"w0": 0, "d0": 1}, "inactive>firing"},
	})
}

func TestFormatInReasons(t *testing.T) {
	c := mustCondition(t, `{signal: probe_duration_seconds, above: 250ms}`)
	store := signal.NewStore(signal.Options{})
	store.Add("probe_duration_seconds", signal.Labels{"probe": "readiness"}, t0, 0.5)
	trs := c.Eval(t0, store)
	if len(trs) != 1 || !strings.Contains(trs[0].Reason, "= 500ms, > 250ms") {
		t.Errorf("transitions %s", reasons(trs))
	}
	if a := c.Alerts(); len(a) != 1 || a[0].State != detect.StateFiring || !a[0].FiredAt.Equal(t0) {
		t.Errorf("alerts = %+v", a)
	}
}
