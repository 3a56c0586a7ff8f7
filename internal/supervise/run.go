package supervise

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/logfile"
	"github.com/medic-dev/medic/internal/probe"
)

// runOnce starts the process (or takes over an adopted one), watches it
// until it ends (crash, failed probe, command or shutdown) and returns how it
// ended. Probes and the notify socket live exactly as long as the process: a
// probe of a stopped instance is cancelled.
func (in *Instance) runOnce(ctx context.Context, reply *command, adopted *adoption) (outcome, error) {
	clk := in.env.Clock
	var notify *notifySocket
	env := in.spec.Env
	notifyPath := in.notifyPath()
	if adopted != nil && adopted.rec.Notify != "" {
		notifyPath = adopted.rec.Notify // where the adopted process sends its WATCHDOG=1
	}
	if in.spec.Notify != nil && (in.spec.Notify.Ready || in.spec.Notify.Watchdog > 0) {
		os.MkdirAll(filepath.Dir(notifyPath), 0o755)
		ns, err := listenNotify(notifyPath)
		if err != nil {
			if adopted != nil {
				adopted.p.release()
			}
			return outcome{}, err
		}
		defer ns.close()
		notify = ns
		env = append(env[:len(env):len(env)], "NOTIFY_SOCKET="+ns.path)
		if w := in.spec.Notify.Watchdog.D(); w > 0 {
			env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(w.Microseconds(), 10))
		}
	}
	in.update(func(s *InstanceStatus) { s.State = medic.StateStarting })
	var p *process
	startNice := 0 // the nice value the process starts at; 0: medic's own (inherited)
	startedAt := clk.Now()
	if adopted != nil {
		p = adopted.p
		if !adopted.rec.StartedAt.IsZero() {
			startedAt = adopted.rec.StartedAt
		}
	} else {
		if err := in.openCgroup(); err != nil {
			return outcome{}, err
		}
		if in.startNice > 0 {
			// Only the instance's first run: a restart runs at medic's own priority.
			startNice, in.startNice = min(ownNice()+in.startNice, MaxStartNice), 0
		}
		var err error
		p, err = startProcess(in.spec.Argv, env, in.spec.Dir, in.cg, in.lr, startNice, in.spec.LogPath, in.spec.LogMode, clk.Now)
		if err != nil {
			in.lr.remove()
			in.lr = nil
			return outcome{}, err
		}
		in.lr = nil // the run's now
	}
	// niced: this run was started at a priority below medic's own, to be
	// set back when it is ready, or at once when a liveness or startup probe
	// try fails (a start starved of CPU must not fail its probes for it); an
	// adopted run the last medic started so and that was not ready yet is set
	// back too (nice.go).
	var niced atomic.Int64
	niced.Store(int64(startNice))
	if adopted != nil && !adopted.rec.Ready && canRenice() {
		niced.Store(int64(adopted.rec.StartNice))
	}
	backToOwn := func(why string) {
		if n := niced.Swap(0); n != 0 {
			if err := restoreGroupNice(p.pid, int(n)); err != nil {
				in.env.Logger.Warn("restore the CPU priority of a started instance", "instance", in.id, "when", why, "err", err)
			}
		}
	}
	in.tracker = in.tracker.Started(clk.Now())
	needNotify := notify != nil && in.spec.Notify.Ready && adopted == nil // an adopted process said READY=1 to the last medic
	hasReadiness := in.spec.Probes.Readiness != nil
	var restarts int
	in.update(func(s *InstanceStatus) {
		switch {
		case adopted != nil:
			s.Restarts = adopted.rec.Restarts
		case !s.StartedAt.IsZero():
			s.Restarts++
		}
		restarts = s.Restarts
		s.PID, s.StartedAt, s.Since = p.pid, startedAt, clk.Now()
		s.State, s.Started, s.Ready, s.Notified = medic.StateStarting, false, false, false
		s.Probes = map[medic.ProbeKind]ProbeStatus{}
		s.RSSBytes, s.CPU, s.FDs = 0, 0, 0
	})
	if in.env.procs != nil {
		r := procRecord{PGID: p.pid, Signal: signalName(in.spec.StopSignal)[3:], Grace: in.spec.Grace,
			Spec: in.spec.Hash, StartedAt: startedAt, Restarts: restarts}
		if notify != nil {
			r.Notify = notify.path
		}
		if p.cg != nil {
			r.Mount, r.Group = p.cg.mount, p.cg.group
		}
		r.V1 = p.lr.v1Dirs()
		r.StartNice = int(niced.Load())
		in.env.procs.started(in.id.String(), r) // forgotten in finish; kept on --detach and when medic dies
	}
	if adopted != nil {
		in.emit(ctx, medic.EventAdopted, adopted.reason, map[string]string{"pid": strconv.Itoa(p.pid), "port": strconv.Itoa(in.spec.Port),
			"started_at": startedAt.UTC().Format(time.RFC3339Nano), "cgroup": in.cgroupName()})
	} else {
		in.emit(ctx, medic.EventStarted, fmt.Sprintf("started pid %d", p.pid), map[string]string{"pid": strconv.Itoa(p.pid), "port": strconv.Itoa(in.spec.Port)})
	}
	if reply != nil {
		reply.done <- nil
	}

	// Probes, under a context that ends with this run.
	pctx, cancelProbes := context.WithCancel(ctx)
	var wg sync.WaitGroup
	updates := make(chan probe.Update, 16)
	set := &probe.Set{
		Startup: in.spec.Probes.Startup, Liveness: in.spec.Probes.Liveness, Readiness: in.spec.Probes.Readiness,
		Target:       probe.Target{Port: in.spec.Port, Dir: in.spec.Dir, Env: in.spec.Env},
		Clock:        clk,
		Scheduler:    in.env.ProbeScheduler,
		ReadyAtStart: adopted != nil && adopted.rec.Ready, // until its own probes say otherwise
		OnUpdate: func(u probe.Update) {
			select {
			case updates <- u:
			case <-pctx.Done():
			}
		},
	}
	set.OnShortage = func(kind medic.ProbeKind, o probe.Outcome) {
		in.emit(pctx, medic.EventProbeUnknown, fmt.Sprintf("%s probe not judged (the instance is not blamed): %s", kind, o.Detail),
			map[string]string{"probe": string(kind), "health": o.Health.String()})
	}
	set.Observe = func(kind medic.ProbeKind, o probe.Outcome, took time.Duration) {
		if kind != medic.ProbeReadiness && o.Health == medic.HealthFailure {
			backToOwn(string(kind) + " probe failed")
		}
		if in.env.Observe != nil {
			in.env.Observe(in.id, kind, o, took)
		}
	}
	var runner interface{ Serve(context.Context) error } = set
	if in.env.NewProbeSet != nil {
		runner = in.env.NewProbeSet(set)
	}
	if in.env.NewProbeSet == nil && set.Scheduler != nil {
		// On the agent's scheduler the probes need no goroutine of their own.
		wait, err := set.Start(pctx)
		if err != nil {
			wait = func() {} // as Serve: nothing started, and the instance runs unprobed
			in.env.Logger.Warn("probes not started", "instance", in.id, "err", err)
		}
		wg.Add(1)
		context.AfterFunc(pctx, func() { defer wg.Done(); wait() })
	} else {
		wg.Add(1)
		go func() { defer wg.Done(); runner.Serve(pctx) }()
	}
	stopProbes := func() { cancelProbes(); wg.Wait() }

	var watchdog <-chan time.Time
	var wdTimer interface{ Stop() bool }
	if notify != nil && in.spec.Notify.Watchdog > 0 {
		t := clk.NewTimer(in.spec.Notify.Watchdog.D())
		watchdog, wdTimer = t.C(), t
		defer t.Stop()
	}
	var notifyMsgs <-chan map[string]string
	if notify != nil {
		notifyMsgs = notify.msgs
	}
	started, probeReady, notified := false, !hasReadiness, !needNotify
	refresh := func() {
		ready := started && probeReady && notified
		if ready {
			backToOwn("ready") // before the proxy sees it ready
		}
		in.update(func(s *InstanceStatus) {
			s.Started = started
			s.Notified = notified && needNotify
			s.Ready = ready
			if started && notified && s.State == medic.StateStarting {
				s.State, s.Since = medic.StateRunning, clk.Now()
			}
		})
	}
	if adopted != nil && adopted.rec.Ready {
		// Ready under the previous medic: it takes traffic at once (the proxy
		// routes to it before any probe here ran); the first probe that
		// fails takes it out, as it would have under the previous medic.
		started, probeReady = true, true
		refresh()
	}

	logCheck := clk.NewTimer(logCheckEvery)
	defer func() { logCheck.Stop() }()

	for {
		select {
		case <-logCheck.C():
			if _, err := logfile.CopyTruncate(in.spec.LogPath, in.spec.LogMax, in.spec.LogFiles); err != nil {
				in.env.Logger.Warn("rotate instance log", "instance", in.id, "err", err)
			}
			logCheck = clk.NewTimer(logCheckEvery)

		case ex := <-p.exited:
			stopProbes()
			if n, ok := p.lr.oomKilled(); ok {
				ex.Reason = fmt.Sprintf("oom_killed: the memory limit of %d bytes was reached and the kernel's OOM killer killed %d process(es) of the instance; the main process %s", in.spec.Limits.Memory, n, ex.Reason)
				in.emit(ctx, medic.EventOOMKilled, ex.Reason, map[string]string{"pid": strconv.Itoa(p.pid), "memory_limit": strconv.FormatInt(in.spec.Limits.Memory, 10), "oom_kills": strconv.FormatInt(n, 10)})
			}
			in.killLeftovers(p)
			in.finish(ex)
			return outcome{exit: ex}, nil

		case u := <-updates:
			in.update(func(s *InstanceStatus) {
				s.Probes[u.Kind] = ProbeStatus{Health: u.Health, Detail: u.Detail, Since: u.Time}
				if u.Health == medic.HealthFailure {
					s.Reason = fmt.Sprintf("%s probe failed: %s", u.Kind, u.Detail)
				}
			})
			in.emit(ctx, medic.EventProbe, fmt.Sprintf("%s probe %s: %s", u.Kind, u.Health, u.Detail), map[string]string{"probe": string(u.Kind), "health": u.Health.String()})
			switch {
			case u.Kind == medic.ProbeStartup && u.Health == medic.HealthSuccess:
				started = true
			case u.Kind == medic.ProbeReadiness:
				probeReady = u.Health == medic.HealthSuccess
			case u.Health == medic.HealthFailure: // liveness or startup gave up
				cause := fmt.Sprintf("%s probe failed: %s", u.Kind, u.Detail)
				stopProbes()
				ex := in.stopProcess(ctx, p, cause, false)
				in.finish(ex)
				return outcome{exit: ex, cause: cause}, nil
			}
			refresh()

		case m := <-notifyMsgs:
			if m["READY"] == "1" && !notified {
				notified = true
				in.emit(ctx, medic.EventNotify, "sd_notify READY=1", nil)
			}
			if m["WATCHDOG"] == "1" && wdTimer != nil {
				wdTimer.Stop()
				t := clk.NewTimer(in.spec.Notify.Watchdog.D())
				watchdog, wdTimer = t.C(), t
			}
			refresh()

		case <-watchdog:
			cause := fmt.Sprintf("watchdog timeout: no WATCHDOG=1 within %v", in.spec.Notify.Watchdog)
			stopProbes()
			ex := in.stopProcess(ctx, p, cause, false)
			in.finish(ex)
			return outcome{exit: ex, cause: cause}, nil

		case c := <-in.cmds:
			if c.kind == cmdStart {
				c.done <- nil
				continue
			}
			reason := fmt.Sprintf("%s by %s", map[cmdKind]string{cmdRestart: "restart", cmdStop: "stop"}[c.kind], c.actor)
			if c.reason != "" {
				reason += ": " + c.reason
			}
			stopProbes()
			ex := in.stopProcessAs(ctx, p, c.actor, reason, true)
			in.finish(ex)
			return outcome{exit: ex, cause: reason, next: c.kind, reply: &c}, nil

		case <-ctx.Done():
			stopProbes()
			actor, cause, retire := stopCause(ctx)
			if in.env.detached() && !retire {
				p.release()
				if notify != nil {
					notify.keep = true // the process keeps sending there; the next medic listens on it
				}
				if in.env.handingOver() {
					// The instance stays a backend of this medic's proxies while
					// they drain the connections they hold: the new medic
					// supervises it, nothing here changes its traffic.
					in.mu.Lock()
					in.st.Ready = false
					in.mu.Unlock()
				} else {
					in.leaving.Store(true)
					in.update(func(s *InstanceStatus) { s.Ready = false })
				}
				return outcome{detach: true}, nil
			}
			grace := in.spec.Grace
			if by := stopBy(ctx); !by.IsZero() {
				if g := max(min(grace, by.Sub(in.env.Clock.Now())), 0); g < grace {
					cause += fmt.Sprintf(" (stop grace cut from %v to %v: stopped by %s)", grace, g.Round(time.Millisecond), by.Format(time.RFC3339Nano))
					grace = g
				}
			}
			ex := in.stopProcessWithin(context.WithoutCancel(ctx), p, actor, cause, true, grace)
			in.finish(ex)
			return outcome{exit: ex, cause: cause}, nil
		}
	}
}

