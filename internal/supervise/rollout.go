package supervise

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/rollplan"
)

// ErrInProgress is returned when the caller stopped waiting for a change
// (a rollback, a scale) that goes on within the disruption budget.
var ErrInProgress = errors.New("supervise: the change continues within the disruption budget")

// RolloutStuckAfter is how long a rollout (reload, rollback, scale) waits
// on one step — the budget, or a new instance to be ready — before it
// records a service.rollout.waiting event naming the step; it keeps
// waiting. Default 1m.
var RolloutStuckAfter = time.Minute

// BudgetWait bounds how long a single instance's restart or stop (API,
// runbook step) waits for the other instances to satisfy min_available
// before it is refused with ErrBudget. Default 30s.
var BudgetWait = 30 * time.Second

// rollout is one run of converge for one service: it moves the running
// instances to the service's desired config within the disruption budget.
// A newer change cancels it and starts from wherever it stopped: each step
// leaves a consistent state, so a cancelled rollout is never undone.
type rollout struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error  // valid once done is closed
	step   string // what it waits for now; guarded by Supervisor.mu
}

// lock is a mutex whose Lock gives up when ctx ends.
type lock chan struct{}

func (l lock) acquire(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l lock) release() { <-l }

// startRollout cancels sv's rollout under way, if any, and starts one that
// moves sv to sv.cfg; onDone runs when it ends (err nil: every instance runs
// the desired spec). It returns nil while medic is stopping.
func (s *Supervisor) startRollout(sv *service, actor, why string, onDone func(error)) *rollout {
	s.mu.Lock()
	if s.stopping || !s.started {
		s.mu.Unlock()
		return nil
	}
	prev := sv.rollout
	ctx, cancel := context.WithCancel(s.rollCtx)
	r := &rollout{cancel: cancel, done: make(chan struct{})}
	sv.rollout = r
	s.rollWG.Add(1)
	s.mu.Unlock()
	if prev != nil {
		prev.cancel()
	}
	go func() {
		defer s.rollWG.Done()
		defer close(r.done)
		defer cancel()
		if prev != nil {
			<-prev.done
		}
		err := sv.rolling.acquire(ctx)
		if err == nil {
			err = s.converge(ctx, sv, r, actor, why)
			sv.rolling.release()
		}
		s.mu.Lock()
		r.err = err
		if sv.rollout == r {
			sv.rollout = nil
		}
		s.mu.Unlock()
		if onDone != nil {
			onDone(err)
		}
	}()
	return r
}

// wait returns the rollout's result, or ErrInProgress when ctx ends first.
func (r *rollout) wait(ctx context.Context) error {
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("%w (%v)", ErrInProgress, ctx.Err())
	}
}

// stopRollouts cancels every rollout and waits for them (medic is stopping:
// the instances are stopped next, in dependency order).
func (s *Supervisor) stopRollouts() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	if s.rollCancel != nil {
		s.rollCancel()
	}
	s.rollWG.Wait()
}

