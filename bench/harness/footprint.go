package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on
// every Linux architecture Go supports (getconf CLK_TCK).
const clockTicks = 100

// footprintRow is scenario (b) for one supervisor: its own RSS and CPU while
// it supervises n idle instances.
type footprintRow struct {
	Name      string  `json:"name"`
	Instances int     `json:"instances"`
	Probes    string  `json:"probes"`
	Processes int     `json:"supervisor_processes"` // summed: runit is one runsv per instance plus runsvdir
	RSSMiB    summary `json:"rss_mib"`
	PSSMiB    summary `json:"pss_mib"`
	CPUPct    summary `json:"cpu_pct_of_one_core"` // per-interval samples
	CPUMean   float64 `json:"cpu_pct_mean"`        // total CPU time over the whole window
	Seconds   float64 `json:"window_seconds"`
	Error     string  `json:"error,omitempty"`
}

// medicFootprintProbes gives every instance the three probes at 1 s.
const medicFootprintProbes = `      startup:   {http: {path: /healthz/live}, period: 1s, timeout: 500ms, failure_threshold: 30}
      liveness:  {http: {path: /healthz/live}, period: 1s, timeout: 500ms, failure_threshold: 3}
      readiness: {http: {path: /healthz/ready}, period: 1s, timeout: 500ms}
`

// runFootprint measures each supervisor in turn (a minute each, by default):
// CPU time is the process's own, so contention matters less here than for latencies.
func (b *bench) runFootprint(ctx context.Context) ([]footprintRow, error) {
	// The instances run a copy of the demoapp binary: when it is bin/medic itself, the
	// instances would share medic's text pages and PSS would credit medic with a
	// fraction of its own code.
	app, err := copyBinary(b.app, filepath.Join(b.dir, "footprint"))
	if err != nil {
		return nil, err
	}
	var rows []footprintRow
	for _, name := range b.peers {
		if ctx.Err() != nil {
			break
		}
		row := footprintRow{Name: name, Instances: b.fpInstances, Probes: "none (it has none)"}
		s := spec{app: app, basePort: b.ports.take(b.fpInstances), n: b.fpInstances, medic: medicSettings{apiPort: b.ports.take(1)}}
		switch name {
		case "medic":
			row.Probes = "startup + liveness + readiness, http, every 1s"
			s.medic.probes = medicFootprintProbes
		case "monit":
			row.Probes = "process + 2 http checks (live, ready), every 1s"
		}
		if err := b.footprintOne(ctx, name, s, &row); err != nil {
			b.log.Warn("footprint: failed", "supervisor", name, "err", err)
			row.Error = err.Error()
		}
		rows = append(rows, row)
	}
	return rows, ctx.Err()
}

func (b *bench) footprintOne(ctx context.Context, name string, s spec, row *footprintRow) error {
	t, err := b.newTarget(name, "footprint", s)
	if err != nil {
		return err
	}
	if err := t.start(); err != nil {
		return err
	}
	defer b.stopAll([]*target{t})
	pr := newProber(time.Second)
	if err := t.ready(ctx, pr, 90*time.Second); err != nil {
		return err
	}
	b.log.Info("footprint: all instances serving; warming up", "supervisor", name, "instances", s.n, "warmup", b.fpWarmup)
	if !sleepCtx(ctx, b.fpWarmup) {
		return ctx.Err()
	}
	var rss, pss, cpu []float64
	last := map[procID]uint64{}
	var first, prev time.Time
	var totalTicks uint64
	for i := 0; i <= b.fpSamples; i++ { // sample 0 is the baseline for the first interval
		if i > 0 && !sleepCtx(ctx, time.Until(prev.Add(time.Second))) {
			return ctx.Err()
		}
		if t.p.exited() {
			return fmt.Errorf("%s exited during the window: %v", name, t.p.err)
		}
		now := time.Now()
		pids := t.supervisorPIDs(isDemoapp)
		row.Processes = len(pids)
		var kb, pkb, delta uint64
		cur := map[procID]uint64{}
		for _, pid := range pids {
			st, err := readStat(pid)
			if err != nil {
				continue
			}
			id := procID{pid, st.start}
			cur[id] = st.utime + st.stim
			if old, ok := last[id]; ok && cur[id] >= old {
				delta += cur[id] - old
			}
			if v, err := rssKB(pid); err == nil {
				kb += v
			}
			if v, err := pssKB(pid); err == nil {
				pkb += v
			}
		}
		if i == 0 {
			first = now
		} else {
			rss = append(rss, float64(kb)/1024)
			pss = append(pss, float64(pkb)/1024)
			cpu = append(cpu, 100*float64(delta)/clockTicks/now.Sub(prev).Seconds())
			totalTicks += delta
		}
		last, prev = cur, now
	}
	row.RSSMiB = summarize(rss, 0)
	row.PSSMiB = summarize(pss, 0)
	row.CPUPct = summarize(cpu, 0)
	row.Seconds = prev.Sub(first).Seconds()
	row.CPUMean = 100 * float64(totalTicks) / clockTicks / row.Seconds
	return nil
}

// isDemoapp reports whether pid is a demo instance rather than part of a
// supervisor: its argv holds "demoapp" and "--listen" (the run script execs it).
func isDemoapp(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	hasApp, hasListen := false, false
	for _, a := range args {
		hasApp = hasApp || a == "demoapp"
		hasListen = hasListen || a == "--listen"
	}
	return hasApp && hasListen
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// copyBinary copies argv[0] into dir and returns argv running the copy.
func copyBinary(argv []string, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("footprint dir: %w", err)
	}
	src, err := os.ReadFile(argv[0])
	if err != nil {
		return nil, fmt.Errorf("copy demoapp binary: %w", err)
	}
	dst := filepath.Join(dir, "demoapp-"+filepath.Base(argv[0]))
	if err := os.WriteFile(dst, src, 0o755); err != nil {
		return nil, fmt.Errorf("copy demoapp binary: %w", err)
	}
	return append([]string{dst}, argv[1:]...), nil
}
