package action

import (
	"context"
	"fmt"

	"github.com/medic-dev/medic/internal/notify"
)

// Notify queues a message to a receiver. It returns once the message is
// queued, not delivered: a slow receiver never holds up a runbook (delivery
// is audited by the notifier).
type Notify struct{ Deps }

// Do sends in.Message to in.Receiver.
func (a Notify) Do(_ context.Context, in Input) (Output, error) {
	if a.Notifier == nil {
		return Output{}, fmt.Errorf("notify: %w: no notifier", ErrUnsupported)
	}
	sev := in.Severity
	if sev == "" {
		sev = "info"
	}
	err := a.Notifier.Send(in.Receiver, notify.Notification{Kind: notify.KindInfo, Incident: in.Incident,
		Severity: sev, Summary: in.Message, Target: in.Target, Actor: in.Actor})
	if err != nil {
		return Output{Summary: "not queued"}, fmt.Errorf("notify %s: %w", in.Receiver, err)
	}
	return Output{Summary: "queued to " + in.Receiver, Changed: true, Targets: []string{in.Receiver}}, nil
}