// converge moves sv's instances to the specs of sv.cfg, never taking a ready
// instance out while that leaves fewer ready than the budget:
//
//  1. instances at new indexes start first (capacity before disruption);
//  2. surplus instances, highest index first, are drained and stopped;
//  3. each instance whose spec changed (unready ones first) is drained and
//     stopped, its successor started on the same port, and the rollout waits
//     for it to be ready before the next one (ports cannot surge: instance i
//     owns port+i).
//
// Instances whose spec did not change keep running. The budget is
// min(min_available, desired instances); waits end only with ctx.
func (s *Supervisor) converge(ctx context.Context, sv *service, r *rollout, actor, why string) error {
	s.mu.Lock()
	cfg := sv.cfg
	s.mu.Unlock()
	specs := Resolve(sv.name, cfg, s.baseDir, s.logDir)
	if cfg.Instances == 0 {
		specs = nil // scaled to 0 (a fleet host whose share is 0); Resolve gives at least one
	}
	var stuck clock.Timer // records a step that waits too long
	defer func() {
		if stuck != nil {
			stuck.Stop()
		}
	}()
	setStep := func(format string, args ...any) {
		step := fmt.Sprintf(format, args...)
		s.mu.Lock()
		r.step = step
		s.mu.Unlock()
		if stuck != nil {
			stuck.Stop()
		}
		stuck = s.env.Clock.AfterFunc(RolloutStuckAfter, func() {
			s.record(ctx, medic.EventRolloutStuck, sv.name, actor,
				fmt.Sprintf("%s of %s has been %s for %v; it goes on waiting (a new reload, a rollback or a fix of the instance moves it)",
					why, sv.name, step, RolloutStuckAfter))
		})
	}

	s.mu.Lock()
	for i := len(sv.instances); i < len(specs); i++ {
		in := s.newInstance(specs[i], cfg.DependsOn)
		sv.instances = append(sv.instances, in)
		s.startInstanceLocked(sv, in)
	}
	s.mu.Unlock()
	s.env.Changed()

	for {
		s.mu.Lock()
		n := len(sv.instances)
		if n <= len(specs) {
			s.mu.Unlock()
			break
		}
		in := sv.instances[n-1]
		s.mu.Unlock()
		setStep("waiting for the budget to stop %s", in.id)
		if err := s.awaitBudget(ctx, sv, in, len(specs)); err != nil {
			return fmt.Errorf("%s: stop %s: %w", why, in.id, err)
		}
		s.mu.Lock()
		sv.instances = sv.instances[:n-1]
		s.mu.Unlock()
		setStep("stopping %s", in.id)
		s.retire(in, actor, why+": instance no longer wanted")
	}

	return s.replaceAll(ctx, sv, cfg, specs, actor, why, setStep)
}

// surgeRoom is how many surge copies sv may run beside its instances: the
// deploy's max_surge, within the spare ports up to remedy.max_instances
// (instance i owns port+i); unlimited by ports when the service has none.
func surgeRoom(cfg *config.Service, want int) int {
	if st := cfg.Deploy.StrategyOrDefault(); st != config.StrategyRolling {
		return 0 // the other strategies start their own groups; their rollouts replace in place
	}
	surge := cfg.Deploy.MaxSurgeOrDefault()
	if cfg.Port > 0 {
		reserved := want
		if cfg.Remedy != nil && cfg.Remedy.MaxInstances > reserved {
			reserved = cfg.Remedy.MaxInstances
		}
		surge = min(surge, reserved-want)
	}
	return max(surge, 0)
}

