package supervise

import (
	"context"
	"errors"
	"fmt"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
)

// ErrNoPrevious is returned by Rollback when a service has no earlier version.
var ErrNoPrevious = errors.New("supervise: no previous version to roll back to")

// Scale changes a service's number of instances to n: new instances start at
// once (no dependency wait), surplus ones (highest index first) are stopped.
// It returns once the change is made, not when new instances are ready.
func (s *Supervisor) Scale(ctx context.Context, name string, n int, actor string) error {
	if n < 1 {
		return fmt.Errorf("scale %s to %d: at least 1 instance", name, n)
	}
	s.mu.Lock()
	sv := s.services[name]
	if sv == nil {
		s.mu.Unlock()
		return fmt.Errorf("service %s: %w", name, ErrNotFound)
	}
	cur := len(sv.instances)
	if n == cur {
		s.mu.Unlock()
		return nil
	}
	cfg := *sv.cfg
	cfg.Instances = n
	sv.cfg = &cfg
	var surplus []*Instance
	if n > cur {
		specs := Resolve(name, &cfg, s.baseDir, s.logDir)
		for _, spec := range specs[cur:] {
			env := s.env
			in := newInstance(spec, &env)
			sv.instances = append(sv.instances, in)
			if s.started {
				s.startInstanceLocked(sv, in)
			}
		}
	} else {
		surplus = sv.instances[n:]
		sv.instances = sv.instances[:n]
	}
	s.mu.Unlock()
	for i := len(surplus) - 1; i >= 0; i-- {
		surplus[i].cancel()
		<-surplus[i].done
	}
	s.env.Changed()
	if s.env.Emit != nil {
		s.env.Emit(ctx, medic.Event{Time: s.env.Clock.Now(), Kind: medic.EventScaled, Target: name, Actor: actor,
			Reason: fmt.Sprintf("scaled from %d to %d instances", cur, n), Fields: map[string]string{"from": fmt.Sprint(cur), "to": fmt.Sprint(n)}})
	}
	return nil
}

// Rollback restarts a service with the spec it had before its last change
// (the previous command, binary, arguments or environment).
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
	s.mu.Unlock()
	s.stopService(sv)
	s.mu.Lock()
	next := s.build(name, good)
	next.prev = bad // rolling back twice returns to the new version
	s.services[name] = next
	if s.started {
		s.startLocked(s.root, next)
	}
	s.mu.Unlock()
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
