package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/app"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/ports"
)

const demoConfig = `# medic demo: three demoapp instances with probes.
data_dir: %[1]s
api: {listen: "127.0.0.1:0", tokens_file: tokens.yaml}
services:
  web:
    command: [%[2]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 3
    port: %[3]d
    restart: {policy: always}
    stop: {signal: TERM, grace: 2s}
    proxy: {listen: "127.0.0.1:0", try_timeout: 300ms}
    drills: {allow: true}
    objectives: {rto: 10s, rpo: 0s}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 500ms, timeout: 300ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 250ms, timeout: 200ms, failure_threshold: 1}
`

func demoCmd() *cobra.Command {
	var keep, verbose, noDB, fleetDemo bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run three demo instances, crash one and hang another, and watch medic recover them",
		Long: `Starts three demoapp instances under medic with liveness and readiness probes
(temporary data directory, free loopback ports), then injects a crash and a
hang and prints each detection and recovery with its time. Exits when the
scenario is done (or keeps running with --keep until Ctrl-C); every process
it started is stopped.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fleetDemo {
				ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
				defer stop()
				self, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find the medic binary: %w", err)
				}
				return runDemoFleet(ctx, self, keep, os.Stdout)
			}
			return runDemo(keep, verbose, noDB)
		},
	}
	c.Flags().BoolVar(&keep, "keep", false, "keep running after the scenario until Ctrl-C")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print medic's own log")
	c.Flags().BoolVar(&fleetDemo, "fleet", false, "three agents in one fleet (a 3-member etcd on loopback): kill one host under load and print the recovery")
	c.Flags().BoolVar(&noDB, "no-db", false, "skip the PostgreSQL failover part (it needs postgresql-15 and etcd-server)")
	return c
}

type demo struct {
	quiet atomic.Bool // stop printing events (during the drill suite)
	start time.Time
	mu    sync.Mutex
	subs  []chan medic.Event
}

func (d *demo) watch() chan medic.Event {
	ch := make(chan medic.Event, 256)
	d.mu.Lock()
	d.subs = append(d.subs, ch)
	d.mu.Unlock()
	return ch
}

func (d *demo) onEvent(ev medic.Event) {
	switch {
	case d.quiet.Load():
	case ev.Kind == medic.EventProbe, ev.Kind == medic.EventStopped:
	default:
		fmt.Printf("  %6.2fs  %-9s %-18s %s\n", time.Since(d.start).Seconds(), ev.Target, ev.Kind, trim(ev.Reason, 90))
	}
	d.mu.Lock()
	for _, ch := range d.subs {
		select {
		case ch <- ev:
		default:
		}
	}
	d.mu.Unlock()
}

func runDemo(keep, verbose, noDB bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the medic binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "medic-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, err := freePorts(3)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "medic.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(demoConfig, filepath.Join(dir, "data"), self, port)), 0o644); err != nil {
		return err
	}
	token, err := demoDrillToken(dir)
	if err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	d := &demo{start: time.Now()}
	logOut := io.Discard
	if verbose {
		logOut = os.Stderr
	}
	apiAddr := make(chan net.Addr, 1)
	m := &app.Main{Config: cfg, Logger: slog.New(slog.NewTextHandler(logOut, nil)), OnEvent: d.onEvent,
		Listening: func(a net.Addr) { apiAddr <- a }}
	fmt.Printf("medic demo: 3 demoapp instances on ports %d-%d, data in %s\n", port, port+2, dir)
	fmt.Println("  liveness: GET /healthz/live every 500ms, 2 failures restart; readiness: GET /healthz/ready every 250ms")
	ev := d.watch()
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	var result error
	select {
	case err := <-done:
		return err
	case a := <-apiAddr:
		fmt.Printf("  API on http://%s (try: medic status --addr %s)\n", a, a)
		var proxyAddr string
		for _, p := range m.Proxies() {
			proxyAddr = p.Listen
		}
		fmt.Printf("  proxy on http://%s: a load generator sends it 8 concurrent requests at a time\n\n", proxyAddr)
		result = scenario(ctx, d, ev, port, proxyAddr)
		if result == nil {
			d.quiet.Store(true) // the drills print their own table
			result = demoDrills(ctx, a.String(), token, "web")
		}
		if result == nil && !noDB {
			result = runDemoDB(ctx, self, keep)
		}
	}
	if keep && ctx.Err() == nil {
		fmt.Println("\nstill running; Ctrl-C to stop")
		<-ctx.Done()
	}
	fmt.Println("\nstopping every instance …")
	cancelRun()
	if err := <-done; err != nil {
		return err
	}
	fmt.Println("stopped; no process left behind")
	return result
}

// scenario waits for the instances, then crashes web/0 and hangs web/1, and
// measures detection and recovery from medic's own events.
func scenario(ctx context.Context, d *demo, ev chan medic.Event, port int, proxyAddr string) error {
	if err := waitReady(ctx, ev, 3, 30*time.Second); err != nil {
		return err
	}
	fmt.Printf("\n== all 3 instances ready after %.2fs\n\n", time.Since(d.start).Seconds())
	lg := startLoad(ctx, "http://"+proxyAddr+"/", 8)
	defer lg.stop()
	type row struct {
		fault, target  string
		ttd, ttr       time.Duration
		ok             bool
		requests, errs uint64
	}
	var rows []row
	for _, f := range []struct{ fault, target, path string }{
		{"crash (process exits)", "web/0", "/fault/crash"},
		{"hang (alive, not serving)", "web/1", "/fault/hang"},
	} {
		sleepCtx(ctx, time.Second)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		idx := int(f.target[len(f.target)-1] - '0')
		fmt.Printf("== injecting %s into %s (POST %s)\n", f.fault, f.target, f.path)
		t0 := time.Now()
		go http.Post(fmt.Sprintf("http://127.0.0.1:%d%s", port+idx, f.path), "text/plain", nil)
		r := row{fault: f.fault, target: f.target}
		n0, e0 := lg.counts()
		deadline := time.After(30 * time.Second)
	wait:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-deadline:
				break wait
			case e := <-ev:
				if e.Target != f.target {
					continue
				}
				switch {
				case r.ttd == 0 && (e.Kind == medic.EventRestart || e.Kind == medic.EventCrashLoop || e.Kind == medic.EventStopping):
					r.ttd = time.Since(t0)
				case r.ttd != 0 && e.Kind == medic.EventReady:
					r.ttr, r.ok = time.Since(t0), true
					break wait
				}
			}
		}
		sleepCtx(ctx, 500*time.Millisecond) // let the instance settle back into rotation
		n1, e1 := lg.counts()
		r.requests, r.errs = n1-n0, e1-e0
		fmt.Printf("  client-visible errors through the proxy: %d of %d requests\n", r.errs, r.requests)
		rows = append(rows, r)
		fmt.Println()
	}
	fmt.Println("== summary")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULT\tINSTANCE\tDETECTED AFTER\tSERVING AGAIN AFTER\tCLIENT ERRORS\tRESULT")
	failed := false
	for _, r := range rows {
		res := "recovered"
		if !r.ok {
			res, failed = "NOT RECOVERED", true
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d of %d\t%s\n", r.fault, r.target, ms(r.ttd), ms(r.ttr), r.errs, r.requests, res)
	}
	tw.Flush()
	if failed {
		return fmt.Errorf("demo: an injected fault was not recovered within 30s")
	}
	return nil
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}

func waitReady(ctx context.Context, ev chan medic.Event, n int, timeout time.Duration) error {
	ready := map[string]bool{}
	deadline := time.After(timeout)
	for len(ready) < n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("demo: only %d of %d instances ready after %v", len(ready), n, timeout)
		case e := <-ev:
			if e.Kind == medic.EventReady {
				ready[e.Target] = true
			}
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// freePorts finds n consecutive free loopback ports.
func freePorts(n int) (int, error) { return ports.Free(n) }

// loadGen sends GET requests through the proxy from n workers until stopped,
// counting requests and client-visible errors (non-2xx, socket errors, timeouts).
type loadGen struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	requests uint64
	errors   uint64
}

func startLoad(ctx context.Context, url string, n int) *loadGen {
	ctx, cancel := context.WithCancel(ctx)
	lg := &loadGen{cancel: cancel}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for i := 0; i < n; i++ {
		lg.wg.Add(1)
		go func() {
			defer lg.wg.Done()
			for ctx.Err() == nil {
				resp, err := client.Get(url)
				ok := err == nil && resp.StatusCode < 300
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if ctx.Err() != nil {
					return // a request cut by our own stop is not a client error
				}
				lg.mu.Lock()
				lg.requests++
				if !ok {
					lg.errors++
				}
				lg.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return lg
}

func (lg *loadGen) counts() (uint64, uint64) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	return lg.requests, lg.errors
}

func (lg *loadGen) stop() { lg.cancel(); lg.wg.Wait() }
