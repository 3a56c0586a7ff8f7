package ui_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/canary"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/release"
	"github.com/medic-dev/medic/internal/verdict"
)

// hostileVersion is a version label that is markup and reorders text: the
// page must show it as text, escaped.
const hostileVersion = "v2<img src=x onerror=\"window.pwned=1\">\u202eevil"

// fakeReleases serves a fixed history per service (api.Releases).
type fakeReleases struct{ lists map[string][]release.Release }

func (f fakeReleases) Deploy(context.Context, string, release.Changes, string) (release.Release, error) {
	return release.Release{}, release.ErrInvalid
}
func (f fakeReleases) Rollback(context.Context, string, string, string) (release.Release, error) {
	return release.Release{}, release.ErrNothingToRollBack
}
func (f fakeReleases) List(_ context.Context, service string) ([]release.Release, error) {
	return f.lists[service], nil
}

// fakeCanaries serves GET /v1/canaries with the shape of internal/app's
// handler: one canary report, which the test replaces.
type fakeCanaries struct {
	mu  sync.Mutex
	rep canary.Report
}

func (c *fakeCanaries) set(r canary.Report) {
	c.mu.Lock()
	c.rep = r
	c.mu.Unlock()
}

func (c *fakeCanaries) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	rep := c.rep
	c.mu.Unlock()
	type view struct {
		canary.Report
		Text                  string  `json:"text"`
		TimeToVerdictSeconds  float64 `json:"time_to_verdict_seconds,omitempty"`
		TimeToRollbackSeconds float64 `json:"time_to_rollback_seconds,omitempty"`
	}
	writeJSON(w, map[string]any{"canaries": []view{{Report: rep, Text: rep.Text(),
		TimeToVerdictSeconds: rep.TimeToVerdict().Seconds(), TimeToRollbackSeconds: rep.TimeToRollback().Seconds()}}})
}

// settableTraffic serves proxy figures the test changes.
type settableTraffic struct {
	mu    sync.Mutex
	stats []proxy.Stats
}

func (t *settableTraffic) set(s []proxy.Stats) {
	t.mu.Lock()
	t.stats = s
	t.mu.Unlock()
}

func (t *settableTraffic) Stats() []proxy.Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

func (t *settableTraffic) SetFault(medic.InstanceID, proxy.Fault) error { return nil }

// samples are n requests per group, latencies 20-26 ms; every errEvery-th
// canary request answers 500 (0: none).
func samples(n, errEvery int, start time.Time) (c, b verdict.Sample) {
	c.Start, b.Start = start, start
	for i := range n {
		lat := time.Duration(20+i%7) * time.Millisecond
		st := 200
		if errEvery > 0 && i%errEvery == errEvery-1 {
			st = 500
		}
		c.Outcomes = append(c.Outcomes, verdict.Outcome{Status: st, Latency: lat})
		b.Outcomes = append(b.Outcomes, verdict.Outcome{Status: 200, Latency: lat + time.Duration(i%3)*time.Millisecond})
	}
	return c, b
}

