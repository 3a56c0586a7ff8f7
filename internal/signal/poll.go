package signal

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/medic-dev/medic/internal/clock"
)

// DefaultPeriod is the collection period of a collector that sets none.
const DefaultPeriod = 10 * time.Second

// PollFunc returns the samples of one collection at now. A sample with a
// zero T is stamped with now.
type PollFunc func(now time.Time) []Sample

// Poller calls a PollFunc every period and adds what it returns to a store.
// The agent uses it to feed figures it already holds (supervisor RSS, CPU,
// FDs, restarts, ready instances, probe latency; proxy traffic) into the
// store under the names documented in the package comment.
type Poller struct {
	Name    string        // for spreading and logs: "supervisor", "proxy"
	Period  time.Duration // default DefaultPeriod
	Clock   clock.Clock   // default clock.Real
	Store   Appender      // required
	Collect PollFunc      // required

	missed atomic.Int64
}

// Poll returns a Poller of f into dst every period on clk.
func Poll(dst Appender, clk clock.Clock, name string, period time.Duration, f PollFunc) *Poller {
	return &Poller{Name: name, Period: period, Clock: clk, Store: dst, Collect: f}
}

// Serve collects every period (the first time at an offset within the first
// period derived from Name) until ctx ends, then returns nil.
func (p *Poller) Serve(ctx context.Context) error {
	period := p.Period
	if period <= 0 {
		period = DefaultPeriod
	}
	every(ctx, clock.Or(p.Clock), period, slot(p.Name, period),
		func(n int) { p.missed.Add(int64(n)) }, p.Step)
	return nil
}

// Step runs one collection at now (what Serve does each period).
func (p *Poller) Step(now time.Time) {
	for _, s := range p.Collect(now) {
		if s.T.IsZero() {
			s.T = now
		}
		p.Store.Add(s.Name, s.Labels, s.T, s.V)
	}
}

// Missed returns how many periods were skipped because a collection ran past them.
func (p *Poller) Missed() int64 { return p.missed.Load() }
