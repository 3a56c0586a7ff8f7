package egress

import (
	"sync/atomic"
	"time"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
)

// Outcomes of one call (HTTP) or connection (TCP), the label of
// medic_dependency_calls_total.
const (
	OutcomeOK       = "ok"       // the dependency answered (HTTP < 500) or the connection was made
	OutcomeError    = "error"    // connect error, reset, or a 5xx answer
	OutcomeTimeout  = "timeout"  // no answer within timeout
	OutcomeOpen     = "open"     // refused at once: the breaker is open
	OutcomeShed     = "shed"     // refused: the bulkhead and its queue are full
	OutcomeCanceled = "canceled" // the instance stopped waiting
)

var outcomes = []string{OutcomeOK, OutcomeError, OutcomeTimeout, OutcomeOpen, OutcomeShed, OutcomeCanceled}

// Stats are one dependency's figures since medic started.
type Stats struct {
	Service    string        `json:"service"`
	Dependency string        `json:"dependency"`
	Kind       string        `json:"kind"`
	Protocol   string        `json:"protocol"` // http or tcp
	Listen     string        `json:"listen"`
	Target     string        `json:"target"`  // the url or address
	Timeout    time.Duration `json:"timeout"` // every call is bounded by it
	State      string        `json:"state"`   // closed, open, half-open
	// Calls by outcome (see the Outcome constants).
	Calls     map[string]uint64 `json:"calls"`
	Fallbacks uint64            `json:"fallbacks"` // failed calls answered with a fallback
	Retries   uint64            `json:"retries"`
	InFlight  int64             `json:"in_flight"`
	// TooLarge counts calls refused with 413: a request body over max_body (HTTP).
	TooLarge uint64 `json:"too_large,omitempty"`
	// LatencyP50 and LatencyP99 of the last calls (up to 1024), in seconds.
	LatencyP50 float64 `json:"latency_p50_seconds"`
	LatencyP99 float64 `json:"latency_p99_seconds"`
	// LastCall is the time of the latest call; zero when the dependency was never exercised.
	LastCall time.Time `json:"last_call,omitzero"`
	// Fault is the fault a drill injects now, if any.
	Fault *Fault `json:"fault,omitempty"`
}

// Total is the number of calls seen, whatever their outcome.
func (s Stats) Total() uint64 {
	var n uint64
	for _, v := range s.Calls {
		n += v
	}
	return n
}

// dependency is what HTTP and TCP dependencies share: identity, counters,
// the breaker's state mirror and the injected fault.
type dependency struct {
	tooBig        atomic.Uint64 // calls refused for a request body over max_body
	service, name string
	cfg           *config.Dependency
	clock         clock.Clock
	met           *metrics

	fault    atomic.Pointer[Fault]
	state    atomic.Int32 // State, mirrored from the breaker's transitions
	calls    [6]atomic.Uint64
	fallback atomic.Uint64
	retries  atomic.Uint64
	inflight atomic.Int64
	lastCall atomic.Int64 // unix nanoseconds
	lat      *window

	notify func(Transition) // called under the breaker's lock: must not block
}

func newDependency(service, name string, cfg *config.Dependency, clk clock.Clock, met *metrics, notify func(Transition)) *dependency {
	return &dependency{service: service, name: name, cfg: cfg, clock: clk, met: met, notify: notify, lat: newWindow(1024)}
}

// changed mirrors a breaker transition and reports it.
func (d *dependency) changed(from, to State) {
	d.state.Store(int32(to))
	d.met.state(d.service, d.name, to)
	if d.notify != nil {
		d.notify(Transition{Service: d.service, Dependency: d.name, From: from, To: to, At: d.clock.Now(),
			Reason: transitionReason(d.service, d.name, d.cfg.Breaker, from, to)})
	}
}

// done records one finished call.
func (d *dependency) done(outcome string, took time.Duration) {
	for i, o := range outcomes {
		if o == outcome {
			d.calls[i].Add(1)
		}
	}
	d.met.call(d.service, d.name, outcome, took)
	if outcome != OutcomeOpen && outcome != OutcomeShed {
		d.lat.add(took.Seconds())
	}
}

func (d *dependency) stats(protocol, target string) Stats {
	s := Stats{Service: d.service, Dependency: d.name, Kind: d.cfg.Kind, Protocol: protocol, Listen: d.cfg.Listen,
		Target: target, Timeout: d.cfg.Timeout.D(), State: State(d.state.Load()).String(), Calls: map[string]uint64{},
		Fallbacks: d.fallback.Load(), Retries: d.retries.Load(), InFlight: d.inflight.Load(), TooLarge: d.tooBig.Load()}
	for i, o := range outcomes {
		if n := d.calls[i].Load(); n > 0 {
			s.Calls[o] = n
		}
	}
	s.LatencyP50, s.LatencyP99 = d.lat.quantile(0.5), d.lat.quantile(0.99)
	if t := d.lastCall.Load(); t != 0 {
		s.LastCall = time.Unix(0, t)
	}
	if f := d.fault.Load(); f != nil {
		c := *f
		s.Fault = &c
	}
	return s
}

func (d *dependency) touch(now time.Time) { d.lastCall.Store(now.UnixNano()) }

// admitted counts one call in flight and reports whether the bulkhead and
// its queue have room for it; a refused call is not counted.
func (d *dependency) admit() bool {
	room := int64(d.cfg.Bulkhead.MaxConcurrent)
	if q := d.cfg.Bulkhead.MaxQueue; q != nil {
		room += int64(*q)
	}
	if d.inflight.Add(1) > room {
		d.inflight.Add(-1)
		return false
	}
	return true
}

func (d *dependency) release() { d.inflight.Add(-1) }
