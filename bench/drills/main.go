// Command drills runs the same faults against medic and the tools a user
// would pick instead — supervisord, runit, Monit (supervisors), HAProxy and
// nginx (balancers) — each around three demoapp instances under the same
// open-loop load, and writes one table: per fault and tool, when the tool
// showed it noticed, when clients were served well again, whether the
// process was restarted, and how many requests failed. See README.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/drill/load"
)

// row is one fault against one tool.
type row struct {
	Fault, Tool, Kind string
	Detected          *float64 // seconds from the injection to the tool's sign; nil: none in the window
	Coarse            bool     // Detected is a whole-second log stamp: the sign came within the second after it
	DetectedBy        string
	Restarted         *float64 // seconds to a new process serving the instance's port
	ServingAgain      *float64 // seconds to the end of the last failed or slow request; nil: still failing at the end
	Requests, Errors  int
	Note              string
}

type faultSpec struct {
	name    string
	inject  func(port, pid int) error
	restore func(port, pid int)
}

func post(port int, path string) error {
	resp, err := quick.Post(fmt.Sprintf("http://127.0.0.1:%d%s", port, path), "text/plain", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("POST %s: HTTP %d", path, resp.StatusCode)
	}
	return nil
}

var faults = []faultSpec{
	{"kill", func(_, pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }, func(int, int) {}},
	{"hang", func(_, pid int) error { return syscall.Kill(pid, syscall.SIGSTOP) }, func(_, pid int) { syscall.Kill(pid, syscall.SIGCONT) }},
	// A reset is harmless on a process that replaced the faulty one.
	{"unready", func(port, _ int) error { return post(port, "/fault/unready") }, func(port, _ int) { post(port, "/fault/reset") }},
	{"errors", func(port, _ int) error { return post(port, "/fault/error?rate=1") }, func(port, _ int) { post(port, "/fault/reset") }},
}

// executables are the peers' programs, looked up before each is measured.
var executables = map[string]string{"supervisord": "supervisord", "runit": "runsvdir", "monit": "monit", "haproxy": "haproxy", "nginx": "nginx"}

var builders = map[string]func(env) (*tool, error){
	"medic": newMedic, "supervisord": newSupervisord, "runit": newRunit, "monit": newMonit, "haproxy": newHAProxy, "nginx": newNginx,
}

func main() {
	medicBin := flag.String("medic", "bin/medic", "the medic binary (also runs the demoapp)")
	tools := flag.String("tools", "medic,supervisord,runit,monit,haproxy,nginx", "tools to measure")
	faultList := flag.String("faults", "kill,hang,unready,errors", "faults to inject")
	window := flag.Duration("window", 12*time.Second, "observation time after each injection")
	rps := flag.Float64("rps", 100, "open-loop load, requests per second")
	slo := flag.Duration("slo", 500*time.Millisecond, "a request slower than this counts as impaired")
	out := flag.String("out", "bench/drills/results", "directory for the results")
	keep := flag.Bool("keep", false, "keep the working directories (configs, logs)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	bin, err := filepath.Abs(*medicBin)
	if err != nil {
		fatal(err)
	}
	started := time.Now()
	var rows []row
	for _, name := range strings.Split(*tools, ",") {
		build := builders[name]
		if build == nil {
			fatal(fmt.Errorf("unknown tool %q", name))
		}
		if exe := executables[name]; exe != "" {
			if _, err := exec.LookPath(exe); err != nil {
				fmt.Fprintf(os.Stderr, "%s: not installed (apt-get install -y monit supervisor runit haproxy nginx); skipped\n", name)
				continue
			}
		}
		rs, err := measureTool(ctx, name, build, bin, strings.Split(*faultList, ","), *window, *rps, *slo, *keep)
		rows = append(rows, rs...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	md := table(rows, *window, *rps, *slo, started)
	fmt.Print(md)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fatal(err)
	}
	stamp := started.UTC().Format("20060102-150405")
	os.WriteFile(filepath.Join(*out, "drills-"+stamp+".md"), []byte(md), 0o644)
	b, _ := json.MarshalIndent(rows, "", "  ")
	os.WriteFile(filepath.Join(*out, "drills-"+stamp+".json"), b, 0o644)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "drills:", err)
	os.Exit(1)
}

func measureTool(ctx context.Context, name string, build func(env) (*tool, error), bin string, faultNames []string,
	window time.Duration, rps float64, slo time.Duration, keep bool) ([]row, error) {
	dir, err := os.MkdirTemp("", "medic-bench-"+name+"-")
	if err != nil {
		return nil, err
	}
	if !keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "%s: working directory %s\n", name, dir)
	}
	base, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	e := env{demo: []string{bin, "demoapp"}, medic: bin, dir: dir, base: base}
	t, err := build(e)
	if t != nil {
		defer t.stop()
	}
	if err != nil {
		return nil, err
	}
	var rows []row
	for _, fn := range faultNames {
		var f *faultSpec
		for i := range faults {
			if faults[i].name == fn {
				f = &faults[i]
			}
		}
		if f == nil {
			return rows, fmt.Errorf("unknown fault %q", fn)
		}
		if err := healthy(ctx, t, e); err != nil {
			return rows, err
		}
		fmt.Fprintf(os.Stderr, "%s: %s …\n", name, fn)
		r := measureFault(ctx, t, f, window, rps, slo)
		rows = append(rows, r)
		if ctx.Err() != nil {
			return rows, ctx.Err()
		}
	}
	return rows, nil
}

