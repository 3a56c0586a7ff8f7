// Package demoapp is a small HTTP service that crashes, hangs, leaks, slows
// down or fails on command. medic's drills, tests and benchmarks supervise it
// (`medic demoapp --listen ADDR`) to prove each recovery with a real process.
//
// Endpoints:
//
//	GET  /                   200 {"instance": ID, "pid": PID}; slowed and failed by the faults below
//	GET  /healthz/live       200 "ok"
//	GET  /healthz/ready      200 "ready", 503 while the unready fault is set
//	GET  /fault              200 the active faults as JSON (State)
//	POST /fault/crash        202, then the process exits with status 2
//	POST /fault/hang         202, then every request blocks until shutdown; only a restart clears it
//	POST /fault/unready      readiness answers 503 until reset
//	POST /fault/leak         ?mb_per_s=N (default 10): allocate and touch memory steadily, up to a bound
//	POST /fault/slow         ?ms=N: add N ms to GET /
//	POST /fault/error        ?rate=F: GET / answers 500 with probability F
//	POST /fault/reset        clear unready, leak, slow and error
//
// A wrong method answers 405, an unknown path 404, and a missing, malformed or
// unknown query parameter 400 with a message naming it.
//
// With NOTIFY_SOCKET set, the service speaks the sd_notify protocol: READY=1
// once it listens, WATCHDOG=1 every WATCHDOG_USEC/2 until it hangs, and
// STOPPING=1 when it shuts down.
package demoapp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/clock"
)

// DefaultLeakLimit bounds the memory the leak fault holds: enough to trip any
// RSS threshold, small enough not to take the host down with it.
const DefaultLeakLimit int64 = 2 << 30

// shutdownGrace bounds the graceful shutdown of in-flight requests.
const shutdownGrace = 5 * time.Second

// Options configures the demo service. The zero value is usable: every field
// has a default.
type Options struct {
	// Listen is the TCP address Run listens on, e.g. "127.0.0.1:9100".
	Listen string
	// ID is the instance name reported by GET /. Default: $MEDIC_INSTANCE
	// (set by medic for each instance), else Listen, else the listener's address.
	ID string
	// StartupDelay makes Run wait this long before it listens, like a program
	// loading its state: connections are refused meanwhile. Default 0.
	StartupDelay time.Duration
	// Clock times every wait (startup delay, slow responses, watchdog, leak).
	// Default clock.Real.
	Clock clock.Clock
	// Logger receives startup, shutdown and fault records. Default slog.Default().
	Logger *slog.Logger
	// Exit ends the process on /fault/crash. Default os.Exit; tests inject
	// a recorder so that they survive the crash.
	Exit func(code int)
	// Getenv reads MEDIC_INSTANCE, NOTIFY_SOCKET, WATCHDOG_USEC and
	// WATCHDOG_PID. Default os.Getenv.
	Getenv func(key string) string
	// LeakLimit bounds the bytes the leak fault holds. Default DefaultLeakLimit.
	LeakLimit int64
	// Latency is the release's own time to answer GET /: each request
	// takes Latency × e^(LatencySpread·Z), Z standard normal (log-normal
	// around Latency). Default 0: at once. It is no fault: /fault/reset
	// keeps it. Deploy drills run a canary with more of it.
	Latency time.Duration
	// LatencySpread is the σ of the log-normal latency. Default 0: exactly Latency.
	LatencySpread float64
	// ErrorRate is the release's own share of GET / answered 500, 0 to 1
	// (kept by /fault/reset, like Latency). Default 0.
	ErrorRate float64
	// EventRate is the share of GET / that count one demo_backend_errors_total
	// (GET /metrics, Prometheus text) while still answering 200: a regression
	// only an instance's own metric shows. 0 to 1. Default 0.
	EventRate float64
	// Grandchildren is how many child processes (sleep) Run starts and
	// leaves behind: a supervisor must find and stop them with the instance.
	// Default 0.
	Grandchildren int
	// Setsid makes Run start one more child in a session of its own
	// (setsid): out of the instance's process group, found only through its
	// cgroup. Default false.
	Setsid bool
}

// MaxGrandchildren bounds Options.Grandchildren.
const MaxGrandchildren = 64

// spawnGrandchildren starts the processes Grandchildren and Setsid ask for
// and returns their pids; they are not waited for (they outlive demoapp
// unless its supervisor stops them).
func spawnGrandchildren(o Options) ([]int, error) {
	if o.Grandchildren < 0 || o.Grandchildren > MaxGrandchildren {
		return nil, fmt.Errorf("demoapp: grandchildren %d: want 0 to %d", o.Grandchildren, MaxGrandchildren)
	}
	var pids []int
	start := func(setsid bool) error {
		cmd := exec.Command("sleep", "86400")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: setsid}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("demoapp: start a grandchild: %w", err)
		}
		pids = append(pids, cmd.Process.Pid)
		go cmd.Wait() // reaped if it ends first
		return nil
	}
	for range o.Grandchildren {
		if err := start(false); err != nil {
			return pids, err
		}
	}
	if o.Setsid {
		if err := start(true); err != nil {
			return pids, err
		}
	}
	return pids, nil
}

// CrashExitCode is the status the process exits with on /fault/crash.
const CrashExitCode = 2

