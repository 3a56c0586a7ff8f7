package proxy_test

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// capacity is a backend that serves workers requests at a time, each taking
// work; the rest queue without bound, as a real overloaded service does.
func capacity(workers int, work time.Duration) http.HandlerFunc {
	sem := make(chan struct{}, workers)
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case sem <- struct{}{}:
		case <-r.Context().Done():
			return
		}
		time.Sleep(work) // the service's own work, not test synchronisation
		<-sem
		w.WriteHeader(http.StatusOK)
	}
}

// openLoop sends rate requests per second for d regardless of answers (an
// open-loop load: arrivals do not wait for responses) and returns the results.
func openLoop(c *http.Client, url string, rate int, d time.Duration) []result {
	var (
		mu  sync.Mutex
		out []result
		wg  sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	for now := range tick.C {
		if now.After(end) {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := do(c, http.MethodGet, url, nil, nil)
			mu.Lock()
			out = append(out, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[(len(ds)*99)/100]
}

func TestSheddingUnderOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("4 s load test")
	}
	cfg := baseConfig()
	cfg.Shed = config.ProxyShed{Enabled: boolp(true), InitialLimit: 20, MinLimit: 2, MaxLimit: 200} // the default tolerance
	h := mustStart(t, cfg, nil)
	// Capacity: 2 workers × 20 ms = 100 requests/s.
	h.p.SetBackend("web/0", backend(t, capacity(2, 20*time.Millisecond)), true)
	c := client(t)
	c.Timeout = 5 * time.Second

	normal := openLoop(c, h.url+"/", 40, time.Second) // 40% load: learns the baseline
	var normalLat []time.Duration
	for _, r := range normal {
		if r.status == 200 {
			normalLat = append(normalLat, r.dur)
		}
	}
	overStart := time.Now()
	over := openLoop(c, h.url+"/", 200, 3*time.Second) // 2× capacity
	var admitted, steady []time.Duration
	shed, other := 0, 0
	for _, r := range over {
		switch {
		case r.status == 200:
			admitted = append(admitted, r.dur)
			if r.start.Sub(overStart) > 500*time.Millisecond {
				steady = append(steady, r.dur)
			}
		case r.status == 503 && r.header.Get("Retry-After") != "":
			shed++
		default:
			other++
			t.Logf("unexpected: %d %v after %v", r.status, r.err, r.dur)
		}
	}
	np99, ap99, sp99 := p99(normalLat), p99(admitted), p99(steady)
	t.Logf("normal p99 %v; overload: %d admitted (p99 %v, after 0.5 s %v), %d shed, %d other; limit now %d",
		np99, len(admitted), ap99, sp99, shed, other, h.p.Stats().ConcurrencyLimit)
	if shed == 0 {
		t.Fatal("nothing shed at 2× capacity")
	}
	if other > 0 {
		t.Fatalf("%d requests neither admitted nor shed with Retry-After", other)
	}
	// Without shedding the queue grows by 100 requests a second, so by the end
	// every request would wait about 3 s. With it, the backend's queue is bounded
	// by the limit. The bound is loose because this machine may be shared; the
	// benchmark (bench/proxy) measures the figures on a quiet machine.
	if sp99 > time.Second || ap99 > 2*time.Second {
		t.Fatalf("admitted p99 %v (after convergence %v) under overload: requests are queueing", ap99, sp99)
	}
	if len(admitted) < 100 {
		t.Fatalf("only %d requests admitted in 3 s; capacity is about 300", len(admitted))
	}
}