// healthy brings the three instances back (the harness restarts what it
// runs itself) and waits until they and the front door serve.
func healthy(ctx context.Context, t *tool, e env) error {
	for i, p := range t.ports {
		if t.apps && pidAt(p) == 0 {
			if err := t.startApp(e, i); err != nil {
				return err
			}
		}
	}
	if err := waitServing(ctx, append(append([]int{}, t.ports...), t.front), 30*time.Second); err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	time.Sleep(2500 * time.Millisecond) // let health checks see every instance up again
	return nil
}

func measureFault(ctx context.Context, t *tool, f *faultSpec, window time.Duration, rps float64, slo time.Duration) row {
	r := row{Fault: f.name, Tool: t.name, Kind: t.kind}
	port := t.ports[1]
	pid := pidAt(port)
	rec := load.NewRecorder(1 << 20)
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		load.Run(lctx, load.Options{URL: fmt.Sprintf("http://127.0.0.1:%d/", t.front), Rate: rps, Timeout: 2 * time.Second,
			Client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}, OnSample: rec.Add})
	}()
	sleep(ctx, 2*time.Second)
	if t.ready != nil {
		t.ready(ctx, 1)
	}
	t0 := time.Now()
	if err := f.inject(port, pid); err != nil {
		r.Note = "injection failed: " + err.Error()
	}
	wctx, cancel := context.WithTimeout(ctx, window)
	det := make(chan struct{})
	var detAt time.Time
	go func() { defer close(det); detAt, r.DetectedBy = watchDetect(wctx, t, 1, t0) }()
	w := &watchPID{}
	go w.run(wctx, port, pid)
	<-wctx.Done()
	cancel()
	<-det
	f.restore(port, pid)
	stopLoad()
	<-loadDone
	if !detAt.IsZero() {
		v := detAt.Sub(t0).Seconds() // a whole-second stamp may precede the injection within its second
		if !t.coarse {
			v = max(v, 0)
		}
		r.Detected, r.Coarse = &v, t.coarse
	}
	if at, _ := w.result(); !at.IsZero() {
		v := at.Sub(t0).Seconds()
		r.Restarted = &v
		if r.Detected == nil && t.name == "runit" {
			r.Detected, r.DetectedBy = &v, "(no log: the restart is the only sign)"
		}
	}
	samples, _ := rec.Samples()
	var lastBad time.Time
	for _, s := range samples {
		if s.Intended.Before(t0) {
			continue
		}
		r.Requests++
		if !s.OK {
			r.Errors++
		}
		if (!s.OK || s.Latency > slo) && s.Done().After(lastBad) {
			lastBad = s.Done()
		}
	}
	switch {
	case lastBad.IsZero():
		v := 0.0
		r.ServingAgain = &v
	case lastBad.Before(t0.Add(window - time.Second)):
		v := lastBad.Sub(t0).Seconds()
		r.ServingAgain = &v
	}
	return r
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func secs(v *float64) string {
	if v == nil {
		return "never"
	}
	if *v == 0 {
		return "0 (no impact)"
	}
	return fmt.Sprintf("%.2fs", *v)
}

// detected formats the detection time; a whole-second log stamp t means
// the sign came between t and t+1s.
func detected(r row) string {
	switch {
	case r.Detected == nil:
		return "never"
	case r.Coarse:
		return fmt.Sprintf("%.1f–%.1fs (log in seconds)", max(*r.Detected, 0), *r.Detected+1)
	}
	return fmt.Sprintf("%.2fs", *r.Detected)
}

func table(rows []row, window time.Duration, rps float64, slo time.Duration, started time.Time) string {
	var b strings.Builder
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&b, "# Faults against medic and its peers — %s\n\n", started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Machine: %s, %s/%s, %d CPUs, load %s. Each tool runs three demoapp instances; %.0f requests/s open loop; "+
		"each fault is watched for %v; a request failing or slower than %v is impaired.\n\n",
		host, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), strings.TrimSpace(string(load)), rps, window, slo)
	fmt.Fprintf(&b, "| fault | tool | detected after | clients served well again after | process restarted after | client errors | sign of detection |\n|---|---|---|---|---|---|---|\n")
	for _, f := range faults {
		for _, r := range rows {
			if r.Fault != f.name {
				continue
			}
			restarted := secs(r.Restarted)
			if r.Restarted == nil {
				restarted = "no"
			}
			sign := r.DetectedBy
			if r.Note != "" {
				sign += " " + r.Note
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d of %d | %s |\n", r.Fault, r.Tool, detected(r), secs(r.ServingAgain),
				restarted, r.Errors, r.Requests, strings.ReplaceAll(trim(sign, 90), "|", "/"))
		}
	}
	return b.String()
}

func trim(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
