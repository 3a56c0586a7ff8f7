// Package bluegreen carries out blue-green deploys: the whole new set
// ("green") starts beside the running instances ("blue", the proxy's
// stable group), the proxy switches every following request to green in
// one step once each green instance is ready, and blue keeps running,
// warm, for keep_previous, so that a rollback within that window is a
// proxy switch. When the window ends, blue's own instances roll out to the
// green release while the proxy still sends them nothing, then the weights
// are cleared and the green group stops: the service runs the new release
// on its own ports again. A green set that crash-loops or is not ready
// within ready_timeout stops; blue never stopped serving, and the release
// is failed.
package bluegreen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/release"
	"github.com/medic-dev/medic/internal/supervise"
)

// Group is the proxy group of the green set.
const Group = "green"

// Audit event kinds.
const (
	EventStarted    medic.EventKind = "deploy.bluegreen.started"    // the green set starts
	EventSwitched   medic.EventKind = "deploy.bluegreen.switched"   // every request goes to green
	EventFailed     medic.EventKind = "deploy.bluegreen.failed"     // green never got ready: stopped, blue serves
	EventRolledBack medic.EventKind = "deploy.bluegreen.rolledback" // traffic back on the warm blue set
	EventPromoted   medic.EventKind = "deploy.bluegreen.promoted"   // the window ended: the service's own instances run green's release
	EventSuperseded medic.EventKind = "deploy.bluegreen.superseded" // a reload changed the service in the window: its own instances take the file's spec, then traffic
)

// Default settings (config.Deploy: ready_timeout, max_restarts, keep_previous).
const (
	DefaultReadyTimeout = 2 * time.Minute
	DefaultMaxRestarts  = 2
)

// ErrWindowOpen refuses a deploy while a blue-green window keeps the
// previous release warm: roll back to it or wait for the window's end.
var ErrWindowOpen = errors.New("bluegreen: a blue-green window is open")

// ErrNoWindow: the service has no blue-green window to supersede (none was
// open, or it ended meanwhile).
var ErrNoWindow = errors.New("bluegreen: no blue-green window is open")

// Groups is what the runner needs of the supervisor's instance groups.
type Groups interface {
	StartGroup(ctx context.Context, service, group string, spec *config.Service, n int) error
	GroupStatus(service, group string) supervise.GroupStatus
	StopGroup(ctx context.Context, service, group string) error
}

// Rollout is the supervisor's own rollout of the service's instances.
type Rollout interface {
	Spec(service string) *config.Service
	Deploy(ctx context.Context, service string, spec *config.Service, actor, why string, done func(error)) error
}

// Traffic is what the runner needs of the service's proxy.
type Traffic interface {
	SetWeights(service string, w proxy.Weights) error
	ClearWeights(service string) error
}

// Runner carries out blue-green deploys, one per service at a time.
type Runner struct {
	Groups  Groups
	Rollout Rollout
	Traffic Traffic
	// Record writes an audit event; nil records nothing.
	Record func(ctx context.Context, ev medic.Event)
	Clock  clock.Clock
	// Poll is how often the green set's readiness is read. Default 50ms.
	Poll time.Duration

	mu   sync.Mutex
	root context.Context
	wg   sync.WaitGroup
	runs map[string]*run
}

// run is one service's blue-green deploy under way.
type run struct {
	blue, green *config.Service
	actor       string
	switched    bool
	superseding bool                  // a reload's spec replaces the window (under Runner.mu)
	back        chan chan error       // a rollback to blue within the window
	supersede   chan supersedeRequest // a reload that changed the service within the window
	settled     chan struct{}         // closed when the window's wait is over (the requests above are no longer read)
	ended       chan struct{}         // closed when the run is over
}

// supersedeRequest is a reload's new spec for a service in its window.
type supersedeRequest struct {
	spec       *config.Service
	actor, why string
	done       func(error)
}

// Start gives the runner the context its deploys run under (medic's life).
func (r *Runner) Start(ctx context.Context) {
	r.mu.Lock()
	r.root = ctx
	r.mu.Unlock()
}

// Wait waits for every deploy's goroutine after the root context ended.
func (r *Runner) Wait() { r.wg.Wait() }

// Spec is the spec the service serves: green's once the proxy switched to
// it, else the service's own.
func (r *Runner) Spec(service string) *config.Service {
	r.mu.Lock()
	ru := r.runs[service]
	r.mu.Unlock()
	if ru != nil && ru.switched {
		return ru.green
	}
	return r.Rollout.Spec(service)
}

