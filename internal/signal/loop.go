package signal

import (
	"context"
	"hash/fnv"
	"time"

	"github.com/medic-dev/medic/internal/clock"
)

// Appender is where collectors put samples; *Store is one.
type Appender interface {
	Add(name string, l Labels, t time.Time, v float64)
}

var _ Appender = (*Store)(nil)

// every calls fn at offset and then every period on the grid offset+k·period
// until ctx ends, and returns once fn has returned. Ticks that fn overran
// are counted in missed (if not nil), not run: a slow collector must not be
// called in a burst to catch up (prometheus IterationsMissed).
func every(ctx context.Context, clk clock.Clock, period, offset time.Duration, missed func(int), fn func(now time.Time)) {
	t := clk.NewTimer(offset)
	defer t.Stop()
	next := clk.Now().Add(offset)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		fn(clk.Now())
		if ctx.Err() != nil {
			return
		}
		now := clk.Now()
		next = next.Add(period)
		if now.After(next) {
			late := now.Sub(next)
			n := late / period
			if late%period != 0 {
				n++
			}
			next = next.Add(n * period)
			if missed != nil {
				missed(int(n))
			}
		}
		t.Reset(next.Sub(now))
	}
}

// slot spreads collectors over their period by a hash of their name, so
// that a dozen collectors with the same period do not all run in the same
// instant (prometheus EvalTimestamp's hash-slotted offset).
func slot(name string, period time.Duration) time.Duration {
	if period <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return time.Duration(h.Sum64() % uint64(period))
}
