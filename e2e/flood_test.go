package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/testutil/flood"
)

const floodConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d"}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 3
    port: %[3]d
    stop: {grace: 1s}
    proxy: {listen: "127.0.0.1:%[5]d"}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 500ms, timeout: 400ms, failure_threshold: 3}
      readiness: {http: {path: /healthz/ready}, period: 500ms, timeout: 400ms, failure_threshold: 2}
  raw:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: %[6]d
    stop: {grace: 1s}
    proxy: {listen: "127.0.0.1:%[7]d", mode: tcp}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 500ms, timeout: 400ms, failure_threshold: 3}
`

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// TestFloodNeverHarmsInstances floods each listener in turn (the API, the
// HTTP proxy, the TCP proxy) with idle and slowloris connections while a
// client sends steady traffic through the HTTP proxy. The short form runs
// medic with a small descriptor limit (prlimit) so that the flood exceeds
// it: before listeners were bounded, medic read its own "too many open
// files" as liveness failures and restarted healthy instances. The full
// form (bench/flood.sh) sets MEDIC_FLOOD_* for 30 000 idle and 2 000 slow
// connections at 200 req/s.
func TestFloodNeverHarmsInstances(t *testing.T) {
	var (
		idle    = envInt("MEDIC_FLOOD_IDLE", 600)
		slow    = envInt("MEDIC_FLOOD_SLOW", 100)
		nofile  = envInt("MEDIC_FLOOD_NOFILE", 512) // 0: medic keeps the machine's limit
		rate    = envInt("MEDIC_FLOOD_RATE", 100)
		seconds = envInt("MEDIC_FLOOD_SECONDS", 5)
		// p99 is held to 3× the normal p99, but never below floor: on a
		// shared CI machine (load 16 on 2 cores) a p99 of a few ms jumps
		// by tens of ms with no flood at all. bench/flood.sh sets it to 0.
		floor = time.Duration(envInt("MEDIC_FLOOD_P99_FLOOR_MS", 250)) * time.Millisecond
		// how long the normal p99 is measured (before and, with a control, after the floods
		// and in a quiet interval right before each flood)
		normalFor = time.Duration(envInt("MEDIC_FLOOD_NORMAL_SECONDS", 3)) * time.Second
		// "haproxy": a control listener, flooded in its own phase and measured in every phase
		control = os.Getenv("MEDIC_FLOOD_CONTROL")
	)
	var wrapper []string
	if nofile > 0 {
		p, err := exec.LookPath("prlimit")
		if err != nil {
			if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
				t.Fatal("prlimit (util-linux) is missing")
			}
			t.Skip("prlimit (util-linux) is missing: cannot give medic a small descriptor limit")
		}
		wrapper = []string{p, fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--"}
	}
	if n := os.Getenv("MEDIC_FLOOD_AGENT_NICE"); n != "" {
		// medic (and so its instances) at a higher priority, as a unit with
		// Nice= would run it: bench/flood.sh AGENT_NICE=-5.
		wrapper = append([]string{"nice", "-n", n}, wrapper...)
	}
	ports := freePort(t, 4) // web proxy, raw instance, raw proxy, the control
	cfg := strings.NewReplacer("%[5]d", fmt.Sprint(ports), "%[6]d", fmt.Sprint(ports+1), "%[7]d", fmt.Sprint(ports+2)).Replace(floodConfig)
	a := startAgentWrapped(t, t.TempDir(), cfg, wrapper...)
	a.eventually(20*time.Second, "3 web instances ready and raw running", func() bool {
		d := a.status()
		return len(d.Services) == 2 && d.Services[1].Ready == 3 && d.Services[0].Instances[0].PID != 0 || len(d.Services) == 2 && d.Services[0].Ready == 3
	})
	proxyURL := fmt.Sprintf("http://127.0.0.1:%d/", ports)
	ctx := context.Background()
	paths := []path{{"medic proxy", proxyURL}}
	var hp *haproxyRun
	if control != "" {
		if control != "haproxy" {
			t.Fatalf("MEDIC_FLOOD_CONTROL=%q: the only control is haproxy", control)
		}
		var webPorts []int
		for _, s := range a.status().Services {
			for _, in := range s.Instances {
				if s.Name == "web" {
					webPorts = append(webPorts, in.Port)
				}
			}
		}
		hp = startHAProxy(t, ports+3, webPorts)
		// the control, and the instance straight (no proxy): the machine's own share
		paths = append(paths, path{"haproxy", fmt.Sprintf("http://127.0.0.1:%d/", ports+3)},
			path{"direct", fmt.Sprintf("http://127.0.0.1:%d/", webPorts[0])})
	}

	normals := measure(ctx, paths, rate, normalFor)
	for i, p := range paths {
		t.Logf("normal, %s: %v", p.name, normals[i])
		if normals[i].ErrorRate() > 0.01 {
			t.Fatalf("errors before any flood, %s: %v %v", p.name, normals[i], normals[i].FirstErrors)
		}
	}
	var summary []string
	rss0 := rss(a.cmd.Process.Pid) // before any flood
	pids := map[string]int{}
	for _, s := range a.status().Services {
		for _, in := range s.Instances {
			pids[in.ID] = in.PID
		}
	}

	targets := []struct{ name, addr string }{
		{"api", a.addr},
		{"proxy http", fmt.Sprintf("127.0.0.1:%d", ports)},
		{"proxy tcp", fmt.Sprintf("127.0.0.1:%d", ports+2)},
	}
	if control != "" {
		targets = append(targets, struct{ name, addr string }{"control", fmt.Sprintf("127.0.0.1:%d", ports+3)})
	}
	quiet := normals
	for n, tg := range targets {
		if only := os.Getenv("MEDIC_FLOOD_TARGETS"); only != "" && !strings.Contains(only, tg.name) {
			continue // bench/flood.sh TARGETS="proxy tcp"
		}
		if control != "" && n > 0 {
			// On a shared machine the p99 moves several-fold from one minute to the
			// next with no flood at all: each flood is held against a quiet interval
			// measured right before it (the last flood's deferred connections included).
			quiet = measure(ctx, paths, rate, normalFor)
			for i, p := range paths {
				t.Logf("quiet before the %s flood, %s: %v", tg.name, p.name, quiet[i])
			}
		}
		cpu0 := cpuTime(a.cmd.Process.Pid)
		var hpCPU0 time.Duration
		if hp != nil {
			hpCPU0 = cpuTime(hp.cmd.Process.Pid)
		}
		fl := startFlood(t, tg.addr, idle, slow)
		time.Sleep(time.Duration(2+(idle+slow)/5000) * time.Second) // let the flood build up
		loadDone := make(chan []flood.Result, 1)
		go func() { loadDone <- measure(ctx, paths, rate, time.Duration(seconds)*time.Second) }()
		// The operator runs `medic status` on the agent's machine: the CLI
		// takes the admin socket, outside the TCP listener's caps. Over TCP
		// (--addr, as from another machine) it must answer too: the flood's
		// few sources cannot take the API's light-source reserve.
		var slowest, slowestTCP time.Duration
		for range 3 {
			start := time.Now()
			out, err := a.medicLocal("status", "--json")
			took := time.Since(start)
			slowest = max(slowest, took)
			if err != nil {
				t.Errorf("%s flood: medic status failed after %v: %v %s", tg.name, took, err, out)
			} else if tg.name == "proxy tcp" {
				checkSilent(t, out)
			}
			start = time.Now()
			if _, err := a.medic("status", "--json"); err == nil {
				slowestTCP = max(slowestTCP, time.Since(start))
			} else {
				slowestTCP = max(slowestTCP, time.Since(start))
				t.Errorf("%s flood: medic status --addr %s failed after %v: %v", tg.name, a.addr, time.Since(start), err)
			}
			time.Sleep(time.Duration(seconds) * time.Second / 4)
		}
		all := <-loadDone
		res := all[0]
		if os.Getenv("FLOOD_DEBUG") != "" {
			out, _ := exec.Command("sh", "-c", fmt.Sprintf("ls -l /proc/%d/fd | awk '{print $NF}' | sed 's/[0-9]*//g' | sort | uniq -c; ss -tnp | grep 'pid=%d,' | awk '{print $1, $4, $5}' | sed -E 's/:[0-9]+ / /g' | sort | uniq -c | sort -rn | head", a.cmd.Process.Pid, a.cmd.Process.Pid)).CombinedOutput()
			t.Logf("descriptors of medic:\n%s", out)
		}
		rssMB := rss(a.cmd.Process.Pid) >> 20 // with the flood's connections held
		counts := fl.stop()
		cpu := cpuTime(a.cmd.Process.Pid) - cpu0
		t.Logf("%s flood (%d idle + %d slow, %d dials, %d closed by the listener, %d open at the end): client %v; slowest medic status %v (admin socket), %v (TCP); medic's CPU %v (%v per dial), RSS %d MiB",
			tg.name, idle, slow, counts.Dials, counts.ClosedByServer, counts.Open, res, slowest, slowestTCP,
			cpu.Round(10*time.Millisecond), (cpu / time.Duration(max(1, counts.Dials))).Round(100*time.Nanosecond), rssMB)
		if hp != nil {
			c := cpuTime(hp.cmd.Process.Pid) - hpCPU0
			t.Logf("%s flood: HAProxy's CPU %v (%v per dial)", tg.name, c.Round(10*time.Millisecond), (c / time.Duration(max(1, counts.Dials))).Round(100*time.Nanosecond))
		}
		line := fmt.Sprintf("%-10s", tg.name)
		for i, p := range paths {
			if i > 0 {
				t.Logf("%s flood, client through %s: %v", tg.name, p.name, all[i])
			}
			// Where the tail is: the requests at or above the p99, per second of
			// the load (seconds in which every path has them are the machine's).
			t.Logf("%s flood, client through %s: requests ≥ p99 by second of the load %v", tg.name, p.name, all[i].TailBySecond(0.99))
			line += fmt.Sprintf(" | %s p99 %v = %s quiet %v, errors %d/%d, new conns %d", p.name, all[i].Quantile(0.99).Round(10*time.Microsecond),
				ratio(all[i].Quantile(0.99), quiet[i].Quantile(0.99)), quiet[i].Quantile(0.99).Round(10*time.Microsecond), all[i].Errors, all[i].Requests, all[i].NewConns)
		}
		summary = append(summary, line)
		if tg.name == "control" {
			continue // medic's listeners are not flooded: reported, not judged
		}
		if slowest > time.Second || slowestTCP > time.Second {
			t.Errorf("%s flood: medic status took %v (admin socket), %v (TCP); want < 1s", tg.name, slowest, slowestTCP)
		}
		if res.ErrorRate() > 0.01 {
			t.Errorf("%s flood: client error rate %.2f%% > 1%%: %v", tg.name, 100*res.ErrorRate(), res.FirstErrors)
		}
		if p99, bound := res.Quantile(0.99), max(3*quiet[0].Quantile(0.99), floor); p99 > bound {
			t.Errorf("%s flood: client p99 %v > %v (3× the normal %v, floor %v)", tg.name, p99, bound, quiet[0].Quantile(0.99), floor)
		}
	}
	if control != "" {
		after := measure(ctx, paths, rate, normalFor)
		line := "after     "
		for i, p := range paths {
			line += fmt.Sprintf(" | %s p99 %v = %s normal", p.name, after[i].Quantile(0.99).Round(10*time.Microsecond), ratio(after[i].Quantile(0.99), normals[i].Quantile(0.99)))
		}
		summary = append(summary, line)
		// The memory the floods grew gives itself back (selfmem.HeapReturn,
		// asked every 10 s): within 40 s medic is back within 32 MiB of its
		// resident size before the floods.
		start, high := time.Now(), rss(a.cmd.Process.Pid)
		now := high
		for now > rss0+32<<20 && time.Since(start) < 40*time.Second {
			time.Sleep(500 * time.Millisecond) // polled: the return happens inside medic
			now = rss(a.cmd.Process.Pid)
		}
		t.Logf("RSS after the floods: %d MiB, %d MiB %v later (%d MiB before the floods)", high>>20, now>>20, time.Since(start).Round(100*time.Millisecond), rss0>>20)
		if now > rss0+32<<20 {
			t.Errorf("medic's RSS stayed at %d MiB 40 s after the floods (%d MiB before them)", now>>20, rss0>>20)
		}
	}
	line := "normal    "
	for i, p := range paths {
		line += fmt.Sprintf(" | %s p50 %v p99 %v", p.name, normals[i].Quantile(0.5).Round(10*time.Microsecond), normals[i].Quantile(0.99).Round(10*time.Microsecond))
	}
	t.Logf("FLOODSUMMARY (client p99 in each flood against its p99 in the quiet interval right before it)\n%s\n%s", line, strings.Join(summary, "\n"))
	// Not one instance was restarted or ejected because of the floods.
	d := a.status()
	for _, s := range d.Services {
		for _, in := range s.Instances {
			if in.Restarts != 0 || in.PID != pids[in.ID] {
				t.Errorf("instance %s restarted during the floods (restarts %d, pid %d → %d)", in.ID, in.Restarts, pids[in.ID], in.PID)
				out, _ := a.medicLocal("audit", "list", "--target", in.ID)
				t.Logf("the audit log of %s:\n%s", in.ID, tail(out, 3000))
			}
		}
	}
	for _, p := range d.Proxies {
		for _, in := range p.Instances {
			if in.Ejections != 0 {
				t.Errorf("proxy %s ejected %s %d times during the floods", p.Service, in.ID, in.Ejections)
			}
		}
	}
	if nofile > 0 && !strings.Contains(a.stderr.String(), "refusing client connections") && !strings.Contains(a.stderr.String(), "not accepting client connections") && !strings.Contains(a.stderr.String(), "closing idle client connections to admit new ones") {
		t.Errorf("the flood never reached a limit (no refusal logged); the test does not exercise exhaustion")
	}
	if p := os.Getenv("MEDIC_FLOOD_AGENT_LOG"); p != "" {
		// all of medic's stderr (with GODEBUG=gctrace=1: its collections under the flood)
		if err := os.WriteFile(p, []byte(a.stderr.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.Logf("medic stderr:\n%s", tail(a.stderr.String(), 6000))
	}
}

// floodHelper runs in a child process (the test binary run again): it holds
// MEDIC_FLOOD_HELPER_IDLE idle and _SLOW slowloris connections to _ADDR
// until SIGTERM, then prints its counts. Children spread the connections
// over processes whose descriptor limit could not hold them all.
func TestFloodHelper(t *testing.T) {
	addr := os.Getenv("MEDIC_FLOOD_HELPER_ADDR")
	if addr == "" {
		t.Skip("runs only as the child of TestFloodNeverHarmsInstances")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	var c flood.Counts
	var open atomic.Int64
	go func() { <-sig; open.Store(c.Open.Load()); cancel() }()
	flood.Attack{Addr: addr, Idle: envInt("MEDIC_FLOOD_HELPER_IDLE", 0), Slow: envInt("MEDIC_FLOOD_HELPER_SLOW", 0),
		Sources: []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}}.Run(ctx, &c)
	fmt.Printf("FLOODCOUNTS %d %d %d %d\n", c.Dials.Load(), c.DialErrors.Load(), c.ClosedByServer.Load(), open.Load())
}

type floodCounts struct{ Dials, DialErrors, ClosedByServer, Open int64 }

type floodRun struct {
	t     *testing.T
	procs []*exec.Cmd
	outs  []*bytes.Buffer
}

// startFlood starts helper processes holding idle + slow connections to
// addr, at most perProc each (the descriptor limit of one process).
func startFlood(t *testing.T, addr string, idle, slow int) *floodRun {
	t.Helper()
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	perProc := max(1000, int(lim.Cur)-1024)
	n := (idle + slow + perProc - 1) / perProc
	fr := &floodRun{t: t}
	for i := range n {
		argv := []string{os.Args[0], "-test.run=^TestFloodHelper$", "-test.v"}
		if n := os.Getenv("MEDIC_FLOOD_NICE"); n != "" {
			// The flood is the attacker, not what is measured: at nice 19 it
			// gets the CPU medic, the instances and the client leave over
			// (bench/flood.sh sets it; every thread inherits it from exec).
			argv = append([]string{"nice", "-n", n}, argv...)
		}
		if cg := os.Getenv("MEDIC_FLOOD_CGROUP"); cg != "" {
			// bench/flood.sh FLOODER_CPU: the flood in a cgroup with a CPU
			// quota (on a real network the attacker is another machine);
			// the shell joins it before exec, so no flood thread runs outside.
			argv = append([]string{"sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, cg}, argv...)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "MEDIC_FLOOD_HELPER_ADDR="+addr,
			fmt.Sprintf("MEDIC_FLOOD_HELPER_IDLE=%d", share(idle, n, i)), fmt.Sprintf("MEDIC_FLOOD_HELPER_SLOW=%d", share(slow, n, i)))
		out := &bytes.Buffer{}
		cmd.Stdout = out
		if err := cmd.Start(); err != nil {
			fr.stop()
			t.Fatal(err)
		}
		fr.procs, fr.outs = append(fr.procs, cmd), append(fr.outs, out)
	}
	t.Cleanup(func() { fr.stop() })
	return fr
}

func share(total, n, i int) int { return total/n + map[bool]int{true: 1}[i < total%n] }

// stop ends the helpers (by PID) and sums their counts; safe to call twice.
func (fr *floodRun) stop() floodCounts {
	var sum floodCounts
	for i, p := range fr.procs {
		if p.ProcessState == nil {
			p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				p.Process.Kill()
				<-done
			}
		}
		var c floodCounts
		if j := strings.Index(fr.outs[i].String(), "FLOODCOUNTS "); j >= 0 {
			fmt.Sscan(fr.outs[i].String()[j+len("FLOODCOUNTS "):], &c.Dials, &c.DialErrors, &c.ClosedByServer, &c.Open)
		} else {
			fr.t.Errorf("flood helper %d printed no counts (%v):\n%s", i, p.ProcessState, tail(fr.outs[i].String(), 2000))
		}
		sum.Dials += c.Dials
		sum.DialErrors += c.DialErrors
		sum.ClosedByServer += c.ClosedByServer
		sum.Open += c.Open
	}
	return sum
}

// cpuTime is the CPU time (user + system) process pid used so far, from
// /proc/PID/stat (0 when it cannot be read).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)       // utime, field 14
	k, _ := strconv.ParseInt(f[12], 10, 64)       // stime, field 15
	return time.Duration(u+k) * time.Second / 100 // USER_HZ is 100 on Linux
}

// rss is the resident memory of process pid in bytes, from /proc/PID/status (0 when it cannot be read).
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// checkSilent logs the TCP proxy's silent connections during its flood and
// holds them to max_silent (default 128): a flood of idle connections must
// not hold one connection to the instance each.
func checkSilent(t *testing.T, statusJSON string) {
	t.Helper()
	var doc api.StatusDoc
	if err := json.Unmarshal([]byte(statusJSON), &doc); err != nil {
		t.Errorf("status --json: %v", err)
		return
	}
	for _, p := range doc.Proxies {
		if p.Service != "raw" {
			continue
		}
		conns := 0
		for _, in := range p.Instances {
			conns += in.Connections
		}
		if p.Silent == nil {
			t.Errorf("proxy tcp flood: the raw proxy's status has no silent connections")
			return
		}
		t.Logf("proxy tcp flood: connections to the instance %d, silent %d, waiting for a first byte or a place %d, closed silent %d",
			conns, p.Silent.Open, p.Silent.Waiting, p.Silent.Closed)
		if p.Silent.Open > config.DefaultMaxSilent {
			t.Errorf("proxy tcp flood: %d silent connections to the instance, above max_silent %d", p.Silent.Open, config.DefaultMaxSilent)
		}
	}
}
