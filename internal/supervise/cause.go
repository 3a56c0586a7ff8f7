package supervise

import (
	"context"
	"errors"
	"time"
)

// shutdownActor and shutdownReason name a stop caused by medic itself
// stopping; every other stop names its real actor and cause.
const (
	shutdownActor  = "supervisor"
	shutdownReason = "medic is shutting down"
)

// retired is the cause an instance's context is cancelled with when the
// instance ends while medic keeps running: a reload replaced or removed it, a
// rollback replaced it, a scale-in removed it. Unlike a shutdown it always
// stops the process, even with Env.Detach.
type retired struct {
	actor  string // "api:alice", "signal:SIGHUP", "runbook:crashloop_rollback"
	reason string // "replaced by reload: command, env changed"
	// by, when set, is when the instance must have stopped: its stop grace
	// is cut to the time left, SIGKILL then (StopAllBy).
	by time.Time
}

func (r *retired) Error() string { return r.reason }

// stopCause returns who stops an instance whose context ended and why, and
// whether it is retired (stop the process even when detaching).
func stopCause(ctx context.Context) (actor, reason string, retire bool) {
	var r *retired
	if errors.As(context.Cause(ctx), &r) {
		return r.actor, r.reason, true
	}
	return shutdownActor, shutdownReason, false
}

// stopBy returns the moment a retired instance must have stopped (zero:
// its stop grace as configured).
func stopBy(ctx context.Context) time.Time {
	var r *retired
	if errors.As(context.Cause(ctx), &r) {
		return r.by
	}
	return time.Time{}
}