// Window reports whether service has a warm blue set to roll back to, and
// the blue spec.
func (r *Runner) Window(service string) (*config.Service, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ru := r.runs[service]; ru != nil && ru.switched && !ru.superseding {
		return ru.blue, true
	}
	return nil, false
}

// Supersede hands the service's open window a reload's spec (the config
// file changed the service while blue is kept warm). The file wins: the
// service's own instances (blue, which the proxy sends nothing) roll out
// to spec while green keeps every request; once they run it and are
// ready, one switch moves the traffic to them, then green is drained and
// stopped. The warm previous release is gone (a later rollback starts
// from the history). done gets the rollout's outcome. If the service's
// instances do not take spec, green keeps serving and they take green's
// release instead, as at the window's end; done gets the reason. Each step
// is audited (deploy.bluegreen.superseded). ErrNoWindow when no window is
// open (the caller rolls the spec out as usual).
func (r *Runner) Supersede(service string, spec *config.Service, actor, why string, done func(error)) error {
	r.mu.Lock()
	ru := r.runs[service]
	if ru == nil || !ru.switched || ru.superseding {
		r.mu.Unlock()
		return fmt.Errorf("supersede the blue-green window of %s: %w", service, ErrNoWindow)
	}
	ru.superseding = true
	r.mu.Unlock()
	select {
	case ru.supersede <- supersedeRequest{spec: spec, actor: actor, why: why, done: done}:
		return nil
	case <-ru.settled: // the window ended (or a rollback took it) meanwhile
		r.mu.Lock()
		ru.superseding = false
		r.mu.Unlock()
		return fmt.Errorf("supersede the blue-green window of %s: %w (it just ended)", service, ErrNoWindow)
	}
}

// Deploy deploys spec to service blue-green. done runs once the outcome is
// known: nil when the proxy switched to green (the release is live), the
// reason when green was stopped. A spec equal to the warm blue one during
// a window is a rollback: traffic goes back to blue in one switch, then the
// green set stops. It returns like the supervisor's Deploy: nil once done
// ran, supervise.ErrInProgress when ctx ended first.
func (r *Runner) Deploy(ctx context.Context, service string, spec *config.Service, actor, why string, done func(error)) error {
	r.mu.Lock()
	root := r.root
	if r.runs == nil {
		r.runs = map[string]*run{}
	}
	if ru := r.runs[service]; ru != nil {
		superseding := ru.superseding
		r.mu.Unlock()
		if superseding {
			return fmt.Errorf("deploy %s: %w (a reload is moving the service off its blue-green window: its own instances take the file's spec; try again once it is done)", service, ErrWindowOpen)
		}
		if ru.switched && sameSpec(spec, ru.blue) {
			reply := make(chan error, 1)
			select {
			case ru.back <- reply:
				err := <-reply
				if done != nil {
					done(err)
				}
				return err
			case <-ru.ended: // the window just closed: a deploy like any other (below, next call)
				return fmt.Errorf("roll back %s: the blue-green window just ended; try again: %w", service, ErrWindowOpen)
			}
		}
		return fmt.Errorf("deploy %s: %w (the previous release is kept warm; medic rollback %s switches back to it, or wait for the window to end)", service, ErrWindowOpen, service)
	}
	if root == nil {
		r.mu.Unlock()
		return errors.New("bluegreen: runner not started")
	}
	blue := r.Rollout.Spec(service)
	if blue == nil {
		r.mu.Unlock()
		return fmt.Errorf("deploy %s: %w", service, supervise.ErrNotFound)
	}
	ru := &run{blue: blue, green: spec, actor: actor, back: make(chan chan error), supersede: make(chan supersedeRequest),
		settled: make(chan struct{}), ended: make(chan struct{})}
	r.runs[service] = ru
	r.wg.Add(1)
	r.mu.Unlock()

	decided := make(chan struct{})
	once := sync.Once{}
	finish := func(err error) {
		once.Do(func() {
			if done != nil {
				done(err)
			}
			close(decided)
		})
	}
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			if r.runs[service] == ru {
				delete(r.runs, service)
			}
			r.mu.Unlock()
			close(ru.ended)
		}()
		r.deploy(root, service, ru, why, finish)
	}()
	select {
	case <-decided:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w (%v)", supervise.ErrInProgress, ctx.Err())
	}
}

// sameSpec reports whether a and b run the same way, whatever their version labels.
func sameSpec(a, b *config.Service) bool {
	x, y := *a, *b
	x.Version, y.Version = "", ""
	return release.SpecHash(&x) == release.SpecHash(&y)
}