// openCgroup creates a fresh cgroup for the next run of the instance; without
// one (cgroups unusable, or the creation failed) the process group is the
// bound. Each run gets its own: a process cloned into a cgroup that was once
// killed through cgroup.kill is SIGKILLed at birth by some kernels (seen on
// 6.18), and an empty fresh cgroup needs no check for leftovers.
//
// The run's limits come with it (its v2 cgroup's memory.max and pids.max,
// or its own v1 cgroups): an instance whose limits cannot be applied does
// not start (the error is its start failure; the config check at start and
// reload makes this rare).
func (in *Instance) openCgroup() error {
	name := fmt.Sprintf("%s.%d.%s", in.spec.Service, in.spec.Index, strconv.FormatInt(time.Now().UnixNano(), 36))
	if in.cg == nil && in.env.cgroups != nil {
		cg, err := in.env.cgroups.instance(name, in.spec.Limits)
		switch {
		case err != nil && in.spec.Limits.set():
			return fmt.Errorf("apply the limits: %w", err)
		case err != nil:
			in.env.Logger.Warn("instance runs without its own cgroup", "instance", in.id, "err", err)
		default:
			in.cg = cg
		}
	}
	lr, err := in.env.limits.open(name, in.spec.Limits, in.cg)
	if err != nil {
		return fmt.Errorf("apply the limits: %w", err)
	}
	in.lr = lr
	return nil
}

