package proxy

import (
	"fmt"
	"sync"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// Breaker states of a client class (ClassStats.Breaker).
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half-open"
)

// classBreaker is one client class's own circuit breaker on the service
// (config.ProxyClassBreaker): the class's failed requests (5xx, no answer)
// within window open it; while open the class's requests are refused at
// once; after open_for, trials requests go through, and it closes when all
// of them succeed (opens again on the first failure). Its decisions are
// pure functions of the times given; it holds its own lock.
//
// The instances' health is not its business: outlier ejection stays per
// instance for every class. What this adds is that one class's failures —
// an agent hammering an endpoint that fails for it — stop that class's
// requests early without touching the others'.
type classBreaker struct {
	cfg config.ProxyClassBreaker

	mu      sync.Mutex
	state   string
	fails   []time.Time // closed: the times of failures still within the window
	until   time.Time   // open: until when
	gen     uint64      // changes at every transition: a result from an older state is ignored
	trials  int         // half-open: trials admitted
	trialOK int         // half-open: trials that succeeded
	opened  uint64      // times it opened
	refused uint64      // requests refused while open
}

func newClassBreaker(c *config.ProxyClassBreaker) *classBreaker {
	if c == nil {
		return nil
	}
	return &classBreaker{cfg: *c, state: BreakerClosed}
}

// breakerChange is a transition, for the log and the metrics.
type breakerChange struct{ from, to, reason string }

// allow decides whether a request of the class may go at now. gen is to be
// given back to result; wait is how long until it may try again.
func (b *classBreaker) allow(now time.Time) (ok bool, gen uint64, wait time.Duration, ch *breakerChange) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == BreakerOpen {
		if now.Before(b.until) {
			b.refused++
			return false, b.gen, b.until.Sub(now), nil
		}
		ch = b.to(BreakerHalfOpen, fmt.Sprintf("open for %v: letting %d trial request(s) through", b.cfg.OpenFor.D(), b.cfg.HalfOpenTrials))
	}
	if b.state == BreakerHalfOpen {
		if b.trials >= b.cfg.HalfOpenTrials {
			b.refused++
			return false, b.gen, time.Second, ch
		}
		b.trials++
	}
	return true, b.gen, 0, ch
}

// untry gives back the trial of a request allowed under gen that was then
// refused before it went out (class rate, per-client limit, no seat): no
// result will come for it, and a trial never given back would keep the
// breaker half-open, refusing the class, for good.
func (b *classBreaker) untry(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == BreakerHalfOpen && gen == b.gen && b.trials > 0 {
		b.trials--
	}
}

// result counts the outcome of a request allowed under gen.
func (b *classBreaker) result(now time.Time, gen uint64, failed bool) *breakerChange {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen != b.gen {
		return nil
	}
	switch b.state {
	case BreakerClosed:
		if !failed {
			return nil
		}
		keep := b.fails[:0]
		for _, t := range b.fails {
			if now.Sub(t) < b.cfg.Window.D() {
				keep = append(keep, t)
			}
		}
		b.fails = append(keep, now)
		if len(b.fails) >= b.cfg.Failures {
			b.until = now.Add(b.cfg.OpenFor.D())
			b.opened++
			return b.to(BreakerOpen, fmt.Sprintf("%d failed requests within %v", len(b.fails), b.cfg.Window.D()))
		}
	case BreakerHalfOpen:
		if failed {
			b.until = now.Add(b.cfg.OpenFor.D())
			b.opened++
			return b.to(BreakerOpen, "a trial request failed")
		}
		if b.trialOK++; b.trialOK >= b.cfg.HalfOpenTrials {
			return b.to(BreakerClosed, fmt.Sprintf("%d trial request(s) succeeded", b.trialOK))
		}
	}
	return nil
}

func (b *classBreaker) to(state, reason string) *breakerChange {
	ch := &breakerChange{from: b.state, to: state, reason: reason}
	b.state, b.gen, b.trials, b.trialOK, b.fails = state, b.gen+1, 0, 0, b.fails[:0]
	return ch
}

// snapshot is the breaker's state for ClassStats.
func (b *classBreaker) snapshot() (state string, opened, refused uint64) {
	if b == nil {
		return "", 0, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state, b.opened, b.refused
}
