package main

import (
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

type report struct {
	b              *bench
	started, ended time.Time
	load0, load1   string
	events         []eventsRow
	overhead       []overheadRow
	overload       []overloadRow
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func version(argv ...string) string {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func (r *report) markdown() string {
	var w strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&w, f, a...) }
	p("# bench/proxy results\n\n")
	p("Reproduce: `bench/proxy/run.sh` (builds the harness and `medicproxy`, then runs all peers in one run).\n\n")
	p("- run %s, %v; %d CPUs; load average before %s, after %s\n", r.started.UTC().Format(time.RFC3339), r.ended.Sub(r.started).Round(time.Second), runtime.NumCPU(), r.load0, r.load1)
	p("- %s; %s; %s\n", runtime.Version(), version("haproxy", "-v"), version("nginx", "-v"))
	p("- instances: medic's demoapp (`internal/demoapp`) in separate processes; load: a Go generator in the harness, one keep-alive connection per client, client timeout %v\n", clientTimeout)
	p("- every proxy gets the same per-try and connect timeout (%v); medic otherwise runs its defaults (retries 2, budget 20%%, outlier 3 consecutive errors, shedding on) with a 1 s readiness loop (fall 2, rise 2) standing in for the agent's probe\n\n", r.b.tryTimeout)

	if len(r.events) > 0 {
		p("## Events: %d connections for %v; SIGKILL one instance at 5 s, hang a second (POST /fault/hang) at 10 s\n\n", r.b.conns, r.b.duration)
		p("Errors are client-visible: non-2xx, socket errors, timeouts. p99 counts every request, failed or not.\n\n")
		p("| proxy | run | requests | errors (non-2xx / socket / timeout) | p50 ms | p99 ms | p99 0–5 s | p99 5–10 s (kill) | p99 10–20 s (hang) | max ms |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, e := range r.events {
			a := e.all
			p("| %s | %d | %d | %d (%d / %d / %d) | %s | %s | %s | %s | %s | %s |\n", e.peer, e.round, a.n, a.errors(), a.status+a.shed, a.socket, a.timeout,
				ms(a.p50), ms(a.p99all), ms(e.before.p99all), ms(e.kill.p99all), ms(e.hang.p99all), ms(a.max))
		}
		p("\n")
		for _, e := range r.events {
			if c := e.all.codeList(); c != "" {
				p("- %s run %d non-2xx statuses: %s\n", e.peer, e.round, c)
			}
			if e.notes != "" {
				p("- %s run %d decisions: %s\n", e.peer, e.round, e.notes)
			}
		}
		p("\n")
	}

	if len(r.overhead) > 0 {
		p("## Overhead: healthy instances, %d connections for 10 s\n\n", r.b.conns)
		rounds := 0
		for _, o := range r.overhead {
			rounds = max(rounds, o.round)
		}
		if rounds > 1 {
			p("Medians of %d rounds (targets interleaved in each round, the order rotating from round to round); ratios are taken within each round, then the median.\n\n", rounds)
			p("| target | req/s | p99 ms | req per proxy CPU-s | req/s vs HAProxy | req per CPU-s vs HAProxy | p99 vs HAProxy |\n")
			p("|---|---:|---:|---:|---:|---:|---:|\n")
			for _, target := range append([]string{"direct"}, r.b.peers...) {
				var rps, p99, perCPU, vsH, cpuVsH, p99VsH []float64
				for round := 1; round <= rounds; round++ {
					o, h, ok := roundRows(r.overhead, round, target)
					if !ok {
						continue
					}
					rps = append(rps, o.s.perSec)
					p99 = append(p99, o.s.p99.Seconds()*1000)
					if h.s.perSec > 0 {
						vsH = append(vsH, o.s.perSec/h.s.perSec)
						p99VsH = append(p99VsH, o.s.p99.Seconds()/h.s.p99.Seconds())
					}
					if o.cpu > 0 {
						perCPU = append(perCPU, float64(o.s.n)/o.cpu)
						if h.cpu > 0 {
							cpuVsH = append(cpuVsH, (float64(o.s.n)/o.cpu)/(float64(h.s.n)/h.cpu))
						}
					}
				}
				p("| %s | %s | %s | %s | %s | %s | %s |\n", target, median(rps, "%.0f"), median(p99, "%.1f"), median(perCPU, "%.0f"),
					median(vsH, "%.2f"), median(cpuVsH, "%.2f"), median(p99VsH, "%.2f"))
			}
			p("\nEvery round:\n\n")
		}
		p("| target | round | req/s | p50 ms | p99 ms | errors | proxy CPU s | req per proxy CPU-s | req/s vs direct | req/s vs HAProxy | req per CPU-s vs HAProxy | CPU µs per request: generator / instances / proxy / all |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, o := range r.overhead {
			direct, _, _ := roundRows(r.overhead, o.round, "direct")
			_, haproxy, _ := roundRows(r.overhead, o.round, o.target)
			perCPU, vsH := "–", "–"
			if o.cpu > 0 {
				perCPU = fmt.Sprintf("%.0f", float64(o.s.n)/o.cpu)
				if haproxy.cpu > 0 {
					vsH = fmt.Sprintf("%.2f", (float64(o.s.n)/o.cpu)/(float64(haproxy.s.n)/haproxy.cpu))
				}
			}
			p("| %s | %d | %.0f | %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", o.target, max(o.round, 1), o.s.perSec, ms(o.s.p50), ms(o.s.p99), o.s.errors(),
				cpuCell(o.cpu), perCPU, ratio(o.s.perSec, direct.s.perSec), ratio(o.s.perSec, haproxy.s.perSec), vsH, cpuSplit(o))
		}
		p("\nThe load generator, the proxies and the instances share the same %d CPUs, so throughput is bounded by the machine; ", runtime.NumCPU())
		p("requests per proxy CPU-second is the efficiency figure. The last column splits the CPU the whole run spent per request ")
		p("(/proc and getrusage, 10 ms ticks): what a proxy makes the generator and the instances spend also comes out of the same CPUs.\n\n")
	}

	if len(r.overload) > 0 {
		p("## Overload: 3 instances × %d requests at a time × %v each = %d requests/s capacity; open-loop load for 10 s\n\n", overloadWorkers, overloadWork, overloadCapacity)
		p("Latency counts from each request's scheduled send time. Shed = 503 with Retry-After.\n\n")
		p("| proxy | offered req/s | 2xx | 2xx p50 ms | 2xx p99 ms | 2xx p99 after 1 s | shed | other non-2xx | socket | timeouts (%v) |\n", clientTimeout)
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, o := range r.overload {
			s := o.s
			steady := "–"
			if o.steady.ok > 0 {
				steady = ms(o.steady.p99)
			}
			p("| %s | %d (%.1f×) | %d | %s | %s | %s | %d | %d | %d | %d |\n", o.peer, o.rate, float64(o.rate)/float64(overloadCapacity), s.ok, ms(s.p50), ms(s.p99), steady, s.shed, s.status, s.socket, s.timeout)
		}
		for _, o := range r.overload {
			if c := o.s.codeList(); c != "" {
				p("\n- %s at %.1f×: non-2xx statuses %s", o.peer, float64(o.rate)/float64(overloadCapacity), c)
			}
		}
		p("\n")
		p("\n")
	}
	return w.String()
}

// cpuSplit is the CPU each part of the machine spent per request in an
// overhead run: the load generator, the instances, the proxy, all three.
func cpuSplit(o overheadRow) string {
	if o.s.n == 0 {
		return "–"
	}
	us := func(c float64) float64 { return c / float64(o.s.n) * 1e6 }
	return fmt.Sprintf("%.0f / %.0f / %.0f / %.0f", us(o.client), us(o.instances), us(o.cpu), us(o.client+o.instances+o.cpu))
}

func cpuCell(c float64) string {
	if c == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", c)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// roundRows returns target's overhead row of round and HAProxy's row of the same round.
func roundRows(rows []overheadRow, round int, target string) (o, haproxy overheadRow, ok bool) {
	for _, x := range rows {
		if x.round != round {
			continue
		}
		if x.target == target {
			o, ok = x, true
		}
		if x.target == "haproxy" {
			haproxy = x
		}
	}
	return o, haproxy, ok
}

// median formats the median of vs, or "–" when there is none.
func median(vs []float64, format string) string {
	if len(vs) == 0 {
		return "–"
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf(format, m)
}