// TestBrowserDeploys: the deploys panel shows a canary under way (its
// step, the proxy's groups and weights, the verdict so far), then the
// same canary rolled back with the metric that failed it, its likelihood
// ratio and why, and the release history with who deployed what and the
// outcome; a hostile version label is shown as text.
func TestBrowserDeploys(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	now := time.Now().UTC()
	f.sup.mu.Lock()
	f.sup.services[0].Strategy = "canary"
	f.sup.services[1].Strategy = "rolling"
	f.sup.mu.Unlock()
	spec := &config.Service{Command: []string{"./web"}}
	dur := func(s float64) *float64 { return &s }
	cnt := func(n int64) *int64 { return &n }
	f.srv.Releases = fakeReleases{lists: map[string][]release.Release{
		"web": {
			{Seq: 3, Service: "web", Version: hostileVersion, Source: "deploy", Spec: spec, Actor: "api:ops", Reason: "deploy v2", Created: now.Add(-time.Minute),
				Outcome: release.Failed, DurationSeconds: dur(3.2), Requests: cnt(318), ClientErrors: cnt(0), Detail: "the verdict failed the canary"},
			{Seq: 2, Service: "web", Version: "v1.9", Source: "deploy", Spec: spec, Actor: "api:alice", Reason: "deploy v1.9", Created: now.Add(-time.Hour),
				Outcome: release.Live, DurationSeconds: dur(2.2), Requests: cnt(178), ClientErrors: cnt(0)},
			{Seq: 1, Service: "web", Version: "r1", Source: "config", Spec: spec, Actor: "medic", Reason: "config at start", Created: now.Add(-2 * time.Hour), Outcome: release.Superseded},
		},
		"worker": {{Seq: 1, Service: "worker", Version: "r1", Source: "config", Spec: spec, Actor: "medic", Created: now.Add(-2 * time.Hour), Outcome: release.Live}},
	}}
	traffic := &settableTraffic{}
	f.srv.Traffic = traffic
	traffic.set([]proxy.Stats{{Service: "web", Mode: "http", Listen: "127.0.0.1:8080", Requests: 1200,
		Instances: []proxy.InstanceStats{{ID: "web/0", Ready: true, InRotation: true}, {ID: "web/1000", Group: "canary", Ready: true, InRotation: true}},
		Groups: []proxy.GroupStats{
			{Group: "stable", Weight: 50, Instances: 3, InRotation: 3, Requests: 900},
			{Group: "canary", Weight: 25, Instances: 1, InRotation: 1, Requests: 40, ByClass: [6]uint64{0, 0, 36, 0, 0, 4}},
			{Group: "baseline", Weight: 25, Instances: 1, InRotation: 1, Requests: 40, ByClass: [6]uint64{0, 0, 40, 0, 0, 0}},
		}}})
	start := now.Add(-10 * time.Second)
	cs, bs := samples(40, 40, start)
	running := canary.Report{Service: "web", From: "v1.9", To: hostileVersion, Actor: "api:ops", Steps: []int{25, 50, 100},
		State:   canary.State{Phase: canary.Stepping, Step: 0, Started: start, TrafficStart: start, Verdict: verdict.Evaluate(verdict.Config{}, cs, bs, now), Reason: "step 1 of 3"},
		Weights: canary.WeightsAt(25), CanaryRequests: 40, CanaryErrors: 1, BaselineRequests: 40,
		Timeline: []canary.Event{{At: start, Kind: "deploy.canary.started", Reason: "canary beside v1.9"}}}
	if running.State.Verdict.Decision != verdict.Continue {
		t.Fatalf("the running canary's verdict is %s, want continue (the test's samples changed?)", running.State.Verdict.Decision)
	}
	cans := &fakeCanaries{}
	cans.set(running)
	f.mounts = append(f.mounts, func(m *http.ServeMux, g api.Guards) { m.Handle("GET /v1/canaries", g.View(cans)) })
	f.rebuild()
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close) // after the browser's cleanup: its event stream must end first
	b := newBrowser(t)
	b.do(t, "open the page", chromedp.Navigate(srv.URL+"/"))
	b.signIn(t, f.op)

	// Under way: the step, the weights and the groups.
	b.waitFor(t, "the canary under way", `document.querySelector('[data-deploy="web"] tr[data-group="canary"]') !== null`)
	web := eval[string](t, b, `document.querySelector('[data-deploy="web"]').innerText`)
	for _, want := range []string{"canary", "deploy under way", "step 1 of 3 (25%)", "stable 50% · canary 25% · baseline 25%", "stepping", "running v1.9"} {
		if !strings.Contains(web, want) {
			t.Errorf("the deploy of web lacks %q:\n%s", want, web)
		}
	}
	if got := eval[string](t, b, `document.querySelector('[data-deploy="web"] tr[data-group="canary"]').innerText`); !strings.Contains(got, "25%") || !strings.Contains(got, "1 of 1") {
		t.Errorf("the canary group's row: %q", got)
	}
	if got := eval[string](t, b, `document.querySelector('[data-deploy="worker"]').innerText`); !strings.Contains(got, "no deploy under way") || !strings.Contains(got, "rolling") {
		t.Errorf("worker's deploy block: %q", got)
	}

	// Rolled back: the deciding verdict, metric by metric.
	cs, bs = samples(80, 10, start)
	cs.Counters, bs.Counters = map[string]float64{"app_backend_errors_total": 2}, map[string]float64{"app_backend_errors_total": 0}
	v := verdict.Evaluate(verdict.Config{Counters: []verdict.Counter{{Name: "app_backend_errors_total"}}}, cs, bs, now)
	if v.Decision != verdict.Fail {
		t.Fatalf("the rolled-back canary's verdict is %s, want fail (the test's samples changed?)", v.Decision)
	}
	done := running
	done.State = canary.State{Phase: canary.RolledBack, Step: 0, Started: start, TrafficStart: start, DecidedAt: start.Add(3 * time.Second), Verdict: v,
		Reason: "roll back: the verdict failed the canary: " + v.Reason}
	done.Weights, done.TrafficBack, done.Ended, done.Outcome = canary.WeightsAt(0), start.Add(3014*time.Millisecond), start.Add(3400*time.Millisecond), "rolled-back"
	done.CanaryRequests, done.CanaryErrors, done.BaselineRequests = 80, 8, 80
	done.Timeline = append(done.Timeline, canary.Event{At: start.Add(3 * time.Second), Kind: "deploy.canary.verdict", Reason: done.State.Reason})
	cans.set(done)
	traffic.set([]proxy.Stats{{Service: "web", Mode: "http", Listen: "127.0.0.1:8080", Requests: 1300}})
	f.sup.record(context.Background(), medic.Event{Kind: canary.EventRolledBack, Target: "web", Actor: "canary", Reason: "traffic back on stable"})
	b.waitFor(t, "the failed verdict", `document.querySelector('[data-deploy="web"] tr[data-metric="errors 5xx"][data-decision="fail"]') !== null`)
	row := eval[string](t, b, `document.querySelector('[data-deploy="web"] tr[data-metric="errors 5xx"]').innerText`)
	for _, want := range []string{"fail", "80 / 80", "10%", "0%", "+10.00 pts", "log LR", ">= 4.55"} {
		if !strings.Contains(row, want) {
			t.Errorf("the errors 5xx row lacks %q:\n%s", want, row)
		}
	}
	// A scraped counter is a rate per request, like the error classes.
	srow := eval[string](t, b, `document.querySelector('[data-deploy="web"] tr[data-metric="scraped app_backend_errors_total"]').innerText`)
	for _, want := range []string{"80 / 80", "2.5%", "0%", "+2.50 pts", "log LR", "rose by 2 over 80 canary requests"} {
		if !strings.Contains(srow, want) {
			t.Errorf("the scraped counter's row lacks %q:\n%s", want, srow)
		}
	}
	var failed verdict.Metric
	for _, m := range v.Metrics {
		if m.Name == "errors 5xx" {
			failed = m
		}
	}
	if !strings.Contains(row, failed.Reason[:20]) {
		t.Errorf("the errors 5xx row lacks the metric's reason %q:\n%s", failed.Reason, row)
	}
	web = eval[string](t, b, `document.querySelector('[data-deploy="web"]').innerText`)
	for _, want := range []string{"no deploy under way", "rolled-back", "verdict after 3s", "traffic back after 3s", "latency median", "p = "} {
		if !strings.Contains(web, want) {
			t.Errorf("the deploy of web lacks %q:\n%s", want, web)
		}
	}

	// The history: who, what, when, the outcome; the hostile label as text.
	hist := eval[string](t, b, `document.querySelector('[data-deploy="web"] tr[data-release="3"]').innerText`)
	for _, want := range []string{"api:ops", "deploy", "failed", "3.2s", "0 of 318", `v2<img src=x onerror="window.pwned=1">\u202eevil`} {
		if !strings.Contains(hist, want) {
			t.Errorf("release 3 lacks %q:\n%s", want, hist)
		}
	}
	if n := eval[int](t, b, `document.querySelectorAll("#deploys img, #deploys script").length`); n != 0 {
		t.Errorf("a version label became %d elements", n)
	}
	if eval[bool](t, b, `window.pwned === 1`) {
		t.Error("a version label ran script")
	}
	if n := eval[int](t, b, `document.querySelectorAll('[data-deploy="web"] tr[data-release]').length`); n != 3 {
		t.Errorf("web's history shows %d releases, want 3", n)
	}

	if v := b.axe(t); len(v) > 0 {
		t.Errorf("axe-core: %d serious violations:\n%s", len(v), strings.Join(v, "\n"))
	}
	b.do(t, "to the deploys", chromedp.Evaluate[chromedp.Void](`document.getElementById("deploys").scrollIntoView()`))
	files := b.screenshots(t, artifacts(t), "deploys")
	t.Logf("screenshots: %s", strings.Join(files, " "))
	if errs := b.errors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
