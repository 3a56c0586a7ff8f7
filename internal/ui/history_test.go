package ui_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/sqlite"
	"github.com/medic-dev/medic/internal/supervise"
	"github.com/medic-dev/medic/internal/ui"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func TestDownsample(t *testing.T) {
	pts := []ui.Point{
		{T: t0.Unix() - 5, V: 100},                      // before the range: ignored
		{T: t0.Unix(), V: 1}, {T: t0.Unix() + 10, V: 3}, // bucket 0: mean 2
		// bucket 1 (t0+30s…): empty, a gap
		{T: t0.Unix() + 60, V: 7}, {T: t0.Unix() + 89, V: 9}, // bucket 2: mean 8
		{T: t0.Unix() + 90, V: 1000}, // past the last bucket: ignored
	}
	got := ui.Downsample(pts, t0, 30*time.Second, 3)
	want := []float64{2, math.NaN(), 8}
	if len(got) != 3 {
		t.Fatalf("len = %d", len(got))
	}
	for i, w := range want {
		switch {
		case math.IsNaN(w) && got[i] != nil:
			t.Errorf("bucket %d = %v, want a gap", i, *got[i])
		case !math.IsNaN(w) && (got[i] == nil || *got[i] != w):
			t.Errorf("bucket %d = %v, want %v", i, got[i], w)
		}
	}
	if g := ui.Downsample(nil, t0, time.Second, 4); len(g) != 4 || g[0] != nil {
		t.Fatalf("no points: %v", g)
	}
}

// snapshots returns proxy and supervisor figures after n periods of 10 s
// at 50 requests/s with 1 error/s, and an instance using half a core.
func snapshot(n int) ui.Snapshot {
	started := t0.Add(-time.Hour)
	return ui.Snapshot{
		Services: []supervise.ServiceStatus{{Name: "web", Desired: 2, Ready: 2, Instances: []supervise.InstanceStatus{
			{ID: "web/0", State: medic.StateRunning, PID: 10, StartedAt: started, RSSBytes: uint64(100+n) << 20, CPU: float64(n) * 5},
			{ID: "web/1", State: medic.StateStopped}, // no process: no samples
		}}},
		Proxies: []proxy.Stats{{Service: "web", Requests: uint64(n * 500), Errors: uint64(n * 10), Retries: uint64(n * 20), Shed: 0,
			Instances: []proxy.InstanceStats{{ID: "web/0", Breaker: proxy.Open}, {ID: "web/1"}}}},
		// Every request takes between 10 and 25 ms: the p99 lies in that bucket.
		Latency: map[string]ui.Histogram{"web": {Bounds: []float64{0.01, 0.025, 0.05}, Counts: []uint64{0, uint64(n * 500), uint64(n * 500)}, Count: uint64(n * 500)}},
	}
}

