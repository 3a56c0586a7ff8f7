package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// Fault is injected into the traffic the proxy sends to one instance, for
// drills. The proxy treats an injected failure exactly as if the instance had
// produced it: it counts towards outlier detection and is retried by the
// usual rules. The zero value injects nothing.
type Fault struct {
	// Latency added before each try (HTTP) or connection (TCP) to the instance.
	Latency config.Duration `json:"latency,omitempty"`
	// Fraction of tries answered 500 without reaching the instance (TCP: connections closed at once).
	ErrorRate float64 `json:"error_rate,omitempty"`
	// Fraction of tries reset after the request was sent, before any response byte
	// (TCP: connections reset at once).
	ResetRate float64 `json:"reset_rate,omitempty"`
}

// Validate reports a fault that cannot be applied.
func (f Fault) Validate() error {
	if f.ErrorRate < 0 || f.ErrorRate > 1 {
		return fmt.Errorf("fault error_rate %v: must be a fraction from 0 to 1", f.ErrorRate)
	}
	if f.ResetRate < 0 || f.ResetRate > 1 {
		return fmt.Errorf("fault reset_rate %v: must be a fraction from 0 to 1", f.ResetRate)
	}
	if f.Latency.D() > time.Hour {
		return fmt.Errorf("fault latency %v: at most 1h", f.Latency)
	}
	return nil
}

// IsZero reports whether the fault injects nothing.
func (f Fault) IsZero() bool { return f == Fault{} }

// faultOutcome is what the fault does to one try.
type faultOutcome int

const (
	faultNone faultOutcome = iota
	faultError
	faultReset
)

// roll decides one try's fate; the latency applies regardless.
func (f Fault) roll() faultOutcome {
	switch {
	case f.ErrorRate > 0 && rand.Float64() < f.ErrorRate:
		return faultError
	case f.ResetRate > 0 && rand.Float64() < f.ResetRate:
		return faultReset
	}
	return faultNone
}

// errInjectedReset stands for a connection reset by the instance.
var errInjectedReset = errors.New("proxy: connection reset (injected fault)")
