package supervise

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/backoff"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/logfile"
	"github.com/medic-dev/medic/internal/probe"
)

// Spec is an instance's resolved configuration: arguments expanded, paths absolute.
type Spec struct {
	Service    string
	Index      int
	Argv       []string
	Env        []string
	Dir        string
	Port       int
	Policy     backoff.Policy
	StopSignal syscall.Signal
	Grace      time.Duration
	Probes     config.Probes
	Notify     *config.Notify
	LogPath    string
	LogMax     int64
	LogFiles   int
	LogMode    os.FileMode // of the log file; enforced at every start
	Limits     Limits      // memory and pids of each run (limits.go); zero: none
	Hash       string      // of what the process is started with (specHash): adoption needs the same
}

type cmdKind int

const (
	cmdRestart cmdKind = iota + 1
	cmdStop
	cmdStart
)

type command struct {
	kind   cmdKind
	actor  string
	reason string
	done   chan error // receives once the command took effect
}

// Instance supervises one replica: start, watch, probe, stop, restart.
type Instance struct {
	id     medic.InstanceID
	spec   Spec
	env    *Env
	cmds   chan command
	change broadcast // notified on every status change

	mu sync.Mutex
	st InstanceStatus

	tracker backoff.Tracker // owned by the Serve goroutine
	cg      *cgroup         // the instance's cgroup, created at first start (nil: none); owned by Serve
	lr      *limitRun       // the limits of the next run (nil: none); owned by Serve
	adopt   *procRecord     // what the previous medic recorded for this instance; set before Serve
	// startNice: the first run starts this much above medic's nice value
	// until it is ready (nice.go); later runs at medic's. Set before Serve,
	// then owned by Serve.
	startNice int
	leaving   atomic.Bool // detaching: the readiness it had stays in the record for the next medic

	cancel context.CancelCauseFunc // set by the supervisor when it starts Serve; a *retired cause names who stops it
	done   chan struct{}           // closed when Serve returned
}

// Env is what every instance shares with its supervisor.
type Env struct {
	Clock    clock.Clock
	Logger   *slog.Logger
	Emit     func(ctx context.Context, ev medic.Event) // durable record; may block briefly
	Hooks    Hooks
	RunDir   string                          // short directory for sd_notify sockets
	Gate     func(ctx context.Context) error // blocks until dependencies are ready
	Changed  func()                          // any instance changed (for dependency gates)
	Observe  func(id medic.InstanceID, kind medic.ProbeKind, o probe.Outcome, took time.Duration)
	Detach   bool                // on shutdown, leave processes running
	Redact   func(string) string // masks secrets in the stderr tail kept in the status (nil: kept as is)
	handover *atomic.Bool        // set by Supervisor.Handover: shut down as with Detach (shared by every instance)
	procs    *leftovers          // record of started groups (nil: none)
	cgroups  *cgroupTree         // parent of the instances' cgroups (nil: cgroups not usable)
	limits   limitPlan           // how resource limits are applied here (limits.go)
	// ProbeScheduler, if set, runs every instance's probes from one timer and
	// a pool of workers (probe.Scheduler); nil: a goroutine per probe.
	ProbeScheduler *probe.Scheduler
	// NewProbeSet builds the probe runner; tests replace it.
	NewProbeSet func(s *probe.Set) interface{ Serve(context.Context) error }
}

// Hooks connect an instance to traffic management (the proxy).
type Hooks interface {
	// Ready reports a change of the instance's readiness and address.
	Ready(id medic.InstanceID, port int, ready bool)
	// Drain takes the instance out of traffic and waits for in-flight work, bounded by ctx.
	Drain(ctx context.Context, id medic.InstanceID) error
	// Gone reports that the instance no longer exists (scaled down, service removed, medic stopping).
	Gone(id medic.InstanceID)
}

func newInstance(spec Spec, env *Env) *Instance {
	id := medic.InstanceID{Service: spec.Service, Index: spec.Index}
	in := &Instance{id: id, spec: spec, env: env, cmds: make(chan command, 4), tracker: backoff.New(spec.Policy)}
	in.st = InstanceStatus{ID: id.String(), Service: spec.Service, Index: spec.Index, Port: spec.Port, State: medic.StatePending, Since: env.Clock.Now()}
	return in
}

