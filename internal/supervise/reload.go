package supervise

import (
	"context"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
)

// Apply moves the running set to cfg on behalf of actor (who reloaded):
// removed services are stopped, added ones are started, unchanged ones are
// left alone (their processes keep running), and a changed service is
// rolled out: its instances are replaced one at a time within its
// disruption budget, in the background (a later change or a rollback takes
// over from wherever it got to; status shows the step it waits for). The
// caller has validated cfg and computed change with config.Diff.
func (s *Supervisor) Apply(ctx context.Context, cfg *config.Config, change config.Change, actor string) {
	for _, name := range change.Removed {
		s.mu.Lock()
		sv := s.services[name]
		s.mu.Unlock()
		if sv != nil {
			s.cancelRollout(sv)
			s.stopService(sv, &retired{actor: actor, reason: "service removed from the config by reload"})
		}
	}
	s.mu.Lock()
	for _, name := range change.Removed {
		delete(s.services, name)
	}
	var roll []*service
	for _, name := range change.Changed {
		sv, next := s.services[name], cfg.Services[name]
		if sv == nil || !s.started {
			sv = s.build(name, next)
			sv.prev = s.services[name].cfgOrNil()
			s.services[name] = sv
			continue
		}
		sv.prev = sv.cfg // a changed service can be rolled back to what ran before
		s.desireLocked(sv, next)
		roll = append(roll, sv)
	}
	for _, name := range change.Added {
		s.services[name] = s.build(name, cfg.Services[name])
	}
	s.order = depOrder(cfg.Services)
	if s.started {
		for _, name := range s.order {
			if contains(change.Added, name) {
				s.startLocked(s.root, s.services[name])
			}
		}
	}
	s.mu.Unlock()
	for _, sv := range roll {
		name := sv.name
		s.startRollout(sv, actor, "reload", func(err error) {
			reason, outcome := "reload rolled out: every instance runs the new version", "done"
			if err != nil {
				reason, outcome = "reload rollout stopped: "+err.Error(), "stopped"
			}
			if s.env.Emit != nil {
				s.env.Emit(context.WithoutCancel(ctx), medic.Event{Time: s.env.Clock.Now(), Kind: medic.EventRolledOut, Target: name, Actor: actor,
					Reason: reason, Fields: map[string]string{"outcome": outcome}})
			}
		})
	}
}

func (sv *service) cfgOrNil() *config.Service {
	if sv == nil {
		return nil
	}
	return sv.cfg
}

// cancelRollout stops sv's rollout under way, if any, and waits for it.
func (s *Supervisor) cancelRollout(sv *service) {
	s.mu.Lock()
	r := sv.rollout
	s.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

// record emits a service-level event on behalf of actor.
func (s *Supervisor) record(ctx context.Context, kind medic.EventKind, target, actor, reason string) {
	if s.env.Emit != nil {
		s.env.Emit(context.WithoutCancel(ctx), medic.Event{Time: s.env.Clock.Now(), Kind: kind, Target: target, Actor: actor, Reason: reason})
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
