package action

import (
	"context"
	"fmt"
	"time"
)

// RollingRestart restarts a service's instances one at a time, each waiting
// until the others alone satisfy min_available and then until it is ready
// again (supervise.Supervisor.RollingRestart).
type RollingRestart struct{ Deps }

// Do restarts the service in.Target; in.ReadyTimeout (default 1m) bounds
// each instance's wait.
func (a RollingRestart) Do(ctx context.Context, in Input) (Output, error) {
	if a.Supervisor == nil {
		return Output{}, fmt.Errorf("rolling restart: %w: no supervisor", ErrUnsupported)
	}
	svc, err := Service(in.Target, a.Supervisor.Status())
	if err != nil {
		return Output{Summary: "refused: " + err.Error()}, fmt.Errorf("rolling restart: %w", err)
	}
	rt := in.ReadyTimeout
	if rt <= 0 {
		rt = time.Minute
	}
	if err := a.Supervisor.RollingRestart(ctx, svc, in.Actor, rt); err != nil {
		return Output{Summary: "rolling restart of " + svc + " stopped", Targets: []string{svc}, Changed: true}, err
	}
	return Output{Summary: "rolling restart of " + svc, Targets: []string{svc}, Changed: true}, nil
}