// Status returns a snapshot.
func (in *Instance) Status() InstanceStatus {
	in.mu.Lock()
	defer in.mu.Unlock()
	s := in.st
	s.Probes = make(map[medic.ProbeKind]ProbeStatus, len(in.st.Probes))
	for k, v := range in.st.Probes {
		s.Probes[k] = v
	}
	if s.LastExit != nil {
		e := *s.LastExit
		s.LastExit = &e
	}
	return s
}

func (in *Instance) update(f func(s *InstanceStatus)) {
	in.mu.Lock()
	wasReady := in.st.Ready
	f(&in.st)
	ready, port, alive, reason := in.st.Ready, in.st.Port, in.st.PID != 0, in.st.Reason
	in.mu.Unlock()
	if wasReady != ready {
		if in.env.Hooks != nil {
			in.env.Hooks.Ready(in.id, port, ready) // traffic first: before any record is written
		}
		if in.env.procs != nil && alive && !in.leaving.Load() { // for a next medic that adopts this run
			in.env.procs.ready(in.id.String(), ready)
		}
		// Readiness edges of a live process are state changes, recorded like any
		// other. When the process exited, the exit decision that follows at once
		// says it; a second durable record would only delay the restart.
		switch {
		case ready:
			in.emit(context.Background(), medic.EventReady, "ready", nil)
		case alive:
			in.emit(context.Background(), medic.EventUnready, "not ready: "+reason, nil)
		}
	}
	in.change.Notify()
	if in.env.Changed != nil {
		in.env.Changed()
	}
}

func (in *Instance) setState(s medic.InstanceState, reason string) {
	now := in.env.Clock.Now()
	in.update(func(st *InstanceStatus) {
		if st.State != s {
			st.Since = now
		}
		st.State = s
		if reason != "" {
			st.Reason = reason
		}
	})
}

func (in *Instance) emit(ctx context.Context, kind medic.EventKind, reason string, fields map[string]string) {
	in.emitAs(ctx, shutdownActor, kind, reason, fields)
}

// emitAs records an event on behalf of actor (an operator, a runbook, a
// reload) rather than the supervisor's own decision.
func (in *Instance) emitAs(ctx context.Context, actor string, kind medic.EventKind, reason string, fields map[string]string) {
	ev := medic.Event{Time: in.env.Clock.Now(), Kind: kind, Target: in.id.String(), Actor: actor, Reason: reason, Fields: fields}
	if in.env.Emit != nil {
		in.env.Emit(ctx, ev)
	}
}

