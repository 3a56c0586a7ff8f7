package app

import (
	"context"
	"fmt"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/egress"
)

// startEgress opens every dependency listener of the config (before the
// instances start: they get the addresses in their environment). Breaker
// transitions become audited events, so runbooks and the dashboard see them.
// It returns nil when no service declares dependencies.
func (m *Main) startEgress() (*egress.Set, error) {
	set, err := egress.New(egress.Options{Config: m.cfg, Clock: m.Clock, Logger: m.Logger.With("component", "egress"),
		Registerer: m.mets.Registry, OnTransition: func(t egress.Transition) {
			m.Record(context.Background(), medic.Event{Time: t.At, Kind: medic.EventBreaker,
				Target: t.Service + "/" + t.Dependency, Actor: "egress", Reason: t.Reason,
				Fields: map[string]string{"service": t.Service, "dependency": t.Dependency, "from": t.From.String(), "to": t.To.String()}})
		}})
	if err != nil {
		return nil, fmt.Errorf("open dependency listeners: %w", err)
	}
	if set.Len() == 0 {
		set.Close()
		return nil, nil
	}
	return set, nil
}

// Dependencies returns the dependency listeners' figures (nil without any).
func (m *Main) Dependencies() []egress.Stats {
	if m.egress == nil {
		return nil
	}
	return m.egress.Stats()
}
