package supervise

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
)

// ErrNoPrevious is returned by Rollback when a service has no earlier version.
var ErrNoPrevious = errors.New("supervise: no previous version to roll back to")

// Scale changes a service's number of instances to n. New instances start at
// once; surplus ones (highest index first) are drained and stopped one at a
// time, each only while the others keep min(min_available, n) ready. It
// returns once the change is made, not when new instances are ready; when
// ctx ends first it returns ErrInProgress and the change goes on.
func (s *Supervisor) Scale(ctx context.Context, name string, n int, actor string) error {
	if n < 0 {
		return fmt.Errorf("scale %s to %d: not a count of instances", name, n)
	}
	s.mu.Lock()
	sv := s.services[name]
	if sv == nil {
		s.mu.Unlock()
		return fmt.Errorf("service %s: %w", name, ErrNotFound)
	}
	cur := len(sv.instances)
	if n == sv.cfg.Instances && n == cur {
		s.mu.Unlock()
		return nil
	}
	if err := s.portsFreeLocked(sv, n); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("scale %s to %d: %w", name, n, err)
	}
	cfg := *sv.cfg
	cfg.Instances = n
	sv.cfg = &cfg
	started := s.started
	if !started {
		sv.instances = sv.instances[:min(n, cur)]
		for _, spec := range Resolve(name, &cfg, s.baseDir, s.logDir)[len(sv.instances):n] {
			sv.instances = append(sv.instances, s.newInstance(spec, cfg.DependsOn))
		}
	}
	s.mu.Unlock()
	if started {
		r := s.startRollout(sv, actor, fmt.Sprintf("scale from %d to %d", cur, n), nil)
		if r == nil {
			return fmt.Errorf("scale %s: medic is stopping", name)
		}
		if err := r.wait(ctx); err != nil {
			return fmt.Errorf("scale %s from %d to %d: %w", name, cur, n, err)
		}
	}
	s.env.Changed()
	if s.env.Emit != nil {
		s.env.Emit(ctx, medic.Event{Time: s.env.Clock.Now(), Kind: medic.EventScaled, Target: name, Actor: actor,
			Reason: fmt.Sprintf("scaled from %d to %d instances", cur, n), Fields: map[string]string{"from": fmt.Sprint(cur), "to": fmt.Sprint(n)}})
	}
	return nil
}

// ErrPortTaken is returned when scaling out would give an instance a port
// another service's instances (up to their max_instances) or the API use.
var ErrPortTaken = errors.New("supervise: port belongs to another service")

// portsFreeLocked checks that instances 0..n-1 of sv stay off the port
// ranges of every other service (up to its remedy.max_instances).
func (s *Supervisor) portsFreeLocked(sv *service, n int) error {
	if sv.cfg.Port <= 0 {
		return nil
	}
	lo, hi := sv.cfg.Port, sv.cfg.Port+n-1
	for name, o := range s.services {
		if o == sv || o.cfg.Port <= 0 {
			continue
		}
		size := max(o.cfg.Instances, len(o.instances))
		if o.cfg.Remedy != nil && o.cfg.Remedy.MaxInstances > size {
			size = o.cfg.Remedy.MaxInstances
		}
		olo, ohi := o.cfg.Port, o.cfg.Port+size-1
		if lo <= ohi && olo <= hi {
			return fmt.Errorf("%w: instances would use ports %d-%d, overlapping %s (ports %d-%d)", ErrPortTaken, lo, hi, name, olo, ohi)
		}
	}
	return nil
}

// Rollback replaces a service's instances, one at a time within its
// disruption budget, with the spec it had before its last change (the
// previous command, binary, arguments or environment). It returns when every
// instance runs the previous version, or ErrInProgress when ctx ends first
// (the rollback goes on).
func (s *Supervisor) Rollback(ctx context.Context, name, actor string) error {
	s.mu.Lock()
	sv := s.services[name]
	if sv == nil {
		s.mu.Unlock()
		return fmt.Errorf("service %s: %w", name, ErrNotFound)
	}
	if sv.prev == nil {
		s.mu.Unlock()
		return fmt.Errorf("roll back %s: %w", name, ErrNoPrevious)
	}
	bad, good := sv.cfg, sv.prev
	sv.prev = bad // rolling back twice returns to the new version
	s.desireLocked(sv, good)
	if !s.started {
		next := s.build(name, good)
		next.prev = bad
		s.services[name] = next
	}
	started := s.started
	s.mu.Unlock()
	if started {
		r := s.startRollout(sv, actor, "rollback to the previous version", nil)
		if r == nil {
			return fmt.Errorf("roll back %s: medic is stopping", name)
		}
		if err := r.wait(ctx); err != nil {
			return fmt.Errorf("roll back %s: %w", name, err)
		}
	}
	if s.env.Emit != nil {
		s.env.Emit(ctx, medic.Event{Time: s.env.Clock.Now(), Kind: medic.EventRolledBack, Target: name, Actor: actor,
			Reason: fmt.Sprintf("rolled back to the previous version: %q", good.Command),
			Fields: map[string]string{"from": fmt.Sprint(bad.Command), "to": fmt.Sprint(good.Command)}})
	}
	return nil
}