// send queues a command and waits for it to take effect, or for ctx.
func (in *Instance) send(ctx context.Context, c command) error {
	c.done = make(chan error, 1)
	select {
	case in.cmds <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// outcome of one run of the process.
type outcome struct {
	exit   medic.Exit
	cause  string   // why medic stopped it ("liveness probe failed: …"); empty for a crash
	next   cmdKind  // cmdRestart: start again at once (operator); cmdStop: stay stopped; 0: apply the policy
	reply  *command // command to answer once the next state is reached
	detach bool     // medic is shutting down and leaves the process running
}

// Serve runs the instance until ctx ends. On return the process is stopped
// (unless Env.Detach) and every goroutine it started has ended.
func (in *Instance) Serve(ctx context.Context) error {
	var adopted *adoption
	if in.adopt != nil {
		adopted = in.tryAdopt(ctx, *in.adopt)
		in.adopt = nil
	}
	if in.env.Gate != nil && adopted == nil {
		in.setState(medic.StatePending, "waiting for dependencies")
		if err := in.env.Gate(ctx); err != nil {
			in.setState(medic.StateStopped, "shutdown before start")
			return nil
		}
	}
	var pending *command // a command to answer once the new process started
	want := cmdStart
	for ctx.Err() == nil {
		if want == cmdStop {
			c, ok := in.waitStart(ctx)
			if !ok {
				break
			}
			pending, want = c, cmdStart
		}
		out, err := in.runOnce(ctx, pending, adopted)
		pending, adopted = nil, nil
		if err != nil {
			// Could not start at all: treat as a crash so the backoff applies.
			out = outcome{exit: medic.Exit{Code: -1, At: in.env.Clock.Now(), Reason: err.Error()}}
			in.setState(medic.StateFailed, err.Error())
		}
		if out.detach || ctx.Err() != nil && out.next == 0 {
			break
		}
		switch out.next {
		case cmdStop:
			in.setState(medic.StateStopped, out.reply.reason)
			in.emitAs(ctx, out.reply.actor, medic.EventStopped, fmt.Sprintf("%s; stopped by %s", out.exit.Reason, out.reply.actor), nil)
			out.reply.done <- nil
			want = cmdStop
			continue
		case cmdRestart:
			in.tracker = in.tracker.Forced(in.env.Clock.Now())
			pending = out.reply
			continue
		}
		var d backoff.Decision
		in.tracker, d = in.tracker.Exited(out.exit, out.cause, in.env.Clock.Now(), rand.Float64())
		fields := map[string]string{"exit": out.exit.Reason, "attempt": strconv.Itoa(d.Attempt), "delay": d.Delay.String()}
		if d.Action == backoff.GiveUp {
			in.setState(medic.StateStopped, d.Reason)
			in.emit(ctx, medic.EventGiveUp, d.Reason, fields)
			want = cmdStop
			continue
		}
		state, kind := medic.StateBackoff, medic.EventRestart
		if d.CrashLoop {
			state, kind = medic.StateCrashLoop, medic.EventCrashLoop
			fields["stderr_tail"] = in.stderrTail()
		}
		in.update(func(s *InstanceStatus) {
			if d.CrashLoop {
				s.Stderr = fields["stderr_tail"]
			} else {
				s.Stderr = ""
			}
		})
		in.setState(state, d.Reason)
		in.emit(ctx, kind, d.Reason, fields)
		if d.Delay > 0 {
			c, ok := in.sleep(ctx, d.Delay)
			if !ok {
				break
			}
			if c != nil {
				switch c.kind {
				case cmdStop:
					in.setState(medic.StateStopped, c.reason)
					in.emitAs(ctx, c.actor, medic.EventStopped, "stopped during backoff by "+c.actor, nil)
					c.done <- nil
					want = cmdStop
					continue
				default: // start/restart: cut the backoff short
					pending = c
				}
			}
		}
	}
	if st := in.Status().State; st != medic.StateStopped {
		actor, cause, retire := stopCause(ctx)
		in.setState(medic.StateStopped, cause)
		if retire {
			var fields map[string]string
			if ex := in.Status().LastExit; ex != nil {
				fields = map[string]string{"exit": ex.Reason} // "... (SIGKILL after 1s grace)" when it came to that
			}
			in.emitAs(context.WithoutCancel(ctx), actor, medic.EventStopped, cause, fields)
		}
	}
	if in.cg != nil && !in.env.detached() {
		in.cg.remove()
	}
	if in.env.Hooks != nil && !in.env.handingOver() { // handed over, it is not gone: the old proxies drain through it
		in.env.Hooks.Gone(in.id)
	}
	return nil
}

// waitStart blocks in the stopped state until a start or restart command.
func (in *Instance) waitStart(ctx context.Context) (*command, bool) {
	for {
		select {
		case <-ctx.Done():
			return nil, false
		case c := <-in.cmds:
			if c.kind == cmdStop {
				c.done <- nil
				continue
			}
			return &c, true
		}
	}
}

// sleep waits out a backoff delay; a command cuts it short.
func (in *Instance) sleep(ctx context.Context, d time.Duration) (*command, bool) {
	t := in.env.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, false
	case <-t.C():
		return nil, true
	case c := <-in.cmds:
		return &c, true
	}
}

// stderrTail is the last of the process's output, secrets masked: it is
// shown in the status and the dashboard, and sent as crash-loop evidence.
func (in *Instance) stderrTail() string {
	tail := logfile.Tail(in.spec.LogPath, outputTail)
	if in.env.Redact != nil {
		return in.env.Redact(tail)
	}
	return tail
}

func (in *Instance) notifyPath() string {
	return filepath.Join(in.env.RunDir, fmt.Sprintf("%s-%d.sock", in.spec.Service, in.spec.Index))
}

// detached reports whether a shutdown leaves the processes running (--detach,
// or a handover to a new medic).
func (e *Env) detached() bool { return e.Detach || e.handingOver() }

// handingOver reports whether this medic hands its instances to a new one.
func (e *Env) handingOver() bool { return e.handover != nil && e.handover.Load() }
