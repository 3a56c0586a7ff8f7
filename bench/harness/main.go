// Command harness benchmarks medic against its peers (supervisord, runit, monit) in
// one run, on one machine, with the same demo service under each:
//
//	(a) crash:     SIGKILL the instance; time until GET / answers 200 from a new process
//	(b) footprint: the supervisor's own RSS and CPU while it runs 50 instances
//	(c) hang:      POST /fault/hang; time until medic's liveness probe has it restarted
//
// Every process it starts runs in its own process group and is stopped (by
// PID or group, never by name) before it exits; every wait is bounded; only
// 127.0.0.1 is used. See bench/README.md; bench/run.sh builds and runs it.
//
// `harness demoapp --listen ADDR` runs the demo service itself (-app self),
// for trying the harness when bin/medic has no demoapp command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/demoapp"
)

// bench is one harness run: its settings and the resources it hands out.
type bench struct {
	medicBin    string
	app         []string
	peers       []string
	dir         string
	ports       *portPool
	runs        int
	minUptime   time.Duration
	hangRuns    int
	fpInstances int
	fpSamples   int
	fpWarmup    time.Duration
	log         *slog.Logger
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "demoapp" {
		os.Exit(runDemoapp(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	var (
		b         = bench{log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
		app       = flag.String("app", "medic", `demo service: "medic" runs "<medic> demoapp", "self" runs this harness's copy`)
		peers     = flag.String("peers", "medic,supervisord,runit", "supervisors to compare, in order")
		scenarios = flag.String("scenarios", "crash,footprint,hang", "scenarios to run")
		out       = flag.String("out", "bench/results", "directory for the results (markdown and JSON)")
		keep      = flag.Bool("keep", false, "keep the temporary directory (configs and logs)")
	)
	flag.StringVar(&b.medicBin, "medic", "bin/medic", "medic binary")
	flag.IntVar(&b.runs, "runs", 20, "crash: kills per supervisor")
	flag.DurationVar(&b.minUptime, "min-uptime", 1500*time.Millisecond, "crash, hang: minimum uptime of an instance before it is killed")
	flag.IntVar(&b.hangRuns, "hang-runs", 5, "hang: runs")
	flag.IntVar(&b.fpInstances, "instances", 50, "footprint: instances per supervisor")
	flag.IntVar(&b.fpSamples, "samples", 60, "footprint: one-second samples per supervisor")
	// 35 s: medic gives back its executable's start-up pages 30 s after it starts (internal/selfmem).
	flag.DurationVar(&b.fpWarmup, "warmup", 35*time.Second, "footprint: settle time before sampling")
	flag.Parse()
	if b.runs < 1 || b.runs > 1000 || b.hangRuns < 0 || b.hangRuns > 100 || b.fpInstances < 1 || b.fpInstances > 500 || b.fpSamples < 1 || b.fpSamples > 3600 {
		fmt.Fprintln(os.Stderr, "harness: -runs 1..1000, -hang-runs 0..100, -instances 1..500, -samples 1..3600")
		return 2
	}
	b.peers = splitList(*peers)
	for _, p := range b.peers {
		if !slices.Contains([]string{"medic", "supervisord", "runit", "monit"}, p) {
			fmt.Fprintf(os.Stderr, "harness: unknown peer %q (medic, supervisord, runit, monit)\n", p)
			return 2
		}
	}
	var err error
	if b.medicBin, err = filepath.Abs(b.medicBin); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		return 2
	}
	switch *app {
	case "medic":
		b.app = []string{b.medicBin, "demoapp"}
	case "self":
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, "harness: find own binary:", err)
			return 1
		}
		b.app = []string{self, "demoapp"}
	default:
		fmt.Fprintf(os.Stderr, "harness: -app must be medic or self, not %q\n", *app)
		return 2
	}
	if b.dir, err = os.MkdirTemp("", "medic-bench-"); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		return 1
	}
	if *keep {
		b.log.Info("keeping the work directory", "dir", b.dir)
	} else {
		defer os.RemoveAll(b.dir)
	}
	b.ports = newPortPool()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep := &report{Started: time.Now().UTC(), Env: environment(b.medicBin), Settings: b.settings(*app)}
	want := splitList(*scenarios)
	if slices.Contains(want, "crash") {
		rep.Crash, err = b.runCrash(ctx)
	}
	if err == nil && slices.Contains(want, "footprint") {
		rep.Footprint, err = b.runFootprint(ctx)
	}
	if err == nil && slices.Contains(want, "hang") && slices.Contains(b.peers, "medic") {
		rep.Hang, err = b.runHang(ctx)
	}
	rep.Finished = time.Now().UTC()
	rep.Env.LoadAfter = loadavg()
	if errors.Is(err, context.Canceled) {
		b.log.Warn("interrupted; writing what was measured")
	}
	paths, werr := rep.write(*out)
	if werr != nil {
		fmt.Fprintln(os.Stderr, "harness:", werr)
		return 1
	}
	fmt.Print(rep.markdown())
	fmt.Fprintf(os.Stderr, "results: %s\n", strings.Join(paths, ", "))
	if err != nil {
		return 1
	}
	return 0
}

// newTarget builds a supervisor under test in its own directory.
func (b *bench) newTarget(name, scenario string, s spec) (*target, error) {
	dir := filepath.Join(b.dir, scenario, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("work dir for %s: %w", name, err)
	}
	switch name {
	case "medic":
		if _, err := os.Stat(b.medicBin); err != nil {
			return nil, fmt.Errorf("medic binary: %w (build it: go build -o bin/medic ./cmd/medic)", err)
		}
		return newMedic(b.medicBin, dir, s)
	case "supervisord":
		return newSupervisord(dir, s)
	case "runit":
		return newRunit(dir, s)
	case "monit":
		return newMonit(dir, s)
	}
	return nil, fmt.Errorf("unknown supervisor %q", name)
}

// stopAll stops the targets in parallel: each may wait out a grace period.
func (b *bench) stopAll(ts []*target) {
	done := make(chan struct{}, len(ts))
	for _, t := range ts {
		go func() {
			if forced := t.stop(); len(forced) > 0 {
				b.log.Warn("had to kill", "supervisor", t.name, "processes", forced)
			}
			done <- struct{}{}
		}()
	}
	for range ts {
		<-done
	}
}

// runDemoapp is `harness demoapp --listen ADDR`: the same service as `medic demoapp`.
func runDemoapp(args []string) int {
	fs := flag.NewFlagSet("demoapp", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to listen on")
	id := fs.String("id", os.Getenv("MEDIC_INSTANCE"), "instance id (default: the listen address)")
	delay := fs.Duration("startup-delay", 0, "wait before listening")
	if err := fs.Parse(args); err != nil || *listen == "" {
		fmt.Fprintln(os.Stderr, "usage: harness demoapp --listen ADDR [--id ID] [--startup-delay D]")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := demoapp.Run(ctx, demoapp.Options{Listen: *listen, ID: *id, StartupDelay: *delay,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
