package action

import (
	"context"

	"github.com/medic-dev/medic"
)

// Restart restarts instances ("restart_instance"): each is stopped
// gracefully and started again at once, one after the other. The engine
// checks the disruption budget before it runs the step, and the supervisor
// again for each instance (it waits supervise.BudgetWait, then refuses).
type Restart struct{ Deps }

// Do restarts every instance in.Target names.
func (a Restart) Do(ctx context.Context, in Input) (Output, error) {
	return a.each(ctx, in, "restarted", func(ctx context.Context, id medic.InstanceID) error {
		return a.Supervisor.RestartInstance(ctx, id, in.Actor, in.Reason)
	})
}