func (in *Instance) cgroupName() string {
	if in.cg == nil {
		return ""
	}
	return in.cg.group
}

// finish records the exit in the status.
func (in *Instance) finish(ex medic.Exit) {
	if in.env.procs != nil {
		in.env.procs.exited(in.id.String())
	}
	in.update(func(s *InstanceStatus) {
		e := ex
		s.LastExit = &e
		s.PID, s.Ready, s.Started = 0, false, false
		if s.State != medic.StateStopping {
			s.Reason = "exited: " + ex.Reason
		}
	})
}

// stopProcess takes the instance out of traffic (draining in-flight work when
// drain is set), sends the stop signal to the whole process group, waits the
// grace period, then SIGKILLs the group. It returns once the main process exited
// and no member of the group is left.
func (in *Instance) stopProcess(ctx context.Context, p *process, reason string, drain bool) medic.Exit {
	return in.stopProcessAs(ctx, p, shutdownActor, reason, drain)
}

// stopProcessAs is stopProcess on behalf of actor, who is named in the record.
func (in *Instance) stopProcessAs(ctx context.Context, p *process, actor, reason string, drain bool) medic.Exit {
	return in.stopProcessWithin(ctx, p, actor, reason, drain, in.spec.Grace)
}

// stopProcessWithin is stopProcessAs with the grace given (the drain and
// the wait after the signal both end within it; SIGKILL then).
func (in *Instance) stopProcessWithin(ctx context.Context, p *process, actor, reason string, drain bool, within time.Duration) medic.Exit {
	in.update(func(s *InstanceStatus) {
		s.Ready = false
		s.State = medic.StateStopping
		s.Since = in.env.Clock.Now()
		s.Reason = reason
	})
	in.emitAs(ctx, actor, medic.EventStopping, reason, map[string]string{"pid": strconv.Itoa(p.pid), "signal": signalName(in.spec.StopSignal), "grace": within.String()})
	grace := in.env.Clock.NewTimer(within)
	defer grace.Stop()
	if drain && in.env.Hooks != nil {
		dctx, cancel := context.WithTimeout(ctx, within)
		in.env.Hooks.Drain(dctx, in.id)
		cancel()
	}
	if err := p.signal(in.spec.StopSignal); err != nil {
		in.env.Logger.Warn("stop signal failed", "instance", in.id, "err", err)
	}
	var ex medic.Exit
	select {
	case ex = <-p.exited:
	case <-grace.C():
		p.killAll()
		ex = <-p.exited
		ex.Reason += fmt.Sprintf(" (SIGKILL after %v grace)", within)
	}
	in.killLeftovers(p)
	return ex
}

// killLeftovers SIGKILLs any process left in the cgroup (or, without one, in
// the process group) after the main process ended, so that no orphaned
// grandchild or setsid escapee keeps the port or the pipes.
//
// The run's cgroup is removed with it: the next run gets a fresh one.
func (in *Instance) killLeftovers(p *process) {
	if p.leftoversAlive() {
		in.env.Logger.Warn("killing leftover processes of the instance", "instance", in.id, "pgid", p.pid, "cgroup", in.cgroupName())
		if err := p.killAll(); err != nil {
			in.env.Logger.Warn("kill leftovers", "instance", in.id, "err", err)
		}
	}
	p.lr.remove()
	if p.cg != nil {
		if err := p.cg.remove(); err != nil {
			in.env.Logger.Warn("remove the cgroup of a finished run", "instance", in.id, "err", err)
		}
		if in.cg == p.cg {
			in.cg = nil
		}
	}
}
