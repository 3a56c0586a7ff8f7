package proxy

import (
	"math"
	"time"
)

// Budget caps retries to a fraction of the request rate, so that retries
// cannot turn a partial outage into a storm (Finagle's RetryBudget, Envoy's
// retry_budget). Over a sliding window of 10 s, retries may not exceed
// Ratio × requests + MinPerSecond × 10. It is a pure value; callers serialise
// access and pass now.
type Budget struct {
	ratio     float64
	minPerSec float64
	counts    window // a = requests, b = retries
}

// budgetWindow is the span the budget looks back over.
const budgetWindow = 10 * time.Second

// NewBudget returns an empty budget allowing ratio extra load and at least
// minPerSecond retries per second.
func NewBudget(ratio, minPerSecond float64) Budget {
	return Budget{ratio: ratio, minPerSec: minPerSecond, counts: newWindow(budgetWindow)}
}

// Request counts one client request at now.
func (b *Budget) Request(now time.Time) { b.counts.add(now, 1, 0) }

// Allow reports whether one more retry fits at now, and if so counts it.
func (b *Budget) Allow(now time.Time) bool {
	reqs, retries := b.counts.sum(now)
	if retries+1 > b.ratio*reqs+b.minPerSec*budgetWindow.Seconds() {
		return false
	}
	b.counts.add(now, 0, 1)
	return true
}

// window sums two quantities over a sliding span split into slots.
type window struct {
	width int64 // slot width in nanoseconds
	slots [windowSlots]slot
}

const windowSlots = 10

type slot struct {
	idx  int64
	a, b float64
}

func newWindow(span time.Duration) window {
	return window{width: max(int64(span/windowSlots), int64(time.Millisecond))}
}

func (w *window) add(now time.Time, a, b float64) {
	i := now.UnixNano() / w.width
	s := &w.slots[i%windowSlots]
	if s.idx != i {
		*s = slot{idx: i}
	}
	s.a += a
	s.b += b
}

func (w *window) sum(now time.Time) (a, b float64) {
	i := now.UnixNano() / w.width
	for _, s := range w.slots {
		if s.idx > i-windowSlots && s.idx <= i {
			a += s.a
			b += s.b
		}
	}
	return a, b
}

// ewma is a latency estimate weighted by elapsed time (tau is the time
// constant), so a rarely used instance's estimate follows its latest sample.
// Value decays towards zero while no sample arrives, so that an instance
// avoided for being slow is eventually tried again and re-measured.
type ewma struct {
	v  float64 // seconds
	at time.Time
}

const (
	ewmaTau  = time.Second // smoothing of samples
	ewmaIdle = time.Second // decay while no sample arrives: an instance that got no traffic because it once looked slow is tried again within seconds
)

func (e *ewma) observe(now time.Time, d time.Duration) {
	s := d.Seconds()
	if e.at.IsZero() {
		e.v, e.at = s, now
		return
	}
	dt := max(now.Sub(e.at), 0)
	w := math.Exp(-float64(dt) / float64(ewmaTau))
	e.v = e.v*w + s*(1-w)
	e.at = now
}

func (e *ewma) value(now time.Time) float64 {
	if e.at.IsZero() {
		return e.v
	}
	dt := max(now.Sub(e.at), 0)
	return e.v * math.Exp(-float64(dt)/float64(ewmaIdle))
}
