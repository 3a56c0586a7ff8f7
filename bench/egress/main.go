// Command egress measures what medic's dependency listener adds to a call:
// the same GET, sequentially on keep-alive connections, directly to a local
// dependency, through an egress listener in front of it, and through medic's
// ingress proxy (internal/proxy, its default fast data plane, access log
// discarded) in front of the same dependency, in interleaved rounds (so a
// burst of noise falls on all alike). It prints the median latency of each,
// the median added, and the CPU per call each costs (process CPU time of a
// round through it, less that of a direct round, per call): the dependency
// listener's against the ingress proxy's, from the same run. Everything
// listens on 127.0.0.1 and stops with the program; the run is bounded by
// -calls × -rounds × 3.
//
//	go run ./bench/egress -calls 5000 -rounds 5
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/egress"
	"github.com/medic-dev/medic/internal/proxy"
)

func main() {
	calls := flag.Int("calls", 5000, "calls per round and path (at most 1e6)")
	rounds := flag.Int("rounds", 5, "interleaved rounds (at most 100)")
	flag.Parse()
	if *calls < 1 || *calls > 1e6 || *rounds < 1 || *rounds > 100 {
		fmt.Fprintln(os.Stderr, "egress bench: -calls 1..1e6, -rounds 1..100")
		os.Exit(2)
	}
	if err := run(*calls, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "egress bench:", err)
		os.Exit(1)
	}
}

func run(calls, rounds int) error {
	// The dependency: a small fixed answer.
	body := []byte(`{"ok":true,"items":[1,2,3]}`)
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})}
	go backend.Serve(bln)
	defer backend.Close()

	// The listener: defaults of an internal dependency (timeout 3s, retries 2,
	// breaker 5 in 30s, bulkhead 100), on a free port.
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	listen := pln.Addr().String()
	pln.Close()
	dep := &config.Dependency{URL: "http://" + bln.Addr().String(), Listen: listen}
	dep.SetDefaults()
	cfg := &config.Config{Services: map[string]*config.Service{"app": {Command: []string{"x"}, Dependencies: map[string]*config.Dependency{"dep": dep}}}}
	set, err := egress.New(egress.Options{Config: cfg})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- set.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	// The ingress proxy in front of the same dependency, with its defaults.
	quiet := slog.New(slog.DiscardHandler)
	px, err := proxy.New(proxy.Options{Service: "app", Config: &config.Proxy{Listen: "127.0.0.1:0"}, Logger: quiet, AccessLog: quiet})
	if err != nil {
		return err
	}
	px.SetBackend("app/0", bln.Addr().String(), true)
	pdone := make(chan error, 1)
	go func() { pdone <- px.Serve(ctx) }()
	defer func() { cancel(); <-pdone }()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	direct, via, ingress := "http://"+bln.Addr().String()+"/items", "http://"+listen+"/items", "http://"+px.Addr().String()+"/items"
	paths := []string{direct, via, ingress}
	lats := make([][]float64, len(paths))
	cpus := make([]time.Duration, len(paths))
	for r := 0; r < rounds; r++ {
		for k := range paths {
			i := (k + r) % len(paths) // each path in each place of the order in turn
			lat, cpu, err := round(client, paths[i], calls)
			if err != nil {
				return err
			}
			lats[i], cpus[i] = append(lats[i], lat...), cpus[i]+cpu
		}
	}
	n := float64(calls * rounds)
	md, mv, mi := median(lats[0]), median(lats[1]), median(lats[2])
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
	fmt.Printf("calls: %d per path (%d rounds × %d, interleaved), sequential, keep-alive\n", calls*rounds, rounds, calls)
	fmt.Printf("direct:                    median %7.1f µs  p99 %7.1f µs\n", md, pct(lats[0], 0.99))
	fmt.Printf("through the dep. listener: median %7.1f µs  p99 %7.1f µs\n", mv, pct(lats[1], 0.99))
	fmt.Printf("through the ingress proxy: median %7.1f µs  p99 %7.1f µs\n", mi, pct(lats[2], 0.99))
	fmt.Printf("added:                     median %7.1f µs by the dependency listener (target ≤ 100 µs), %.1f µs by the ingress proxy\n", mv-md, mi-md)
	fmt.Printf("CPU per call:              direct %.1f µs, through the listener %.1f µs, through the ingress proxy %.1f µs\n",
		per(cpus[0]), per(cpus[1]), per(cpus[2]))
	fmt.Printf("CPU per call added:        dependency listener %.1f µs, ingress proxy %.1f µs (ratio %.2f)\n",
		per(cpus[1]-cpus[0]), per(cpus[2]-cpus[0]), float64(cpus[1]-cpus[0])/float64(cpus[2]-cpus[0]))
	st := set.Stats()[0]
	fmt.Printf("listener saw: %v, breaker %s\n", st.Calls, st.State)
	return nil
}

// round makes n sequential calls to url and returns their latencies (µs) and the process CPU time spent.
func round(c *http.Client, url string, n int) ([]float64, time.Duration, error) {
	lat := make([]float64, 0, n)
	c0 := cpuTime()
	for i := 0; i < n; i++ {
		t := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return nil, 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return nil, 0, fmt.Errorf("GET %s: %d", url, resp.StatusCode)
		}
		lat = append(lat, float64(time.Since(t).Nanoseconds())/1e3)
	}
	return lat, cpuTime() - c0, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(xs []float64) float64 { return pct(xs, 0.5) }

func pct(xs []float64, q float64) float64 {
	v := slices.Clone(xs)
	slices.Sort(v)
	return v[min(len(v)-1, int(q*float64(len(v))))]
}
