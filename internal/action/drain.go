package action

import (
	"context"
	"fmt"

	"github.com/medic-dev/medic"
)

// Drain takes instances out of the proxy's rotation and waits for their
// in-flight requests (as Traffic.Drain does); the processes keep running.
type Drain struct{ Deps }

// Do drains every instance in.Target names.
func (a Drain) Do(ctx context.Context, in Input) (Output, error) {
	if a.Traffic == nil {
		err := fmt.Errorf("drain: %w: no proxy in front of the service", ErrUnsupported)
		return Output{Summary: err.Error()}, err
	}
	return a.each(ctx, in, "drained", a.Traffic.Drain)
}

// Undrain returns drained instances to rotation (a rollback step for Drain).
type Undrain struct{ Deps }

// Do undrains every instance in.Target names.
func (a Undrain) Do(ctx context.Context, in Input) (Output, error) {
	if a.Traffic == nil {
		err := fmt.Errorf("undrain: %w: no proxy in front of the service", ErrUnsupported)
		return Output{Summary: err.Error()}, err
	}
	return a.each(ctx, in, "undrained", func(_ context.Context, id medic.InstanceID) error {
		a.Traffic.Undrain(id)
		return nil
	})
}
