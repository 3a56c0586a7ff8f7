// Package probe checks instance health with Kubernetes semantics.
//
// It has three layers, each usable alone:
//
//   - Checkers (http, tcp, exec, grpc) run one check and say why it passed or
//     failed. They know nothing about thresholds or schedules.
//   - Threshold and Counter turn a stream of results into a debounced state
//     (kubelet's resultRun); they are pure values.
//   - Set runs the startup, liveness and readiness workers of one instance
//     process and reports edges only, through OnUpdate.
//
// Thresholds stay out of the checkers and scheduling stays out of the counter
// (consul's StatusHandler decorator and kubelet's worker are the models).
package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/netguard"
)

// Defaults applied to zero fields of a config.Probe. They match config's
// documented defaults so a Probe built in code behaves like one loaded from YAML.
const (
	DefaultPeriod           = 10 * time.Second
	DefaultTimeout          = time.Second
	DefaultSuccessThreshold = 1
	DefaultFailureThreshold = 3
	// DefaultHost is probed when a probe names no host: instances listen on loopback.
	DefaultHost = "127.0.0.1"
	// UserAgent is sent by the http checker unless the probe's headers override it.
	UserAgent = "medic-probe/1"
)

// Outcome is the result of one check.
type Outcome struct {
	// Health is HealthSuccess or HealthFailure. HealthUnknown means the check
	// could not judge (the caller cancelled it); counters ignore it.
	Health medic.Health
	// Detail is a short human reason: "HTTP 503", "timeout after 1s",
	// "dial tcp 127.0.0.1:9100: connect: connection refused".
	Detail string
	// Own is set on an Unknown outcome when medic's own shortage (out of file
	// descriptors, memory, ports) stopped the check: it says nothing about the
	// instance, so it never counts toward a restart or an ejection.
	Own bool
}

// own turns an error that comes from medic's own shortage into an Unknown
// Outcome; ok is false for any other error.
func own(err error) (o Outcome, ok bool) {
	if !netguard.OwnShortage(err) {
		return Outcome{}, false
	}
	return Outcome{Health: medic.HealthUnknown, Own: true,
		Detail: "not judged, medic itself is short of resources: " + err.Error()}, true
}

// Pass builds a passing Outcome.
func Pass(detail string) Outcome { return Outcome{Health: medic.HealthSuccess, Detail: detail} }

// Fail builds a failing Outcome.
func Fail(detail string) Outcome { return Outcome{Health: medic.HealthFailure, Detail: detail} }

// Checker runs one health check. Check must return promptly once ctx ends; a
// check cut by its deadline fails with Detail "timeout after X". Check may be
// called from several goroutines; kinds that must not overlap (exec) serialise.
type Checker interface {
	Check(ctx context.Context) Outcome
}

// CheckerFunc adapts a function to Checker.
type CheckerFunc func(ctx context.Context) Outcome

// Check calls f(ctx).
func (f CheckerFunc) Check(ctx context.Context) Outcome { return f(ctx) }

var _ Checker = CheckerFunc(nil)

// Target is what a probe is pointed at: one running instance.
type Target struct {
	// Port is the instance's port, used when the probe names none.
	Port int
	// Dir is the working directory of exec probes ("" = medic's).
	Dir string
	// Env is the environment of exec probes, "KEY=value" pairs; nil means
	// medic's own environment (os/exec's rule).
	Env []string
}

// NewChecker builds the checker for the one kind set in p. It fails when no
// kind or more than one is set, or when the kind's settings cannot work
// (no port to probe, an empty command, a malformed status range).
func NewChecker(p *config.Probe, t Target) (Checker, error) {
	if p == nil {
		return nil, errors.New("probe: no probe configured")
	}
	n := 0
	for _, set := range []bool{p.HTTP != nil, p.TCP != nil, p.Exec != nil, p.GRPC != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("probe: want exactly one of http, tcp, exec, grpc; got %d", n)
	}
	switch {
	case p.HTTP != nil:
		return newHTTPChecker(p.HTTP, t)
	case p.TCP != nil:
		return newTCPChecker(p.TCP, t)
	case p.Exec != nil:
		return newExecChecker(p.Exec, t)
	default:
		return newGRPCChecker(p.GRPC, t)
	}
}

// address joins host and port, defaulting to DefaultHost and the target's port.
func address(kind, host string, port int, t Target) (string, error) {
	if host == "" {
		host = DefaultHost
	}
	if port == 0 {
		port = t.Port
	}
	if port <= 0 || port > 65535 {
		return "", fmt.Errorf("probe: %s: no port to probe (probe port %d, instance port %d)", kind, port, t.Port)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// timeoutError is the cancellation cause Set attaches to a probe's context, so
// checkers can say how long they were given even with an injected clock.
type timeoutError struct{ after time.Duration }

func (e *timeoutError) Error() string { return "timeout after " + e.after.String() }

// Is makes a Set timeout match context.DeadlineExceeded, as a real deadline would.
func (e *timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// withTimeout returns a context cancelled d from now on clk, with a
// timeoutError as its cause. It uses clk rather than context.WithTimeout so
// that tests driving a fake clock also drive probe timeouts.
func withTimeout(ctx context.Context, clk clock.Clock, d time.Duration) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithCancelCause(ctx)
	t := clk.AfterFunc(d, func() { cancel(&timeoutError{after: d}) })
	return cctx, func() { t.Stop(); cancel(context.Canceled) }
}

// doneDetail explains why ctx ended; start is when the check began, used to
// state the budget of a plain context.WithTimeout deadline.
func doneDetail(ctx context.Context, start time.Time) string {
	cause := context.Cause(ctx)
	var te *timeoutError
	if errors.As(cause, &te) {
		return te.Error()
	}
	if errors.Is(cause, context.DeadlineExceeded) {
		if dl, ok := ctx.Deadline(); ok {
			return "timeout after " + roughly(dl.Sub(start)).String()
		}
		return "timeout"
	}
	return "canceled"
}

// roughly rounds a measured budget to two or three significant digits: the
// time between a caller's context.WithTimeout and the start of Check makes
// "timeout after 999.8ms" out of a 1s timeout.
func roughly(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= 100*time.Millisecond:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// ended returns the Outcome of a check whose context ended: a failure when a
// deadline cut it, Unknown when the caller cancelled it (nothing was judged).
func ended(ctx context.Context, start time.Time) Outcome {
	d := doneDetail(ctx, start)
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return Fail(d)
	}
	return Outcome{Health: medic.HealthUnknown, Detail: d}
}

// clip shortens s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
