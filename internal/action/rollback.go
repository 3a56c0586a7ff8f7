package action

import (
	"context"
	"fmt"
)

// Rollback restarts a service with its previous known-good command, binary,
// arguments and environment (supervise.Supervisor.Rollback). It fails when
// the service has no previous version: the crash-loop runbook then stops the
// instances and escalates.
type Rollback struct{ Deps }

// Do rolls back the service in.Target.
func (a Rollback) Do(ctx context.Context, in Input) (Output, error) {
	if a.Supervisor == nil {
		return Output{}, fmt.Errorf("rollback: %w: no supervisor", ErrUnsupported)
	}
	svc, err := Service(in.Target, a.Supervisor.Status())
	if err != nil {
		return Output{Summary: "refused: " + err.Error()}, fmt.Errorf("rollback: %w", err)
	}
	if err := a.Supervisor.Rollback(ctx, svc, in.Actor); err != nil {
		return Output{Summary: "rollback of " + svc + " failed", Targets: []string{svc}}, fmt.Errorf("rollback %s: %w", svc, err)
	}
	return Output{Summary: "rolled back " + svc + " to its previous version", Targets: []string{svc}, Changed: true}, nil
}
