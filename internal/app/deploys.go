package app

import (
	"context"
	"fmt"

	"github.com/medic-dev/medic/internal/bluegreen"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/supervise"
)

// deployRouter is the releases' Supervisor: it carries each deploy out by
// the new spec's strategy (services.X.deploy.strategy). A rollback during a
// blue-green window is the blue-green runner's (a proxy switch back).
type deployRouter struct {
	sup *supervise.Supervisor
	bg  *bluegreen.Runner
}

// Spec implements release.Supervisor: the spec the service serves.
func (d *deployRouter) Spec(service string) *config.Service { return d.bg.Spec(service) }

// Deploy implements release.Supervisor.
func (d *deployRouter) Deploy(ctx context.Context, service string, spec *config.Service, actor, why string, done func(error)) error {
	if _, open := d.bg.Window(service); open || spec.Deploy.StrategyOrDefault() == config.StrategyBlueGreen {
		return d.bg.Deploy(ctx, service, spec, actor, why, done)
	}
	return d.sup.Deploy(ctx, service, spec, actor, why, done)
}

// SetWeights sets the shares of a service's proxy groups (bluegreen.Traffic).
func (t *traffic) SetWeights(service string, w proxy.Weights) error {
	p := t.get(service)
	if p == nil {
		return fmt.Errorf("service %s has no proxy", service)
	}
	return p.SetWeights(w)
}

// ClearWeights ends the weighting of a service's proxy groups (bluegreen.Traffic).
func (t *traffic) ClearWeights(service string) error {
	p := t.get(service)
	if p == nil {
		return fmt.Errorf("service %s has no proxy", service)
	}
	p.ClearWeights()
	return nil
}