// Previous returns the config a service would roll back to, or nil.
func (s *Supervisor) Previous(name string) *config.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv := s.services[name]; sv != nil {
		return sv.prev
	}
	return nil
}

// Spec returns the spec a service runs (or is rolling out to), or nil for an
// unknown service. The caller must not change it.
func (s *Supervisor) Spec(name string) *config.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv := s.services[name]; sv != nil {
		return sv.cfg
	}
	return nil
}

// Deploy replaces a service's instances with spec, one at a time within its
// disruption budget, on behalf of actor for why (a deploy, a rollback to a
// release). done, when set, runs once the rollout ends (err nil: every
// instance runs spec), also when Deploy itself returned ErrInProgress
// because ctx ended first, and when a later change took over. The spec it
// replaces stays the target of Rollback.
func (s *Supervisor) Deploy(ctx context.Context, name string, spec *config.Service, actor, why string, done func(error)) error {
	s.mu.Lock()
	sv := s.services[name]
	if sv == nil {
		s.mu.Unlock()
		return fmt.Errorf("service %s: %w", name, ErrNotFound)
	}
	if spec.Port != sv.cfg.Port || spec.Instances != sv.cfg.Instances {
		if err := s.portsFreeLocked(sv, max(spec.Instances, len(sv.instances))); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("deploy %s: %w", name, err)
		}
	}
	old := sv.cfg
	sv.prev = old
	s.desireLocked(sv, spec)
	if !s.started {
		next := s.build(name, spec)
		next.prev = old
		s.services[name] = next
		s.mu.Unlock()
		if done != nil {
			done(nil)
		}
		return nil
	}
	s.mu.Unlock()
	r := s.startRollout(sv, actor, why, done)
	if r == nil {
		return fmt.Errorf("deploy %s: medic is stopping", name)
	}
	if err := r.wait(ctx); err != nil {
		return fmt.Errorf("deploy %s: %w", name, err)
	}
	s.env.Changed()
	return nil
}

// StopAllBy scales a service to 0 at once, for a host that must have
// stopped its instances by a deadline (a fleet host standing down: cut off,
// its share is about to run elsewhere). Unlike Scale it does not take the
// instances out one at a time within the disruption budget: every instance
// is drained and stopped at the same time, each with its stop grace cut to
// the time left until by (SIGKILL at by; at once when by has passed). A
// rollout under way is cancelled. It returns once every instance it stopped
// has exited, with how many it stopped; the service stays at 0 until a
// Scale.
func (s *Supervisor) StopAllBy(ctx context.Context, name string, by time.Time, actor, reason string) (int, error) {
	s.mu.Lock()
	sv := s.services[name]
	if sv == nil {
		s.mu.Unlock()
		return 0, fmt.Errorf("service %s: %w", name, ErrNotFound)
	}
	cfg := *sv.cfg
	cur := len(sv.instances)
	cfg.Instances = 0
	sv.cfg = &cfg
	stop := sv.instances
	sv.instances = nil
	prev := sv.rollout
	started := s.started
	s.mu.Unlock()
	if prev != nil {
		prev.cancel()
	}
	if started {
		var wg sync.WaitGroup
		for _, in := range stop {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if in.cancel == nil {
					return
				}
				in.cancel(&retired{actor: actor, reason: reason, by: by})
				select {
				case <-in.done:
				case <-ctx.Done():
				}
			}()
		}
		wg.Wait()
	}
	s.env.Changed()
	if err := ctx.Err(); err != nil {
		return cur, fmt.Errorf("stop every instance of %s by %s: %w", name, by.Format(time.RFC3339Nano), err)
	}
	if started {
		// A rollout cancelled above may have started an instance after
		// the cut (a successor in a replacement): converge to 0.
		if r := s.startRollout(sv, actor, reason, nil); r != nil {
			if err := r.wait(ctx); err != nil {
				return cur, fmt.Errorf("stop every instance of %s: %w", name, err)
			}
		}
	}
	if s.env.Emit != nil {
		s.env.Emit(ctx, medic.Event{Time: s.env.Clock.Now(), Kind: medic.EventScaled, Target: name, Actor: actor,
			Reason: fmt.Sprintf("scaled from %d to 0 instances at once, stopped by %s: %s", cur, by.Format(time.RFC3339Nano), reason),
			Fields: map[string]string{"from": fmt.Sprint(cur), "to": "0", "by": by.Format(time.RFC3339Nano)}})
	}
	return cur, nil
}
