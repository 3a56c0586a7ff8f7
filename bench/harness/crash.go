package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// series is one measured line of a report.
type series struct {
	Name    string    `json:"name"`
	Samples []float64 `json:"samples_ms"`
	// At is when each sample's fault was injected, to line samples up with the supervisors' logs.
	At      []time.Time `json:"at"`
	Errors  []string    `json:"errors,omitempty"`
	Summary summary     `json:"summary_ms"`
}

func (s *series) add(t0 time.Time, d time.Duration) {
	s.Samples = append(s.Samples, ms(d))
	s.At = append(s.At, t0.UTC())
}

func (s *series) fail(err error) { s.Errors = append(s.Errors, err.Error()) }

func (s *series) close() { s.Summary = summarize(s.Samples, len(s.Errors)) }

// crashReport is scenario (a): SIGKILL the instance, time until GET / answers
// 200 from a new process.
type crashReport struct {
	Runs        int               `json:"runs"`
	MinUptime   string            `json:"min_uptime"`
	Direct      series            `json:"direct_start"`
	Targets     []*series         `json:"targets"`
	Unavailable map[string]string `json:"unavailable,omitempty"`
}

// runCrash starts every supervisor with one instance, then measures them in
// interleaved rounds (A B C direct, B C direct A, …) so that machine noise
// falls on all of them alike.
func (b *bench) runCrash(ctx context.Context) (*crashReport, error) {
	rep := &crashReport{Runs: b.runs, MinUptime: b.minUptime.String(), Direct: series{Name: "demoapp own start (no supervisor)"}, Unavailable: map[string]string{}}
	pr := newProber(250 * time.Millisecond)
	var started, live []*target
	defer func() { b.stopAll(started) }()
	for _, name := range b.peers {
		t, err := b.newTarget(name, "crash", spec{app: b.app, basePort: b.ports.take(1), n: 1, medic: medicSettings{apiPort: b.ports.take(1)}})
		if err == nil {
			err = t.start()
		}
		if err == nil {
			started = append(started, t)
			err = t.ready(ctx, pr, 30*time.Second)
		}
		if err != nil {
			b.log.Warn("crash: supervisor unavailable; measuring the others", "supervisor", name, "err", err)
			rep.Unavailable[name] = err.Error()
			continue
		}
		live = append(live, t)
		rep.Targets = append(rep.Targets, &series{Name: name})
	}
	byName := map[string]*series{}
	for _, s := range rep.Targets {
		byName[s.Name] = s
	}
	directPort := b.ports.take(1)
	if err := os.MkdirAll(filepath.Join(b.dir, "direct"), 0o755); err != nil {
		return rep, fmt.Errorf("work dir for direct starts: %w", err)
	}
	n := len(live) + 1 // the direct start takes a slot in every round
	for r := 0; r < b.runs && ctx.Err() == nil; r++ {
		for k := 0; k < n && ctx.Err() == nil; k++ {
			i := (r + k) % n // rotate the order each round
			if i == len(live) {
				if t0, d, err := b.directStart(ctx, pr, directPort, r); err != nil {
					rep.Direct.fail(err)
				} else {
					rep.Direct.add(t0, d)
				}
				continue
			}
			t := live[i]
			s := byName[t.name]
			if len(s.Errors) > 3 {
				continue // broken: stop spending rounds on it
			}
			if t0, d, err := b.killAndTime(ctx, pr, t, t.ports[0]); err != nil {
				b.log.Warn("crash: run failed", "supervisor", t.name, "round", r, "err", err)
				s.fail(err)
			} else {
				s.add(t0, d)
			}
		}
		b.log.Info("crash: round done", "round", r+1, "of", b.runs)
	}
	rep.Direct.close()
	for _, s := range rep.Targets {
		s.close()
	}
	return rep, ctx.Err()
}

// killAndTime SIGKILLs the process serving port and returns the time until a
// new process answers GET / with 200.
func (b *bench) killAndTime(ctx context.Context, pr *prober, t *target, port int) (time.Time, time.Duration, error) {
	if t.p.exited() {
		return time.Time{}, 0, fmt.Errorf("%s exited: %v", t.name, t.p.err)
	}
	id, _, err := pr.waitServing(ctx, port, 0, 10*time.Second)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("before kill: %w", err)
	}
	if err := t.own(id.PID); err != nil {
		return time.Time{}, 0, err
	}
	// Kill a process that has run a while: runsv delays a restart by 1 s when
	// its service ran under 1 s, and medic's backoff counts young crashes.
	if wait := time.Until(t.upSince[port].Add(b.minUptime)); wait > 0 {
		select {
		case <-ctx.Done():
			return time.Time{}, 0, ctx.Err()
		case <-time.After(wait):
		}
	}
	t0 := time.Now()
	if err := syscall.Kill(id.PID, syscall.SIGKILL); err != nil {
		return time.Time{}, 0, fmt.Errorf("kill pid %d: %w", id.PID, err)
	}
	nid, at, err := pr.waitServing(ctx, port, id.PID, 30*time.Second)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("after kill of pid %d: %w", id.PID, err)
	}
	if err := t.own(nid.PID); err != nil {
		return time.Time{}, 0, err
	}
	t.upSince[port] = at
	return t0, at.Sub(t0), nil
}

// directStart starts the demoapp with no supervisor and returns the time from
// exec to the first 200: the floor any supervisor's restart adds to.
func (b *bench) directStart(ctx context.Context, pr *prober, port, round int) (time.Time, time.Duration, error) {
	dir := filepath.Join(b.dir, "direct")
	t0 := time.Now()
	p, err := startProc("demoapp", spec{app: b.app}.appArgv(port), dir, filepath.Join(dir, fmt.Sprintf("run%d.log", round)), nil)
	if err != nil {
		return time.Time{}, 0, err
	}
	defer p.stop(syscall.SIGKILL, 5*time.Second, nil)
	id, at, err := pr.waitServing(ctx, port, 0, 30*time.Second)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("direct start: %w; log: %s", err, p.logTail(1000))
	}
	if id.PID != p.pid {
		return time.Time{}, 0, fmt.Errorf("direct start: port %d answered from pid %d, not the started %d", port, id.PID, p.pid)
	}
	return t0, at.Sub(t0), nil
}
