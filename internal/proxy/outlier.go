package proxy

import (
	"fmt"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// BreakerState is the circuit breaker state of one instance. Outlier detection
// drives it: a tripped rule opens it, the end of the ejection time half-opens
// it, and a successful trial request (or a readiness edge) closes it again.
type BreakerState int

const (
	// Closed: the instance takes traffic; failures are counted.
	Closed BreakerState = iota
	// Open: the instance is ejected until its ejection time ends.
	Open
	// HalfOpen: the ejection time is over; one trial request at a time may go
	// through, and its outcome closes or re-opens the breaker.
	HalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("breaker(%d)", int(s))
}

// MarshalText renders the state by name in JSON.
func (s BreakerState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a state name, so that clients can read /v1/status.
func (s *BreakerState) UnmarshalText(b []byte) error {
	for _, v := range []BreakerState{Closed, Open, HalfOpen} {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("unknown breaker state %q", b)
}

// OutlierPolicy holds the ejection rules (see config.ProxyOutlier for meanings).
type OutlierPolicy struct {
	ConsecutiveErrors int
	ErrorRate         float64 // 0 disables the error-rate rule
	MinRequests       int
	Window            time.Duration
	BaseEjection      time.Duration
	MaxEjection       time.Duration
}

// OutlierPolicyFrom converts the config section; c must have its defaults set.
func OutlierPolicyFrom(c config.ProxyOutlier) OutlierPolicy {
	p := OutlierPolicy{
		ConsecutiveErrors: c.ConsecutiveErrors,
		MinRequests:       c.MinRequests,
		Window:            c.Window.D(),
		BaseEjection:      c.BaseEjection.D(),
		MaxEjection:       c.MaxEjection.D(),
	}
	if c.ErrorRate != nil {
		p.ErrorRate = *c.ErrorRate
	}
	return p
}

// Verdict is what one recorded outcome asks of the pool.
type Verdict struct {
	// Eject: a rule tripped; the pool ejects the instance unless too many are ejected already.
	Eject bool
	// Returned: a trial request succeeded and the breaker closed.
	Returned bool
	// Reason is the same sentence for the log, the audit record and the API.
	Reason string
}

// Outlier is the passive health of one instance as a pure value: no clock, no
// goroutines, every method takes now. The pool owns one per instance and
// serialises access to it.
type Outlier struct {
	policy      OutlierPolicy
	open        bool      // ejected; half-open once now >= until
	until       time.Time // end of the current ejection
	trial       bool      // a half-open trial request is in flight
	consecutive int       // failures in a row while closed
	recent      window    // a = requests, b = failures, over policy.Window
	ejections   int       // ejections in a row, for the growing ejection time
	lastEject   time.Time
}

// NewOutlier returns a closed breaker with no history.
func NewOutlier(p OutlierPolicy) Outlier {
	return Outlier{policy: p, recent: newWindow(p.Window)}
}

// State reports the breaker state at now.
func (o *Outlier) State(now time.Time) BreakerState {
	switch {
	case !o.open:
		return Closed
	case now.Before(o.until):
		return Open
	default:
		return HalfOpen
	}
}

// Ejected reports whether the instance is out of rotation at now.
func (o *Outlier) Ejected(now time.Time) bool { return o.State(now) == Open }

// Until is the end of the current ejection (zero when closed).
func (o *Outlier) Until() time.Time {
	if !o.open {
		return time.Time{}
	}
	return o.until
}

// Allow reports whether a request may be sent at now. Closed admits all;
// half-open admits one trial at a time and marks it in flight; open admits none.
func (o *Outlier) Allow(now time.Time) bool {
	switch o.State(now) {
	case Closed:
		return true
	case HalfOpen:
		if o.trial {
			return false
		}
		o.trial = true
		return true
	}
	return false
}

// Record counts the outcome of one request that reached (or failed to reach)
// the instance at now. While closed it applies the consecutive-error and
// error-rate rules; while half-open the outcome decides the trial. Outcomes of
// requests sent before an ejection that arrive while it is open are ignored.
func (o *Outlier) Record(now time.Time, ok bool) Verdict {
	switch o.State(now) {
	case Open:
		return Verdict{}
	case HalfOpen:
		o.trial = false
		if ok {
			o.close()
			return Verdict{Returned: true, Reason: "trial request succeeded after ejection"}
		}
		return Verdict{Eject: true, Reason: "trial request failed after ejection"}
	}
	if ok {
		o.consecutive = 0
		if o.ejections > 0 && now.Sub(o.lastEject) > o.policy.MaxEjection {
			o.ejections = 0 // healthy for a while: the next ejection starts short again
		}
		o.recent.add(now, 1, 0)
		return Verdict{}
	}
	o.consecutive++
	o.recent.add(now, 1, 1)
	if n := o.policy.ConsecutiveErrors; n > 0 && o.consecutive >= n {
		return Verdict{Eject: true, Reason: fmt.Sprintf("%d consecutive failures", o.consecutive)}
	}
	if r := o.policy.ErrorRate; r > 0 {
		total, failed := o.recent.sum(now)
		if total >= float64(max(1, o.policy.MinRequests)) && failed/total >= r {
			return Verdict{Eject: true, Reason: fmt.Sprintf("error rate %.0f%% over %v (%.0f of %.0f requests)",
				100*failed/total, o.policy.Window, failed, total)}
		}
	}
	return Verdict{}
}

// Eject opens the breaker at now and returns the ejection time: BaseEjection
// doubled for each ejection in a row, at most MaxEjection.
func (o *Outlier) Eject(now time.Time) time.Duration {
	d := o.policy.BaseEjection
	for i := 0; i < o.ejections && d < o.policy.MaxEjection; i++ {
		d *= 2
	}
	d = min(d, o.policy.MaxEjection)
	o.ejections++
	o.lastEject = now
	o.open, o.until, o.trial = true, now.Add(d), false
	o.consecutive = 0
	o.recent = newWindow(o.policy.Window)
	return d
}

// Return closes the breaker at once: the readiness probe vouches for the
// instance. The ejection count is kept, so a flapping instance is ejected for
// longer next time.
func (o *Outlier) Return() { o.close() }

// Abandon ends a trial whose request ended without an outcome (the client
// left), so that the next request can be the trial.
func (o *Outlier) Abandon() { o.trial = false }

// Forgive clears the failure counters without changing the state: an ejection
// the pool refused (too many ejected) does not keep re-tripping on every failure.
func (o *Outlier) Forgive() { o.consecutive = 0; o.recent = newWindow(o.policy.Window) }

func (o *Outlier) close() {
	o.open, o.until, o.trial = false, time.Time{}, false
	o.consecutive = 0
	o.recent = newWindow(o.policy.Window)
}
