package action

import (
	"context"

	"github.com/medic-dev/medic"
)

// Start starts stopped instances (or cuts a restart backoff short).
type Start struct{ Deps }

// Do starts every instance in.Target names.
func (a Start) Do(ctx context.Context, in Input) (Output, error) {
	return a.each(ctx, in, "started", func(ctx context.Context, id medic.InstanceID) error {
		return a.Supervisor.StartInstance(ctx, id, in.Actor, in.Reason)
	})
}
