package main

import (
	"context"
	"fmt"
	"time"
)

// Scenario (c): the liveness settings under test. Detection needs
// failure_threshold failed probes: at most one period until the first probe,
// then threshold-1 periods, each failure taking the timeout.
const (
	hangPeriod    = time.Second
	hangTimeout   = 500 * time.Millisecond
	hangThreshold = 3
	hangGrace     = 2 * time.Second // stop.grace in the generated config (newMedic)
)

var medicHangProbes = fmt.Sprintf("      liveness: {http: {path: /healthz/live}, period: %v, timeout: %v, failure_threshold: %d}\n",
	hangPeriod, hangTimeout, hangThreshold)

// hangReport is scenario (c): POST /fault/hang, time until GET / answers 200
// from a new process. Peers without health checks never recover; they are not run.
type hangReport struct {
	Settings    string `json:"settings"`
	Expected    string `json:"expected"`
	Series      series `json:"medic"`
	Unavailable string `json:"unavailable,omitempty"`
}

func (b *bench) runHang(ctx context.Context) (*hangReport, error) {
	rep := &hangReport{
		Settings: fmt.Sprintf("liveness http /healthz/live, period %v, timeout %v, failure_threshold %d; stop TERM, grace %v",
			hangPeriod, hangTimeout, hangThreshold, hangGrace),
		Expected: fmt.Sprintf("between %v and %v to detect (threshold-1 periods + timeout, up to one more period of phase), plus the stop and the start",
			time.Duration(hangThreshold-1)*hangPeriod+hangTimeout, time.Duration(hangThreshold)*hangPeriod+hangTimeout),
		Series: series{Name: "medic"},
	}
	t, err := b.newTarget("medic", "hang", spec{app: b.app, basePort: b.ports.take(1), n: 1,
		medic: medicSettings{apiPort: b.ports.take(1), probes: medicHangProbes}})
	if err == nil {
		err = t.start()
	}
	if err == nil {
		defer b.stopAll([]*target{t})
		err = t.ready(ctx, newProber(250*time.Millisecond), 30*time.Second)
	}
	if err != nil {
		rep.Unavailable = err.Error()
		return rep, nil
	}
	// While hung, every poll waits out its timeout: keep it short for resolution.
	pr := newProber(25 * time.Millisecond)
	control := newProber(2 * time.Second)
	port := t.ports[0]
	for r := 0; r < b.hangRuns && ctx.Err() == nil; r++ {
		t0, d, err := b.hangAndTime(ctx, control, pr, t, port)
		if err != nil {
			b.log.Warn("hang: run failed", "round", r, "err", err)
			rep.Series.fail(err)
			if len(rep.Series.Errors) > 2 {
				break
			}
			continue
		}
		rep.Series.add(t0, d)
		b.log.Info("hang: run done", "round", r+1, "of", b.hangRuns, "recovered_in", d.Round(time.Millisecond))
	}
	rep.Series.close()
	return rep, ctx.Err()
}

func (b *bench) hangAndTime(ctx context.Context, control, pr *prober, t *target, port int) (time.Time, time.Duration, error) {
	id, _, err := control.waitServing(ctx, port, 0, 30*time.Second)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("before hang: %w", err)
	}
	if err := t.own(id.PID); err != nil {
		return time.Time{}, 0, err
	}
	if !sleepCtx(ctx, time.Until(t.upSince[port].Add(b.minUptime))) {
		return time.Time{}, 0, ctx.Err()
	}
	t0 := time.Now()
	if err := control.post(ctx, port, "/fault/hang"); err != nil {
		return time.Time{}, 0, err
	}
	nid, at, err := pr.waitServing(ctx, port, id.PID, 60*time.Second)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("after hang of pid %d: %w", id.PID, err)
	}
	if err := t.own(nid.PID); err != nil {
		return time.Time{}, 0, err
	}
	t.upSince[port] = at
	return t0, at.Sub(t0), nil
}
