package demoapp

import (
	"context"
	"time"
)

// leakTick is how often the leak grows: ten small steps a second look like a
// steady leak to an RSS trend, where one big step a second would look like a jump.
const leakTick = 100 * time.Millisecond

// pageSize is the stride at which leaked memory is touched. Untouched pages of
// a large allocation are never faulted in and would not show in RSS.
const pageSize = 4096

// leakLoop grows the leak while the leak fault is set, and sleeps on the kick
// channel otherwise, so an idle demoapp does not wake ten times a second.
func (a *App) leakLoop(ctx context.Context) {
	for {
		a.faults.mu.Lock()
		rate := a.faults.leakRate
		a.faults.mu.Unlock()
		if rate == 0 {
			select {
			case <-ctx.Done():
				return
			case <-a.faults.kick:
				continue
			}
		}
		t := a.clock.NewTimer(leakTick)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		a.leakStep()
	}
}

// leakStep adds one tick's worth of touched memory, up to the limit.
func (a *App) leakStep() {
	f := &a.faults
	f.mu.Lock()
	gen, rate, have := f.leakGen, f.leakRate, f.leakedN
	f.mu.Unlock()
	n := int64(rate * (1 << 20) * leakTick.Seconds())
	n = min(n, a.leakLimit-have)
	if rate == 0 || n <= 0 {
		return
	}
	b := make([]byte, n) // allocated outside the lock: a large step must not stall requests
	for i := 0; i < len(b); i += pageSize {
		b[i] = 1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leakGen != gen || f.leakRate == 0 {
		return // reset while allocating: drop this step
	}
	f.leaked = append(f.leaked, b)
	f.leakedN += n
	if f.leakedN >= a.leakLimit {
		a.log.Warn("demoapp: leak reached its limit; holding", "bytes", f.leakedN)
	}
}
