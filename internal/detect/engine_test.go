package detect_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/detect"
	"github.com/medic-dev/medic/internal/signal"
)

const engineConds = `
  disk_full: {signal: host_disk_used_percent, above: 90, clear_below: 80, for: 30s}
  mem_high:  {signal: host_memory_used_percent, above: 50}
  crashloop: {event: instance.crashloop}
  am_disk:   {alert: {match: {alertname: DiskFull}}}
`

func mustEngine(t *testing.T, yml string, opts detect.Options) *detect.Engine {
	t.Helper()
	e, err := detect.New(mustSpecs(t, yml), opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func names(trs []detect.Transition) string {
	var parts []string
	for _, tr := range trs {
		parts = append(parts, tr.Condition+":"+tr.From.String()+">"+tr.To.String())
	}
	return strings.Join(parts, " ")
}

// TestEngineUpdate: across a reload an unchanged condition keeps its state,
// a changed one keeps its pending timer (CopyState), a removed one resolves.
func TestEngineUpdate(t *testing.T) {
	store := signal.NewStore(signal.Options{})
	e := mustEngine(t, engineConds, detect.Options{})
	add := func(at time.Duration) {
		store.Add("host_disk_used_percent", signal.Labels{"path": "/"}, t0.Add(at), 95)
		store.Add("host_memory_used_percent", nil, t0.Add(at), 60)
	}
	add(0)
	if got := names(e.Eval(t0, store)); got != "disk_full:inactive>pending mem_high:inactive>firing" {
		t.Fatalf("first eval: %q", got)
	}
	// Reload 1: nothing changes.
	if err := e.Update(mustSpecs(t, engineConds)); err != nil {
		t.Fatal(err)
	}
	add(10 * time.Second)
	if got := names(e.Eval(t0.Add(10*time.Second), store)); got != "" {
		t.Fatalf("after an identical reload: %q", got)
	}
	// Reload 2: disk_full's hysteresis changes, mem_high is removed.
	changed := strings.Replace(engineConds, "clear_below: 80", "clear_below: 85", 1)
	changed = strings.Replace(changed, "  mem_high:  {signal: host_memory_used_percent, above: 50}\n", "", 1)
	if err := e.Update(mustSpecs(t, changed)); err != nil {
		t.Fatal(err)
	}
	add(20 * time.Second)
	trs := e.Eval(t0.Add(20*time.Second), store)
	if got := names(trs); got != "mem_high:firing>inactive" || trs[0].Reason != "condition removed or redefined by a configuration reload" {
		t.Fatalf("after removing mem_high: %q\n%s", got, reasons(trs))
	}
	add(30 * time.Second)
	if got := names(e.Eval(t0.Add(30*time.Second), store)); got != "disk_full:pending>firing" {
		t.Fatalf("30s after disk_full began, across the reload: %q", got)
	}
	// Reload 3: disk_full becomes a trend: its firing alert ends.
	trend := strings.Replace(changed, "above: 90, clear_below: 85, for: 30s", "trend: {above_per_hour: 1}", 1)
	if err := e.Update(mustSpecs(t, trend)); err != nil {
		t.Fatal(err)
	}
	if got := names(e.Eval(t0.Add(31*time.Second), store)); got != "disk_full:firing>inactive" {
		t.Fatalf("after redefining disk_full as a trend: %q", got)
	}
	if err := e.Update(mustSpecs(t, changed)); err != nil {
		t.Fatal(err)
	}
	add(40 * time.Second)
	e.Eval(t0.Add(40*time.Second), store)
	add(70 * time.Second)
	e.Eval(t0.Add(70*time.Second), store)

	// An invalid update changes nothing.
	if err := e.Update(map[string]*config.Condition{"bad": {Signal: "x"}}); err == nil || !strings.Contains(err.Error(), "condition bad: signal: set one kind") {
		t.Fatalf("invalid update: err = %v", err)
	}
	if !e.Has("disk_full") || e.Has("bad") || !e.Firing("disk_full", signal.Labels{"path": "/"}) {
		t.Error("an invalid update changed the engine")
	}
	if _, err := detect.New(map[string]*config.Condition{"bad": {Above: new(config.Quantity)}}, detect.Options{}); err == nil {
		t.Error("New accepted a threshold without a signal")
	}
}

// TestEngineImplicitAlerts: a pushed alert no condition matches becomes a
// condition named after its alertname, which survives reloads.
func TestEngineImplicitAlerts(t *testing.T) {
	store := signal.NewStore(signal.Options{})
	e := mustEngine(t, engineConds, detect.Options{})
	hl := detect.ExternalAlert{Source: "webhook", Status: detect.AlertFiring, Labels: signal.Labels{"alertname": "HighLatency", "service": "web"}}
	if !e.Push(hl, t0) {
		t.Fatal("an alert with an alertname was not taken")
	}
	// A name taken by a configured condition of another kind is refused.
	if e.Push(detect.ExternalAlert{Status: detect.AlertFiring, Labels: signal.Labels{"alertname": "disk_full"}}, t0) {
		t.Error("an alert named like a threshold condition was taken")
	}
	if e.Push(detect.ExternalAlert{Status: detect.AlertFiring, Labels: signal.Labels{"job": "x"}}, t0) {
		t.Error("an alert without alertname was taken")
	}
	trs := e.Eval(t0, store)
	if got := names(trs); got != "HighLatency:inactive>firing" || trs[0].Labels["service"] != "web" {
		t.Fatalf("implicit: %q", got)
	}
	if !e.Firing("HighLatency", signal.Labels{"service": "web"}) || e.Firing("HighLatency", signal.Labels{"service": "db"}) {
		t.Error("Firing")
	}
	if err := e.Update(mustSpecs(t, engineConds)); err != nil {
		t.Fatal(err)
	}
	hl.Status = detect.AlertResolved
	e.Push(hl, t0.Add(time.Second))
	if got := names(e.Eval(t0.Add(time.Second), store)); got != "HighLatency:firing>inactive" {
		t.Fatalf("after a reload, resolution: %q", got)
	}
	if st := e.Stats(); st.UnmatchedAlerts != 2 || st.Conditions != 5 {
		t.Errorf("stats = %+v", st)
	}
	if got := strings.Join(e.Signals(), ","); got != "host_disk_used_percent,host_memory_used_percent" {
		t.Errorf("Signals() = %s", got)
	}
}

// TestEngineServe: the loop evaluates every interval on the injected clock,
// at once after a push or an event, and delivers transitions in order.
func TestEngineServe(t *testing.T) {
	clk := clocktest.New(t0)
	store := signal.NewStore(signal.Options{})
	var mu sync.Mutex
	var got []detect.Transition
	e := mustEngine(t, engineConds, detect.Options{Clock: clk, Source: store, OnTransition: func(tr detect.Transition) {
		mu.Lock()
		got = append(got, tr)
		mu.Unlock()
	}})
	seen := func() string {
		mu.Lock()
		defer mu.Unlock()
		return names(got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	waitFor(t, "the evaluation timer", func() bool { return clk.Pending() == 1 })

	// A pushed alert is evaluated at once, without the clock moving.
	if err := e.PushAlerts([]detect.ExternalAlert{diskFull("a", detect.AlertFiring)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pushed alert", func() bool { return seen() == "am_disk:inactive>firing" })
	e.Observe(medic.Event{Time: clk.Now(), Kind: medic.EventCrashLoop, Target: "web/0"})
	waitFor(t, "the event", func() bool { return seen() == "am_disk:inactive>firing crashloop:inactive>firing" })

	// A signal is seen at the next tick.
	store.Add("host_memory_used_percent", nil, clk.Now(), 70)
	clk.Advance(time.Second)
	waitFor(t, "the tick", func() bool { return strings.HasSuffix(seen(), "mem_high:inactive>firing") })
	if a := e.Alerts(); len(a) != 3 {
		t.Errorf("Alerts() = %+v", a)
	}
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEngineHistory: what each signal's conditions read back (the longest
// of them), and a trend over a store that keeps only that still fires.
func TestEngineHistory(t *testing.T) {
	e := mustEngine(t, `  a:  {signal: disk_used, above: 90}
  b1: {signal: rss, above: 100}
  b2: {signal: rss, trend: {window: 10m, above_per_hour: 1}}
  c:  {signal: latency, anomaly: {window: 30m, warmup: 10m}}
`, detect.Options{})
	h := e.History()
	want := map[string]time.Duration{"disk_used": 0, "rss": 10 * time.Minute, "latency": config.SignalRetention}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Fatalf("History() = %v, want %v", h, want)
	}
	store := signal.NewStore(signal.Options{Retention: config.SignalRetention})
	store.SetHistory(h)
	var got string
	for i := range 900 {
		at := t0.Add(time.Duration(i) * time.Second)
		store.Add("rss", nil, at, float64(i)) // +3 600 an hour
		store.Add("unread", nil, at, 1)
		got += names(e.Eval(at, store))
	}
	if !strings.Contains(got, "b2:inactive>firing") {
		t.Fatalf("the trend did not fire over the history it asked for: %q", got)
	}
	if st := store.Stats(); st.Points != 601+1 {
		t.Fatalf("store holds %d points, want 602 (10 minutes of rss, the newest of unread)", st.Points)
	}
}
