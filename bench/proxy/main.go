// Command proxy is the benchmark of issue 3: medic's proxy against HAProxy
// and nginx on the same load, on one machine, in one run.
//
//	go run ./bench/proxy -medicproxy /tmp/medicproxy -out bench/proxy/results.md
//
// (bench/proxy/run.sh builds the binaries and runs it.) Three scenarios:
//
//   - events: three demoapp instances behind each proxy, 32 connections for
//     20 s; at 5 s one instance is SIGKILLed, at 10 s a second one hangs
//     (POST /fault/hang). Client-visible errors and latency are recorded.
//   - overhead: healthy instances, 32 connections for 10 s, straight to one
//     instance and through each proxy; throughput, p50/p99 and the proxy's CPU.
//   - overload: three instances of fixed capacity (8 at a time, 20 ms each:
//     1200 requests/s in all) under an open-loop load of twice that.
//
// Every process it starts runs in its own process group on 127.0.0.1 and is
// stopped by PID; the whole run is bounded by -deadline.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type bench struct {
	ctx        context.Context
	self       string // this binary, re-executed as `backend`
	medicproxy string
	dir        string
	threads    int
	tryTimeout time.Duration
	conns      int
	duration   time.Duration
	peers      []string
	repeat     int
	// shedTolerance overrides medic's shed.tolerance (0: its default).
	shedTolerance float64
	logf          func(format string, args ...any)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "backend" {
		if err := runBackend(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "backend:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "load" {
		if err := runLoad(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			os.Exit(1)
		}
		return
	}
	var (
		medicproxy = flag.String("medicproxy", "", "path of the medicproxy binary (go build ./bench/proxy/medicproxy)")
		out        = flag.String("out", "", "write the results table here (markdown); default stdout only")
		peers      = flag.String("peers", "medic,haproxy,nginx", "proxies to compare")
		scenarios  = flag.String("scenarios", "events,overhead,overload", "scenarios to run")
		conns      = flag.Int("conns", 32, "concurrent connections (events, overhead)")
		duration   = flag.Duration("duration", 20*time.Second, "length of the events run")
		tryTimeout = flag.Duration("try-timeout", 250*time.Millisecond, "per-try (and connect) timeout, the same for every proxy")
		deadline   = flag.Duration("deadline", 15*time.Minute, "the whole run is cut after this")
		repeat     = flag.Int("repeat", 1, "run the events and overhead scenarios this many times (peers interleaved)")
		tolerance  = flag.Float64("medic-shed-tolerance", 0, "medic's shed.tolerance (0: its default)")
	)
	flag.Parse()
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	if *medicproxy == "" {
		fatal(fmt.Errorf("-medicproxy is required"))
	}
	raiseFDLimit()
	dir, err := os.MkdirTemp("", "bench-proxy-")
	if err != nil {
		fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	watchdog := time.AfterFunc(*deadline, func() {
		fmt.Fprintf(os.Stderr, "bench: deadline %v passed; stopping every process\n", *deadline)
		stopAll()
		os.Exit(3)
	})
	defer watchdog.Stop()
	defer stopAll()

	b := &bench{
		ctx: ctx, self: self, medicproxy: *medicproxy, dir: dir, threads: runtime.NumCPU(),
		tryTimeout: *tryTimeout, conns: *conns, duration: *duration, peers: strings.Split(*peers, ","), repeat: max(*repeat, 1), shedTolerance: *tolerance,
		logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...) },
	}
	r := report{started: time.Now(), load0: loadavg(), b: b}
	for _, s := range strings.Split(*scenarios, ",") {
		if ctx.Err() != nil {
			break
		}
		var err error
		switch s {
		case "events":
			r.events, err = b.runEvents()
		case "overhead":
			r.overhead, err = b.runOverhead()
		case "overload":
			r.overload, err = b.runOverload()
		default:
			err = fmt.Errorf("unknown scenario %q", s)
		}
		if err != nil {
			stopAll()
			fatal(fmt.Errorf("%s: %w (logs in %s)", s, err, dir))
		}
	}
	r.load1 = loadavg()
	r.ended = time.Now()
	text := r.markdown()
	fmt.Print(text)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
			fatal(err)
		}
	}
	stopAll()
	_ = os.RemoveAll(dir)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	stopAll()
	os.Exit(1)
}

// startBackends starts n instances (demoapp, or fixed capacity with workers > 0).
func (b *bench) startBackends(n, workers int, work time.Duration) ([]instanceAddr, []*proc, error) {
	var addrs []instanceAddr
	var ps []*proc
	for i := range n {
		port, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		name := fmt.Sprintf("web-%d", i)
		argv := []string{b.self, "backend", "-listen", addr(port), "-id", name}
		if workers > 0 {
			argv = append(argv, "-workers", fmt.Sprint(workers), "-work", work.String())
		}
		p, err := start(name, filepath.Join(b.dir, fmt.Sprintf("%s-%d.log", name, port)), argv...)
		if err != nil {
			return nil, nil, err
		}
		ps = append(ps, p)
		if err := waitPort(p, port, 10*time.Second); err != nil {
			return nil, nil, err
		}
		addrs = append(addrs, instanceAddr{Name: name, Addr: addr(port)})
	}
	return addrs, ps, nil
}

func stopProcs(ps ...*proc) {
	for _, p := range ps {
		if p != nil {
			p.stop(5 * time.Second)
		}
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// raiseFDLimit lifts the soft open-files limit to the hard one: the open-loop
// run and the peers (HAProxy checks it against maxconn) need many sockets.
func raiseFDLimit() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