func TestSamplerRatesAndHistoryAPI(t *testing.T) {
	fc := clocktest.New(t0)
	db, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hist := ui.NewHistory(db, time.Hour)
	n := 0
	u := ui.New(ui.Options{Clock: fc, History: hist, Sample: func() ui.Snapshot { return snapshot(n) }})
	for n = 0; n <= 6; n++ {
		u.SampleOnce(context.Background())
		fc.Advance(10 * time.Second)
	}
	got, err := hist.Query(context.Background(), nil, "", t0, t0.Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("a query naming no series returned %d", len(got))
	}
	got, err = hist.Query(context.Background(), []string{"service/web/rps"}, "instance/web/0/", t0, t0.Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	check := func(series string, points int, want float64) {
		t.Helper()
		p := got[series]
		if len(p) != points || math.Abs(p[len(p)-1].V-want) > 1e-9 {
			t.Errorf("%s = %v, want %d points ending at %v", series, p, points, want)
		}
	}
	check("service/web/rps", 6, 50) // no rate from the first sample
	check("instance/web/0/cpu", 6, 0.5)
	check("instance/web/0/rss_bytes", 7, float64(106<<20))
	if _, ok := got["instance/web/1/rss_bytes"]; ok {
		t.Error("a stopped instance has samples")
	}

	// The API: every series on one time axis.
	mux := http.NewServeMux()
	pass := func(h http.Handler) http.Handler { return h }
	u.Mount(mux, api.Guards{View: pass, Operate: pass, Admin: pass})
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/v1/history?series=service/web/rps,service/web/error_rate,service/web/p99_seconds,service/web/ejected&range=10m&points=20", nil))
	if w.Code != 200 {
		t.Fatalf("GET /v1/history: HTTP %d %s", w.Code, w.Body)
	}
	var doc ui.HistoryDoc
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Step != 30 || len(doc.Times) != 20 || doc.Times[1]-doc.Times[0] != 30 {
		t.Fatalf("axis: step %d, %d times", doc.Step, len(doc.Times))
	}
	last := func(name string) float64 {
		s := doc.Series[name]
		for i := len(s) - 1; i >= 0; i-- {
			if s[i] != nil {
				return *s[i]
			}
		}
		t.Fatalf("%s: no value in %v", name, s)
		return 0
	}
	if v := last("service/web/error_rate"); math.Abs(v-0.02) > 1e-9 {
		t.Errorf("error rate = %v, want 0.02", v)
	}
	if v := last("service/web/p99_seconds"); v <= 0.01 || v > 0.025 {
		t.Errorf("p99 = %v, want within the 10–25 ms bucket", v)
	}
	if v := last("service/web/ejected"); v != 1 {
		t.Errorf("ejected = %v, want 1", v)
	}
	for _, bad := range []string{"/v1/history", "/v1/history?series=a%20b", "/v1/history?series=x&points=1", "/v1/history?series=x&range=1s"} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", bad, nil))
		if w.Code != 400 {
			t.Errorf("GET %s: HTTP %d, want 400", bad, w.Code)
		}
	}

	// Older than the history's reach: deleted as new samples arrive.
	fc.Advance(2 * time.Hour)
	u.SampleOnce(context.Background())
	got, _ = hist.Query(context.Background(), nil, "service/", t0, t0.Add(4*time.Hour), 100)
	for name, p := range got {
		for _, pt := range p {
			if pt.T < fc.Now().Add(-time.Hour).Unix() {
				t.Fatalf("%s keeps a sample from %v", name, time.Unix(pt.T, 0))
			}
		}
	}
}

func TestSamplerSkipsRatesAcrossRestarts(t *testing.T) {
	fc := clocktest.New(t0)
	db, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hist := ui.NewHistory(db, time.Hour)
	snaps := []ui.Snapshot{snapshot(5), snapshot(1)} // counters went down: the proxy and the process restarted
	snaps[1].Services[0].Instances[0].StartedAt = t0
	i := 0
	u := ui.New(ui.Options{Clock: fc, History: hist, Sample: func() ui.Snapshot { return snaps[i] }})
	u.SampleOnce(context.Background())
	fc.Advance(10 * time.Second)
	i = 1
	u.SampleOnce(context.Background())
	got, _ := hist.Query(context.Background(), []string{"service/web/rps", "instance/web/0/cpu", "service/web/p99_seconds"}, "", t0, t0.Add(time.Hour), 100)
	if len(got["service/web/rps"]) != 0 || len(got["instance/web/0/cpu"]) != 0 {
		t.Fatalf("rates across a reset: %v", got)
	}
	if len(got["service/web/p99_seconds"]) != 1 { // a reset histogram counts from zero
		t.Fatalf("p99 across a reset: %v", got)
	}
}

func TestServeSamplesOnTheClock(t *testing.T) {
	fc := clocktest.New(t0)
	db, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hist := ui.NewHistory(db, time.Hour)
	u := ui.New(ui.Options{Clock: fc, History: hist, Sample: func() ui.Snapshot { return snapshot(1) }, SampleEvery: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Serve(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fc.Pending() > 0 {
			fc.Advance(10 * time.Second)
		}
		got, _ := hist.Query(context.Background(), []string{"service/web/ready"}, "", t0, t0.Add(time.Hour), 10)
		if len(got["service/web/ready"]) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Serve stored no sample after the period")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
