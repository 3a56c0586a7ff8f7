package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// runLoad is the `load` subcommand: the overhead scenario's closed loop
// against proxies that are already running, for experiments outside the
// harness (a proxy under perf, two builds side by side). With one -target
// it runs once; with several it alternates them in short runs, rotating
// the order every round, so that a machine whose load drifts weighs on
// each alike, and reports medians and per-round ratios to the first:
//
//	bench-proxy load -target new=127.0.0.1:8080@PID -target haproxy=127.0.0.1:8081@PID -d 3s -rounds 20
//
// @PID (optional) is the proxy's process, whose CPU time (with its
// children's) is read from /proc around each run.
func runLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var targets []loadTarget
	fs.Func("target", "name=host:port[@pid] (repeatable); GET / on it", func(v string) error {
		t, err := parseLoadTarget(v)
		targets = append(targets, t)
		return err
	})
	conns := fs.Int("conns", 32, "concurrent keep-alive connections")
	d := fs.Duration("d", 3*time.Second, "length of one measured run (after a warm-up of a tenth of it)")
	rounds := fs.Int("rounds", 1, "rounds (each runs every target once)")
	verbose := fs.Bool("v", false, "print every run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(targets) == 0 {
		return fmt.Errorf("no -target given")
	}
	type run struct {
		s          summary
		p90        time.Duration
		gen, proxy float64 // CPU µs per request
	}
	runs := make([][]run, len(targets)) // [target][round]
	for r := range max(*rounds, 1) {
		for k := range targets {
			i := (r + k) % len(targets)
			t := targets[i]
			url := "http://" + t.addr + "/"
			closedLoop(url, *conns, *d/10, clientTimeout, nil)
			c0, p0 := selfCPUSeconds(), t.cpu()
			ss := closedLoop(url, *conns, *d, clientTimeout, nil)
			c1, p1 := selfCPUSeconds(), t.cpu()
			s := summarize(ss, 0, *d)
			n := float64(max(s.n, 1))
			x := run{s: s, p90: percentile(ss, 0.90), gen: (c1 - c0) / n * 1e6, proxy: (p1 - p0) / n * 1e6}
			runs[i] = append(runs[i], x)
			if *verbose {
				fmt.Printf("round %d %s req/s %.0f p50 %s p90 %s p99 %s errors %d generator-cpu-us/req %.1f proxy-cpu-us/req %.1f\n",
					r+1, t.name, s.perSec, ms(s.p50), ms(x.p90), ms(s.p99), s.errors(), x.gen, x.proxy)
			}
		}
	}
	fmt.Printf("medians of %d rounds of %v, %d connections; ratios per round to %s, then the median\n", max(*rounds, 1), *d, *conns, targets[0].name)
	for i, t := range targets {
		var rps, p50, p90, p99, gen, proxy, vs, p50vs, p99vs, cpuvs []float64
		errs, total := 0, 0
		for r, x := range runs[i] {
			total += x.s.n
			base := runs[0][r]
			rps = append(rps, x.s.perSec)
			p50 = append(p50, x.s.p50.Seconds()*1e3)
			p90 = append(p90, x.p90.Seconds()*1e3)
			p99 = append(p99, x.s.p99.Seconds()*1e3)
			gen = append(gen, x.gen)
			proxy = append(proxy, x.proxy)
			vs = append(vs, x.s.perSec/base.s.perSec)
			p50vs = append(p50vs, x.s.p50.Seconds()/base.s.p50.Seconds())
			p99vs = append(p99vs, x.s.p99.Seconds()/base.s.p99.Seconds())
			if base.proxy > 0 {
				cpuvs = append(cpuvs, x.proxy/base.proxy)
			}
			errs += x.s.errors()
		}
		fmt.Printf("%-10s req/s %s (×%s) p50 %s (×%s) p90 %s p99 %s (×%s) errors %d requests %d generator-cpu-us/req %s proxy-cpu-us/req %s (×%s)\n",
			t.name, median(rps, "%.0f"), median(vs, "%.3f"), median(p50, "%.2f"), median(p50vs, "%.2f"), median(p90, "%.2f"), median(p99, "%.1f"), median(p99vs, "%.2f"),
			errs, total, median(gen, "%.1f"), median(proxy, "%.1f"), median(cpuvs, "%.3f"))
	}
	return nil
}

type loadTarget struct {
	name, addr string
	pid        int
}

func parseLoadTarget(v string) (loadTarget, error) {
	name, rest, ok := strings.Cut(v, "=")
	if !ok || name == "" || rest == "" {
		return loadTarget{}, fmt.Errorf("-target %q: want name=host:port[@pid]", v)
	}
	t := loadTarget{name: name, addr: rest}
	if a, p, ok := strings.Cut(rest, "@"); ok {
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 {
			return loadTarget{}, fmt.Errorf("-target %q: pid %q is not a process id", v, p)
		}
		t.addr, t.pid = a, pid
	}
	return t, nil
}

// cpu is the target's CPU seconds so far (0 without a pid).
func (t loadTarget) cpu() float64 {
	if t.pid == 0 {
		return 0
	}
	c, _ := cpuSeconds(t.pid)
	return c
}

// percentile is the q-quantile of the latencies of the 2xx answers in ss.
func percentile(ss []sample, q float64) time.Duration {
	var lats []time.Duration
	for _, x := range ss {
		if x.kind == kindOK {
			lats = append(lats, x.lat)
		}
	}
	if len(lats) == 0 {
		return 0
	}
	slices.Sort(lats)
	return lats[min(int(float64(len(lats))*q), len(lats)-1)]
}