// Run waits StartupDelay, listens on o.Listen and serves until ctx ends, then
// shuts down gracefully. It returns nil after a shutdown caused by ctx, and an
// error if it cannot listen or the server fails.
func Run(ctx context.Context, o Options) error {
	c := clock.Or(o.Clock)
	if o.StartupDelay > 0 {
		t := c.NewTimer(o.StartupDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("demoapp: listen on %q: %w", o.Listen, err)
	}
	if pids, err := spawnGrandchildren(o); err != nil {
		ln.Close()
		return err
	} else if len(pids) > 0 && o.Logger != nil {
		o.Logger.Info("started grandchildren", "pids", pids, "setsid", o.Setsid)
	}
	return New(o).Serve(ctx, ln)
}

// App is one demo service instance. It is an http.Handler, so tests can mount
// it on httptest.Server; Serve adds what needs a lifetime: the leak loop, the
// sd_notify messages and graceful shutdown. Create it with New.
type App struct {
	id        string
	pid       int
	clock     clock.Clock
	log       *slog.Logger
	exit      func(int)
	getenv    func(string) string
	leakLimit int64
	mux       *http.ServeMux
	depClient *http.Client  // GET /dep/{name}
	workers   chan struct{} // slots of the worker pool; nil: unlimited (see WorkersEnv)

	done      chan struct{} // closed when Serve begins shutting down: releases hung requests
	serveOnce sync.Once
	faults    faults

	latency       time.Duration
	latencySpread float64
	ownErrorRate  float64
	eventRate     float64
	events        atomic.Int64 // demo_backend_errors_total
}

// New returns an App configured by o. Nothing runs until Serve or ServeHTTP.
func New(o Options) *App {
	a := &App{
		id:        o.ID,
		pid:       os.Getpid(),
		clock:     clock.Or(o.Clock),
		log:       o.Logger,
		exit:      o.Exit,
		getenv:    o.Getenv,
		leakLimit: o.LeakLimit,
		done:      make(chan struct{}),

		latency:       o.Latency,
		latencySpread: o.LatencySpread,
		ownErrorRate:  o.ErrorRate,
		eventRate:     o.EventRate,
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.exit == nil {
		a.exit = os.Exit
	}
	if a.getenv == nil {
		a.getenv = os.Getenv
	}
	if a.id == "" {
		a.id = a.getenv("MEDIC_INSTANCE")
	}
	if a.id == "" {
		a.id = o.Listen
	}
	if a.leakLimit <= 0 {
		a.leakLimit = DefaultLeakLimit
	}
	a.faults.kick = make(chan struct{}, 1)
	a.mux = a.routes()
	a.depClient = newDepClient()
	a.workers = workers(a.getenv)
	return a
}

// Serve serves HTTP on ln until ctx ends or the server fails, then releases
// hung requests, sends STOPPING=1, shuts the server down within 5 s, stops
// its loops and frees leaked memory. It closes ln. It returns nil after a
// shutdown caused by ctx. Serve may be called once per App.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	first := false
	a.serveOnce.Do(func() { first = true })
	if !first {
		ln.Close()
		return fmt.Errorf("demoapp: serve %s: App already served", ln.Addr())
	}
	if a.id == "" {
		a.id = ln.Addr().String()
	}
	addr := ln.Addr().String()
	srv := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}

	loopCtx, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(ln) })
	wg.Go(func() { a.leakLoop(loopCtx) })

	n := newNotifier(a.getenv)
	a.log.Info("demoapp listening", "addr", addr, "instance", a.id, "pid", a.pid)
	if err := n.send("READY=1"); err != nil {
		a.log.Warn("demoapp: sd_notify READY=1 failed", "err", err)
	}
	if every := watchdogInterval(a.getenv, a.pid); n != nil && every > 0 {
		wg.Go(func() { a.watchdogLoop(loopCtx, n, every) })
	}

	var err error
	select {
	case <-ctx.Done():
	case e := <-serveErr:
		err = fmt.Errorf("demoapp: serve %s: %w", addr, e)
	}
	close(a.done)
	if e := n.send("STOPPING=1"); e != nil {
		a.log.Warn("demoapp: sd_notify STOPPING=1 failed", "err", e)
	}
	// Shutdown's deadline comes from the injected clock like every other wait.
	sctx, cancel := context.WithCancel(context.Background())
	t := a.clock.AfterFunc(shutdownGrace, cancel)
	if e := srv.Shutdown(sctx); e != nil && err == nil {
		err = fmt.Errorf("demoapp: shut down %s: %w", addr, e)
		srv.Close()
	}
	t.Stop()
	cancel()
	stopLoops()
	wg.Wait()
	a.faults.freeLeak()
	a.log.Info("demoapp stopped", "addr", addr, "instance", a.id)
	return err
}

// ServeHTTP answers one request. Once the hang fault is set, every request
// blocks until the client gives up or Serve shuts down.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.workers != nil { // a worker pool: wait for a free worker as a thread-pool server does
		select {
		case a.workers <- struct{}{}:
			defer func() { <-a.workers }()
		case <-r.Context().Done():
			return
		case <-a.done:
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
	}
	if a.faults.hung.Load() {
		select {
		case <-r.Context().Done():
		case <-a.done:
			// Never let a released request look healthy: an empty handler return would be a 200.
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		}
		return
	}
	a.mux.ServeHTTP(w, r)
}

// sleep waits d on the injected clock; false means the request or the
// service ended first.
func (a *App) sleep(ctx context.Context, d time.Duration) bool {
	t := a.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-a.done:
		return false
	case <-t.C():
		return true
	}
}