func (r *Runner) record(ctx context.Context, kind medic.EventKind, service, actor, reason string) {
	if r.Record != nil {
		r.Record(context.WithoutCancel(ctx), medic.Event{Time: r.Clock.Now(), Kind: kind, Target: service, Actor: actor, Reason: reason})
	}
}

// deploy is one run: green up, switch, window, promotion.
func (r *Runner) deploy(ctx context.Context, service string, ru *run, why string, finish func(error)) {
	spec, actor := ru.green, ru.actor
	n := max(spec.Instances, 1)
	readyTimeout, maxRestarts := DefaultReadyTimeout, DefaultMaxRestarts
	if d := spec.Deploy; d != nil {
		if d.ReadyTimeout > 0 {
			readyTimeout = d.ReadyTimeout.D()
		}
		if d.MaxRestarts > 0 {
			maxRestarts = d.MaxRestarts
		}
	}
	keep := spec.Deploy.KeepPreviousOrDefault()
	start := r.Clock.Now()
	r.record(ctx, EventStarted, service, actor, fmt.Sprintf("%s: %d green instances start beside blue", why, n))
	fail := func(reason string) {
		stopCtx := context.WithoutCancel(ctx)
		_ = r.Traffic.SetWeights(service, proxy.Weights{Groups: []proxy.GroupWeight{{Group: proxy.DefaultGroup, Weight: 100}}})
		_ = r.Groups.StopGroup(stopCtx, service, Group)
		_ = r.Traffic.ClearWeights(service)
		r.record(ctx, EventFailed, service, actor, reason+"; green stopped, blue kept serving")
		finish(fmt.Errorf("blue-green deploy of %s: %s", service, reason))
	}
	// Blue keeps every request while green starts.
	if err := r.Traffic.SetWeights(service, proxy.Weights{Groups: []proxy.GroupWeight{{Group: proxy.DefaultGroup, Weight: 100}, {Group: Group, Weight: 0}}}); err != nil {
		finish(fmt.Errorf("blue-green deploy of %s: %w", service, err))
		return
	}
	if err := r.Groups.StartGroup(ctx, service, Group, spec, n); err != nil {
		fail(fmt.Sprintf("start the green set: %v", err))
		return
	}
	for {
		st := r.Groups.GroupStatus(service, Group)
		if st.Ready == n && st.Want == n {
			break
		}
		if st.Restarts > maxRestarts {
			fail(fmt.Sprintf("green crash-loops: %d restarts (max_restarts %d), %d of %d ready", st.Restarts, maxRestarts, st.Ready, n))
			return
		}
		if waited := r.Clock.Now().Sub(start); waited > readyTimeout {
			fail(fmt.Sprintf("green not ready within ready_timeout %v: %d of %d ready", readyTimeout, st.Ready, n))
			return
		}
		if !r.sleep(ctx, r.poll()) {
			fail("medic stopped before green was ready")
			return
		}
	}
	// The switch: one call moves every following request.
	if err := r.Traffic.SetWeights(service, proxy.Weights{Groups: []proxy.GroupWeight{{Group: proxy.DefaultGroup, Weight: 0}, {Group: Group, Weight: 100}}}); err != nil {
		fail(fmt.Sprintf("switch the proxy: %v", err))
		return
	}
	r.mu.Lock()
	ru.switched = true
	r.mu.Unlock()
	r.record(ctx, EventSwitched, service, actor, fmt.Sprintf("%s: every request goes to the %d green instances (ready after %v); blue kept warm for %v",
		why, n, r.Clock.Now().Sub(start).Round(time.Millisecond), keep))
	finish(nil)

	t := r.Clock.NewTimer(keep)
	defer t.Stop()
	defer func() {
		select {
		case <-ru.settled:
		default:
			close(ru.settled)
		}
	}()
	select {
	case req := <-ru.supersede:
		close(ru.settled)
		r.superseded(ctx, service, ru, req)
		return
	case reply := <-ru.back:
		close(ru.settled)
		// Rollback within the window: traffic first, then green stops.
		begin := r.Clock.Now()
		err := r.Traffic.SetWeights(service, proxy.Weights{Groups: []proxy.GroupWeight{{Group: proxy.DefaultGroup, Weight: 100}, {Group: Group, Weight: 0}}})
		switched := r.Clock.Now().Sub(begin)
		stopCtx := context.WithoutCancel(ctx)
		if serr := r.Groups.StopGroup(stopCtx, service, Group); serr != nil && err == nil {
			err = serr
		}
		if cerr := r.Traffic.ClearWeights(service); cerr != nil && err == nil {
			err = cerr
		}
		r.record(ctx, EventRolledBack, service, actor, fmt.Sprintf("traffic back on the warm blue set in %v; green stopped", switched))
		r.mu.Lock()
		ru.switched = false
		if r.runs[service] == ru {
			delete(r.runs, service) // the next deploy starts at once
		}
		r.mu.Unlock()
		reply <- err
		return
	case <-t.C():
		close(ru.settled)
	case <-ctx.Done():
		// medic stops: the release history says green's release is live,
		// and the next start runs it as the service's own.
		return
	}
	r.promote(ctx, service, ru)
}