// replaceAll moves every instance of sv to its spec in specs, step by step
// as rollplan.Next says: surge copies of the new spec first (on spare
// ports), an old instance drained and stopped only when the budget holds
// without it, its slot restarted with the new spec, the copies stopped
// last. A new spec that never becomes ready stops no ready instance while
// there is room to surge.
func (s *Supervisor) replaceAll(ctx context.Context, sv *service, cfg *config.Service, specs []Spec, actor, why string, setStep func(string, ...any)) error {
	want := len(specs)
	surge := surgeRoom(cfg, want)
	all := specs
	if surge > 0 {
		c := *cfg
		c.Instances = want + surge
		all = Resolve(sv.name, &c, s.baseDir, s.logDir)
	}
	minReady := cfg.Deploy.MinReadyOrDefault()
	s.mu.Lock()
	need := sv.minAvail
	s.mu.Unlock()
	readySince := map[*Instance]time.Time{}
	for {
		ch := s.anyReady.Wait()
		now := s.env.Clock.Now()
		ins := s.instancesOf(sv)
		st := rollplan.State{Now: now, Want: want, MaxSurge: surge, MinAvailable: need, MinReady: minReady, Stagger: cfg.Deploy.StaggerOrZero()}
		for j, in := range ins {
			is := in.Status()
			ready := is.Ready
			if !ready {
				delete(readySince, in)
			} else if _, ok := readySince[in]; !ok {
				readySince[in] = now
			}
			st.Instances = append(st.Instances, rollplan.Instance{Index: j, Ready: ready, ReadySince: readySince[in], StartedAt: is.StartedAt,
				Current: j < len(all) && reflect.DeepEqual(in.spec, all[j])})
		}
		step := rollplan.Next(st)
		switch step.Kind {
		case rollplan.Done:
			return nil
		case rollplan.Start:
			if step.Index != len(ins) || step.Index >= len(all) {
				return fmt.Errorf("%s: the plan starts instance %d of %d: %s", why, step.Index, len(ins), step.Reason)
			}
			setStep("starting %s/%d (%s)", sv.name, step.Index, step.Reason)
			in := s.newInstance(all[step.Index], cfg.DependsOn)
			in.startNice = startNice(cfg)
			s.mu.Lock()
			sv.instances = append(sv.instances, in)
			s.startInstanceLocked(sv, in)
			s.mu.Unlock()
			s.env.Changed()
		case rollplan.Retire:
			if step.Index >= len(ins) {
				return fmt.Errorf("%s: the plan retires instance %d of %d", why, step.Index, len(ins))
			}
			old := ins[step.Index]
			if step.Index >= want { // a surge copy: the last one
				if step.Index != len(ins)-1 {
					return fmt.Errorf("%s: the plan retires surge copy %d before %d", why, step.Index, len(ins)-1)
				}
				setStep("stopping surge copy %s (%s)", old.id, step.Reason)
				s.mu.Lock()
				sv.instances = sv.instances[:step.Index]
				s.mu.Unlock()
				s.retire(old, actor, why+": surge copy no longer needed")
				s.env.Changed()
				continue
			}
			setStep("waiting for the budget to replace %s", old.id)
			if err := s.awaitBudget(ctx, sv, old, want); err != nil {
				return fmt.Errorf("%s: replace %s: %w", why, old.id, err)
			}
			setStep("replacing %s (%s)", old.id, step.Reason)
			s.retire(old, actor, why+": instance replaced")
			in := s.newInstance(all[step.Index], cfg.DependsOn)
			in.startNice = startNice(cfg)
			s.mu.Lock()
			sv.instances[step.Index] = in
			s.startInstanceLocked(sv, in)
			s.mu.Unlock()
			s.env.Changed()
		case rollplan.Wait:
			setStep("waiting for %s", step.Reason)
			var timeout <-chan time.Time
			var t clock.Timer
			if !step.Until.IsZero() {
				t = s.env.Clock.NewTimer(step.Until.Sub(now))
				timeout = t.C()
			}
			var err error
			select {
			case <-ctx.Done():
				err = fmt.Errorf("%s: %s: %w", why, step.Reason, ctx.Err())
			case <-ch:
			case <-timeout:
			}
			if t != nil {
				t.Stop()
			}
			if err != nil {
				return err
			}
		}
	}
}

// retire stops in for good on behalf of actor, and waits until it stopped.
func (s *Supervisor) retire(in *Instance, actor, reason string) {
	if in.cancel == nil {
		return
	}
	in.cancel(&retired{actor: actor, reason: reason})
	<-in.done
}

// awaitBudget waits until target may be taken out of service: it is not
// ready, or the other ready instances of sv reach min(min_available, size).
func (s *Supervisor) awaitBudget(ctx context.Context, sv *service, target *Instance, size int) error {
	for {
		ch := s.anyReady.Wait()
		s.mu.Lock()
		need := min(sv.minAvail, size)
		s.mu.Unlock()
		others := 0
		for _, in := range s.instancesOf(sv) {
			if in != target && in.Status().Ready {
				others++
			}
		}
		if !target.Status().Ready || others >= need {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %d other instances ready, min_available %d", ErrBudget, others, need)
		case <-ch:
		}
	}
}

// withinBudget waits up to BudgetWait (or ctx) for target to be allowed out
// of service; an instance that is not ready always is.
func (s *Supervisor) withinBudget(ctx context.Context, id medic.InstanceID, target *Instance) error {
	s.mu.Lock()
	sv := s.services[id.Service]
	s.mu.Unlock()
	if sv == nil {
		return fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, BudgetWait)
	defer cancel()
	if err := s.awaitBudget(ctx, sv, target, len(s.instancesOf(sv))); err != nil {
		return fmt.Errorf("take %s out of service: %w", id, err)
	}
	return nil
}

// desire sets sv's desired config and budget.
func (s *Supervisor) desireLocked(sv *service, cfg *config.Service) {
	sv.cfg = cfg
	sv.minAvail = minAvailable(cfg)
}
