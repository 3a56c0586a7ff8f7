package action

import (
	"context"

	"github.com/medic-dev/medic"
)

// Stop stops instances and keeps them stopped (no restarts) until started.
type Stop struct{ Deps }

// Do stops every instance in.Target names.
func (a Stop) Do(ctx context.Context, in Input) (Output, error) {
	return a.each(ctx, in, "stopped", func(ctx context.Context, id medic.InstanceID) error {
		return a.Supervisor.StopInstance(ctx, id, in.Actor, in.Reason)
	})
}
