package signal_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/signal"
)

// waitFor polls cond until it holds or the deadline passes.
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

// serve runs a collector's Serve until the test ends and checks that it
// returns once its context is cancelled.
func serve(t *testing.T, s interface{ Serve(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
}

func TestPollerOnFakeClock(t *testing.T) {
	clk := clocktest.New(t0)
	store := signal.NewStore(signal.Options{})
	var calls atomic.Int32
	p := signal.Poll(store, clk, "supervisor", 10*time.Second, func(now time.Time) []signal.Sample {
		n := calls.Add(1)
		return []signal.Sample{
			{Name: signal.InstanceRSSBytes, Labels: signal.Labels{"service": "web", "instance": "web/0"}, V: float64(n)},
			{Name: signal.ServiceReadyInstances, Labels: signal.Labels{"service": "web"}, T: now.Add(-time.Second), V: 3},
		}
	})
	serve(t, p)
	for i := 1; i <= 3; i++ {
		waitFor(t, "the poller's timer", func() bool { return clk.Pending() == 1 })
		clk.Advance(10 * time.Second)
		waitFor(t, "a collection", func() bool { return calls.Load() == int32(i) })
	}
	waitFor(t, "the poller's timer", func() bool { return clk.Pending() == 1 })
	got := store.Range(signal.InstanceRSSBytes, nil, t0, clk.Now())
	if len(got) != 1 || len(got[0].Points) != 3 || got[0].Points[2].V != 3 {
		t.Fatalf("rss series = %+v", got)
	}
	// Stamped with the collection time, which moves by the period.
	if d := got[0].Points[2].T.Sub(got[0].Points[1].T); d != 10*time.Second {
		t.Errorf("collections %v apart, want 10s", d)
	}
	// A sample with its own time keeps it.
	if l := store.Latest(signal.ServiceReadyInstances, nil); len(l) != 1 || !l[0].T.Equal(got[0].Points[2].T.Add(-time.Second)) {
		t.Errorf("ready = %+v", l)
	}
	// A collection that overruns periods skips them instead of bursting.
	clk.Advance(35 * time.Second)
	waitFor(t, "a collection", func() bool { return calls.Load() == 4 })
	waitFor(t, "missed periods", func() bool { return p.Missed() == 3 })
}

func TestHostCollect(t *testing.T) {
	var logs bytes.Buffer
	h := &signal.Host{
		Paths: []string{"/data", "/missing"},
		Log:   slog.New(slog.NewTextHandler(&logs, nil)),
		DiskUsage: func(_ context.Context, path string) (*disk.UsageStat, error) {
			if path == "/missing" {
				return nil, errors.New("no such file or directory")
			}
			return &disk.UsageStat{Path: path, Total: 100 << 30, Free: 8 << 30, UsedPercent: 92, InodesUsedPercent: 3}, nil
		},
		Memory: func(context.Context) (*mem.VirtualMemoryStat, error) {
			return &mem.VirtualMemoryStat{UsedPercent: 40, Available: 6 << 30}, nil
		},
	}
	for range 3 {
		got := h.Collect(context.Background(), t0)
		want := map[string]float64{
			`host_disk_used_percent{path="/data"}`:        92,
			`host_disk_free_bytes{path="/data"}`:          8 << 30,
			`host_disk_total_bytes{path="/data"}`:         100 << 30,
			`host_disk_inodes_used_percent{path="/data"}`: 3,
			`host_memory_used_percent{}`:                  40,
			`host_memory_available_bytes{}`:               6 << 30,
		}
		if len(got) != len(want) {
			t.Fatalf("got %d samples, want %d: %+v", len(got), len(want), got)
		}
		for _, s := range got {
			if w, ok := want[signal.SeriesKey(s.Name, s.Labels)]; !ok || w != s.V || !s.T.Equal(t0) {
				t.Errorf("unexpected sample %s = %v at %v", signal.SeriesKey(s.Name, s.Labels), s.V, s.T)
			}
		}
	}
	if n := strings.Count(logs.String(), "no such file"); n != 1 {
		t.Errorf("the failing path was logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestHostReal measures a real directory with gopsutil.
func TestHostReal(t *testing.T) {
	store := signal.NewStore(signal.Options{})
	h := &signal.Host{Paths: []string{t.TempDir()}, Store: store, Clock: clocktest.New(t0)}
	got := h.Collect(context.Background(), t0)
	var used, free float64 = -1, -1
	for _, s := range got {
		switch s.Name {
		case signal.HostDiskUsedPercent:
			used = s.V
		case signal.HostDiskFreeBytes:
			free = s.V
		}
	}
	if used < 0 || used > 100 || free <= 0 {
		t.Errorf("used %v%%, free %v bytes: %+v", used, free, got)
	}
}

const exposition = `# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200",instance="pod-a"} 1027
http_requests_total{code="500",instance="pod-a"} 3
# HELP noise_total Not wanted.
# TYPE noise_total counter
noise_total{id="1"} 1
noise_total{id="2"} 2
# TYPE queue_depth gauge
queue_depth 7 1700000000000
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.99"} 0.25
rpc_seconds_sum 17
rpc_seconds_count 100
# TYPE req_seconds histogram
req_seconds_bucket{le="0.1"} 5
req_seconds_bucket{le="+Inf"} 9
req_seconds_sum 2.5
req_seconds_count 9
`

func TestParseText(t *testing.T) {
	target := signal.Labels{"service": "web", "instance": "web/0"}
	got, err := signal.ParseText(strings.NewReader(exposition),
		[]string{"http_requests_total", "queue_depth", "rpc_seconds", "req_seconds"}, target, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`http_requests_total{code="200",exported_instance="pod-a",instance="web/0",service="web"}`: 1027,
		`http_requests_total{code="500",exported_instance="pod-a",instance="web/0",service="web"}`: 3,
		`queue_depth{instance="web/0",service="web"}`:                                              7,
		`rpc_seconds{instance="web/0",quantile="0.99",service="web"}`:                              0.25,
		`rpc_seconds_sum{instance="web/0",service="web"}`:                                          17,
		`rpc_seconds_count{instance="web/0",service="web"}`:                                        100,
		`req_seconds_bucket{instance="web/0",le="0.1",service="web"}`:                              5,
		`req_seconds_bucket{instance="web/0",le="+Inf",service="web"}`:                             9,
		`req_seconds_sum{instance="web/0",service="web"}`:                                          2.5,
		`req_seconds_count{instance="web/0",service="web"}`:                                        9,
	}
	have := map[string]float64{}
	for _, s := range got {
		have[signal.SeriesKey(s.Name, s.Labels)] = s.V
	}
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			t.Errorf("%s = %v (present %v), want %v", k, hv, ok, v)
		}
	}
	if len(have) != len(want) {
		t.Errorf("got %d series, want %d: %v", len(have), len(want), have)
	}

	if _, err := signal.ParseText(strings.NewReader(exposition), []string{"noise_total"}, nil, 100); !errors.Is(err, signal.ErrTooLarge) {
		t.Errorf("over the size limit: err = %v, want ErrTooLarge", err)
	}
	if _, err := signal.ParseText(strings.NewReader("# TYPE x gauge\nx{ 1\n"), []string{"x"}, nil, 1<<20); err == nil {
		t.Error("a malformed wanted line parsed without error")
	}
	if got, err := signal.ParseText(strings.NewReader("# TYPE x gauge\nx{ 1\n"), []string{"y"}, nil, 1<<20); err != nil || len(got) != 0 {
		t.Errorf("a malformed unwanted line: %v, %v; want it skipped", got, err)
	}
}

func TestScraper(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
		w.Write([]byte(exposition))
	}))
	t.Cleanup(srv.Close)

	clk := clocktest.New(t0)
	store := signal.NewStore(signal.Options{})
	target := signal.Labels{"service": "web", "instance": "web/0"}
	s := &signal.Scraper{URL: srv.URL + "/metrics", Metrics: []string{"queue_depth"}, Labels: target,
		Clock: clk, Store: store, Log: slog.New(slog.DiscardHandler)}
	s.Step(context.Background(), t0)
	if got := store.Latest("queue_depth", target); len(got) != 1 || got[0].V != 7 || !got[0].T.Equal(t0) {
		t.Errorf("queue_depth = %+v", got)
	}
	if got := store.Names(); strings.Join(got, ",") != "queue_depth,scrape_duration_seconds,scrape_up" {
		t.Errorf("signals = %v: only the wanted family and the scrape's own", got)
	}
	if up := store.Latest(signal.ScrapeUp, target); len(up) != 1 || up[0].V != 1 {
		t.Errorf("scrape_up = %+v", up)
	}
	status.Store(500)
	s.Step(context.Background(), t0.Add(10*time.Second))
	if up := store.Latest(signal.ScrapeUp, target); up[0].V != 0 || s.Failures() != 1 {
		t.Errorf("after a 500: scrape_up = %v, failures %d", up[0].V, s.Failures())
	}
}

// TestScraperTimeout: the timeout runs on the injected clock.
func TestScraperTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	clk := clocktest.New(t0)
	s := &signal.Scraper{URL: srv.URL, Metrics: []string{"x"}, Timeout: 2 * time.Second, Clock: clk,
		Store: signal.NewStore(signal.Options{})}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Scrape(context.Background())
		errc <- err
	}()
	waitFor(t, "the timeout timer", func() bool { return clk.Pending() == 1 })
	clk.Advance(2 * time.Second)
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "timed out after 2s") {
			t.Errorf("err = %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Scrape did not return after its timeout")
	}
}