// promote ends the window: blue's own instances roll out to green's
// release while the proxy sends them nothing, then green stops.
func (r *Runner) promote(ctx context.Context, service string, ru *run) {
	spec, actor := ru.green, ru.actor
	rolled := make(chan error, 1)
	err := r.Rollout.Deploy(ctx, service, spec, actor, "blue-green: the service's instances take the green release", func(err error) { rolled <- err })
	if err == nil || errors.Is(err, supervise.ErrInProgress) {
		select {
		case err = <-rolled:
		case <-ctx.Done():
			return
		}
	}
	if err != nil {
		r.record(ctx, EventPromoted, service, actor, fmt.Sprintf("the service's instances did not take the green release (%v); green keeps serving", err))
		return
	}
	if err := r.Traffic.ClearWeights(service); err != nil {
		r.record(ctx, EventPromoted, service, actor, fmt.Sprintf("clear the weights: %v; green keeps serving", err))
		return
	}
	_ = r.Groups.StopGroup(context.WithoutCancel(ctx), service, Group)
	r.record(ctx, EventPromoted, service, actor, "the window ended: the service's instances run the green release; green stopped")
}

// superseded carries out a reload's spec in the window (Supersede).
func (r *Runner) superseded(ctx context.Context, service string, ru *run, req supersedeRequest) {
	begin := r.Clock.Now()
	r.record(ctx, EventSuperseded, service, req.actor, "a reload changed the service during its blue-green window: the config file wins; "+
		"its own instances (blue, sent nothing) roll out to the file's spec while green keeps every request")
	rolled := make(chan error, 1)
	err := r.Rollout.Deploy(ctx, service, req.spec, req.actor, req.why, func(err error) { rolled <- err })
	if err == nil || errors.Is(err, supervise.ErrInProgress) {
		select {
		case err = <-rolled:
		case <-ctx.Done():
			// medic stops: green still serves; the next start runs the file's spec.
			req.done(fmt.Errorf("medic stopped while the service's instances took the reload's spec: %w", ctx.Err()))
			return
		}
	}
	if err != nil {
		r.record(ctx, EventSuperseded, service, req.actor, fmt.Sprintf("the service's instances did not take the file's spec (%v); green kept every request "+
			"and the service's instances now take green's release, as at the window's end", err))
		req.done(err)
		r.promote(ctx, service, ru)
		return
	}
	// The switch: the service's instances, now on the file's spec and ready,
	// take every request; green is drained and stopped.
	err = r.Traffic.SetWeights(service, proxy.Weights{Groups: []proxy.GroupWeight{{Group: proxy.DefaultGroup, Weight: 100}, {Group: Group, Weight: 0}}})
	if err == nil {
		err = r.Groups.StopGroup(context.WithoutCancel(ctx), service, Group)
	}
	if err == nil {
		err = r.Traffic.ClearWeights(service)
	}
	r.mu.Lock()
	ru.switched = false
	r.mu.Unlock()
	if err != nil {
		r.record(ctx, EventSuperseded, service, req.actor, fmt.Sprintf("the service's instances run the file's spec, but moving traffic off green failed: %v", err))
		req.done(err)
		return
	}
	r.record(ctx, EventSuperseded, service, req.actor, fmt.Sprintf("the service's instances run the file's spec (rolled out in %v while green served); "+
		"every request goes to them; green drained and stopped; the previous release is no longer kept warm (a rollback starts it from the history)",
		r.Clock.Now().Sub(begin).Round(time.Millisecond)))
	req.done(nil)
}

func (r *Runner) poll() time.Duration {
	if r.Poll > 0 {
		return r.Poll
	}
	return 50 * time.Millisecond
}

func (r *Runner) sleep(ctx context.Context, d time.Duration) bool {
	t := r.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}
