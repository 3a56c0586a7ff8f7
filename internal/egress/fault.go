package egress

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Fault is injected between medic's dependency listener and the dependency,
// for drills: medic treats it exactly as if the dependency had done it, so
// the timeout, the breaker, the bulkhead and the fallback all react as they
// would in a real outage, and the application feels what it would feel. The
// zero value injects nothing.
type Fault struct {
	// Latency added before each try (HTTP) or connection (TCP) reaches the dependency.
	Latency time.Duration `json:"latency,omitempty"`
	// Fraction of tries answered 500 as if by the dependency (TCP: connections closed at once).
	ErrorRate float64 `json:"error_rate,omitempty"`
	// The dependency is unreachable: every try fails to connect.
	Down bool `json:"down,omitempty"`
}

// Validate reports a fault that cannot be applied.
func (f Fault) Validate() error {
	if f.ErrorRate < 0 || f.ErrorRate > 1 {
		return fmt.Errorf("fault error_rate %v: must be a fraction from 0 to 1", f.ErrorRate)
	}
	if f.Latency < 0 || f.Latency > time.Hour {
		return fmt.Errorf("fault latency %v: must be from 0 to 1h", f.Latency)
	}
	return nil
}

// IsZero reports whether the fault injects nothing.
func (f Fault) IsZero() bool { return f == Fault{} }

// fails rolls the error rate for one try.
func (f Fault) fails() bool { return f.ErrorRate > 0 && rand.Float64() < f.ErrorRate }

// errInjectedDown stands for a dependency that refuses connections.
var errInjectedDown = errors.New("egress: connection refused (injected fault: dependency down)")
