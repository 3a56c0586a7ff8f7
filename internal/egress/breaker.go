// Package egress protects the way out of a service: medic listens for each
// dependency a service declares and forwards the instances' calls to it inside
// a timeout, retries within a budget, a circuit breaker and a bulkhead
// (failsafe-go's policies, configured explicitly), answering with a fallback
// when the call fails. One listener, so one breaker, serves all instances of
// the service: one instance's failures protect the others.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"

	"github.com/medic-dev/medic/internal/config"
)

// State is a breaker's state. The zero value is Closed: a dependency nobody
// has called yet is presumed healthy, as failsafe-go's breaker starts.
type State int

// Breaker states.
const (
	Closed State = iota
	HalfOpen
	Open
)

func (s State) String() string {
	switch s {
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "closed"
}

func stateOf(s circuitbreaker.State) State {
	switch s {
	case circuitbreaker.OpenState:
		return Open
	case circuitbreaker.HalfOpenState:
		return HalfOpen
	}
	return Closed
}

// Transition is one breaker state change, with the reason that goes to the
// event, the audit record and the log.
type Transition struct {
	Service    string
	Dependency string
	From, To   State
	At         time.Time
	Reason     string
}

// newBreaker builds the dependency's breaker from its config: Failures within
// Window open it (failsafe-go's default would open after one failure), it
// stays open OpenFor, then HalfOpenTrials trial calls must all succeed.
// onChange runs under the breaker's lock: it must not block or call back.
func newBreaker[R any](c config.DependencyBreaker, failed func(R, error) bool, onChange func(from, to State)) circuitbreaker.CircuitBreaker[R] {
	return circuitbreaker.NewBuilder[R]().
		HandleIf(failed).
		WithFailureThresholdPeriod(uint(c.Failures), c.Window.D()).
		WithDelay(c.OpenFor.D()).
		WithSuccessThreshold(uint(c.HalfOpenTrials)).
		OnStateChanged(func(e circuitbreaker.StateChangedEvent) {
			onChange(stateOf(e.OldState), stateOf(e.NewState))
		}).
		Build()
}

// transitionReason says why the breaker moved, in the words of its config.
func transitionReason(svc, dep string, c config.DependencyBreaker, from, to State) string {
	switch to {
	case Open:
		if from == HalfOpen {
			return fmt.Sprintf("dependency %s/%s breaker open again: a trial call failed; calls fail fast for %v", svc, dep, c.OpenFor)
		}
		return fmt.Sprintf("dependency %s/%s breaker open: %d failures within %v; calls fail fast for %v", svc, dep, c.Failures, c.Window, c.OpenFor)
	case HalfOpen:
		return fmt.Sprintf("dependency %s/%s breaker half-open after %v: letting %d trial call(s) through", svc, dep, c.OpenFor, c.HalfOpenTrials)
	}
	return fmt.Sprintf("dependency %s/%s breaker closed: %d trial call(s) succeeded", svc, dep, c.HalfOpenTrials)
}

// httpFailed is what counts against an HTTP dependency: no answer (connect
// error, reset, timeout) or a 5xx answer. The caller giving up
// (context.Canceled) is not the dependency's fault.
func httpFailed(resp *http.Response, err error) bool {
	if err != nil {
		var mbe *http.MaxBytesError // the instance sent too much: not the dependency's failure
		return !errors.Is(err, context.Canceled) && !errors.As(err, &mbe)
	}
	return resp != nil && resp.StatusCode >= 500
}
