package supervise

import (
	"context"

	"github.com/medic-dev/medic/internal/config"
)

// Apply moves the running set to cfg: removed services are stopped, changed
// ones are stopped and started with their new spec, added ones are started,
// and unchanged ones are left alone (their processes keep running). The
// caller has validated cfg and computed change with config.Diff.
func (s *Supervisor) Apply(ctx context.Context, cfg *config.Config, change config.Change) {
	stop := append(append([]string(nil), change.Removed...), change.Changed...)
	prev := map[string]*config.Service{}
	for _, name := range stop {
		s.mu.Lock()
		sv := s.services[name]
		s.mu.Unlock()
		if sv != nil {
			prev[name] = sv.cfg
			s.stopService(sv)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range change.Removed {
		delete(s.services, name)
	}
	for _, name := range append(append([]string(nil), change.Changed...), change.Added...) {
		sv := s.build(name, cfg.Services[name])
		sv.prev = prev[name] // a changed service can be rolled back to what ran before
		s.services[name] = sv
	}
	s.order = depOrder(cfg.Services)
	if !s.started {
		return
	}
	for _, name := range s.order {
		if contains(change.Changed, name) || contains(change.Added, name) {
			s.startLocked(s.root, s.services[name])
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
