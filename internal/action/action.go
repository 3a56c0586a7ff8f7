// Package action holds the drivers that runbook steps run: restart, rolling
// restart, stop, start, scale, drain, exec, HTTP call, file cleanup,
// rollback and notify. Each is one small value implementing Action, in its
// own file; the remedy engine decides whether a step may run, this package
// only carries it out — but every driver that touches instances refuses an
// empty target set and one larger than MaxTargets by itself too (an empty
// or oversized target set must never be read as "everything").
package action

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/notify"
	"github.com/medic-dev/medic/internal/supervise"
)

// Errors that decide what the engine records.
var (
	ErrNoTargets      = errors.New("action: no targets")
	ErrTooManyTargets = errors.New("action: more targets than max_targets")
	ErrUnsupported    = errors.New("action: not available")
)

// Action carries out one step. Do returns once the action is done (or ctx
// ends: the engine gives each step a deadline); Output says what happened
// even when err is not nil.
type Action interface {
	Do(ctx context.Context, in Input) (Output, error)
}

// Func adapts a function to Action.
type Func func(ctx context.Context, in Input) (Output, error)

// Do calls f.
func (f Func) Do(ctx context.Context, in Input) (Output, error) { return f(ctx, in) }

// Input is a rendered step: templates already expanded, defaults applied.
// Each action reads the fields it documents and ignores the rest.
type Input struct {
	Key      string // idempotency key; "" is never deduplicated
	Actor    string // "runbook:disk_cleanup", passed to the supervisor and recorded
	Reason   string // why the step runs
	Incident string // correlation id, exported to exec as MEDIC_INCIDENT
	Target   string // "web/0" (an instance) or "web" (a service, or all its instances)

	Command []string          // exec
	Env     map[string]string // exec
	Dir     string            // exec
	Timeout time.Duration     // exec, http: their own limit (ctx may end sooner)

	Method  string            // http
	URL     string            // http
	Headers map[string]string // http
	Body    string            // http
	Status  string            // http: "200-299" or "204"

	Root      string        // delete_files
	Glob      string        // delete_files
	OlderThan time.Duration // delete_files

	By, To int // scale

	ReadyTimeout time.Duration // rolling_restart

	Receiver, Message, Severity string // notify

	Flag, FlagValue string // set_flag: the flag of the target service, "true" or "false"
}

// Output is what an action reports: recorded in the audit log and in the
// escalation evidence.
type Output struct {
	Summary  string            `json:"summary"`           // one line
	Changed  bool              `json:"changed"`           // false: nothing needed doing (already at the bound, no files)
	Targets  []string          `json:"targets,omitempty"` // what was acted on
	Detail   string            `json:"detail,omitempty"`  // captured output, at most 4 KiB
	Fields   map[string]string `json:"fields,omitempty"`  // freed_bytes, status, exit_code …
	Replayed bool              `json:"replayed,omitempty"`
}

// MaxOutput bounds captured output (consul keeps 4 KB of a check's output).
const MaxOutput = 4 << 10

// Supervisor is what the drivers need from the process supervisor.
type Supervisor interface {
	Status() []supervise.ServiceStatus
	RestartInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error
	StopInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error
	StartInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error
	RollingRestart(ctx context.Context, service, actor string, readyTimeout time.Duration) error
	Scale(ctx context.Context, service string, n int, actor string) error
	// Rollback restarts the service with its previous known-good command.
	Rollback(ctx context.Context, service, actor string) error
}

// Traffic removes instances from and returns them to the proxy's rotation.
type Traffic interface {
	Drain(ctx context.Context, id medic.InstanceID) error
	Undrain(id medic.InstanceID)
}

// Notifier queues a notification without blocking (notify.Notifier).
type Notifier interface {
	Send(receiver string, n notify.Notification) error
}

// Bounds returns the instance range automation may scale a service within.
type Bounds func(service string) (min, max int, ok bool)

// Deps are what the built-in drivers act through. Nil Traffic or Notifier
// make drain/undrain or notify fail with ErrUnsupported.
type Deps struct {
	Supervisor Supervisor
	Traffic    Traffic
	Notifier   Notifier
	Bounds     Bounds
	// MaxTargets refuses instance actions on more targets. Default 3.
	MaxTargets int
	// Now stamps file ages for delete_files. Default time.Now.
	Now func() time.Time
}

// Builtins returns the built-in drivers by action name (the names of
// config.Actions).
func Builtins(d Deps) map[string]Action {
	if d.MaxTargets <= 0 {
		d.MaxTargets = 3
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return map[string]Action{
		"restart_instance": Restart{d},
		"rolling_restart":  RollingRestart{d},
		"stop":             Stop{d},
		"start":            Start{d},
		"scale":            Scale{d},
		"drain":            Drain{d},
		"undrain":          Undrain{d},
		"exec":             Exec{},
		"http":             HTTP{},
		"delete_files":     DeleteFiles{Now: d.Now},
		"rollback":         Rollback{d},
		"notify":           Notify{d},
	}
}

// instanceTargets resolves in.Target to instances and enforces the target
// bounds.
func (d Deps) instanceTargets(in Input) ([]medic.InstanceID, error) {
	if d.Supervisor == nil {
		return nil, fmt.Errorf("%w: no supervisor", ErrUnsupported)
	}
	ids, err := Instances(in.Target, d.Supervisor.Status())
	if err != nil {
		return nil, err
	}
	if err := CheckTargets(len(ids), d.MaxTargets); err != nil {
		return nil, fmt.Errorf("%s: %w", in.Target, err)
	}
	return ids, nil
}

// CheckTargets refuses zero targets and more than max.
func CheckTargets(n, max int) error {
	switch {
	case n == 0:
		return ErrNoTargets
	case max > 0 && n > max:
		return fmt.Errorf("%w: %d targets, max_targets %d", ErrTooManyTargets, n, max)
	}
	return nil
}

// each runs f on every instance in order and stops at the first error.
func (d Deps) each(ctx context.Context, in Input, verb string, f func(context.Context, medic.InstanceID) error) (Output, error) {
	ids, err := d.instanceTargets(in)
	if err != nil {
		return Output{Summary: "refused: " + err.Error()}, err
	}
	out := Output{Changed: true}
	for _, id := range ids {
		if err := f(ctx, id); err != nil {
			out.Summary = fmt.Sprintf("%s %v: failed at %s", verb, out.Targets, id)
			return out, fmt.Errorf("%s %s: %w", verb, id, err)
		}
		out.Targets = append(out.Targets, id.String())
	}
	out.Summary = fmt.Sprintf("%s %v", verb, out.Targets)
	return out, nil
}
