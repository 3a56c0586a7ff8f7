package proxy_test

import (
	"math"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/proxy"
)

func limiterPolicy() proxy.LimiterPolicy {
	return proxy.LimiterPolicy{Initial: 20, Min: 4, Max: 200, Tolerance: 2, Interval: 100 * time.Millisecond, MinSamples: 10}
}

// feed runs one interval: fill inflight up to n, sample rtt ten times, release.
func feed(l *proxy.Limiter, now time.Time, inflight int, rtt time.Duration) time.Time {
	taken := 0
	for range inflight {
		if l.Acquire() {
			taken++
		}
	}
	for i := range 10 {
		l.Sample(now.Add(time.Duration(i+1)*10*time.Millisecond), rtt)
	}
	for range taken {
		l.Release()
	}
	return now.Add(100 * time.Millisecond)
}

// service is a synthetic service behind the limiter, for one 100 ms interval
// at a time: slots requests served at once (each taking work, the rest queue
// in front of them), plus extra latency that takes no slot (a busy host, a
// slow dependency). Clients arrive at rate per second whatever the answers.
type service struct {
	slots int
	work  time.Duration
	extra time.Duration
	rate  float64
}

// step runs one interval against l at now and returns what the clients saw:
// the latency of admitted requests, the throughput and how many were refused.
func (s service) step(l *proxy.Limiter, now time.Time) (rtt time.Duration, perSec float64, refused int) {
	const interval = 100 * time.Millisecond
	base := s.work + s.extra
	limit := float64(l.Limit())
	want := s.rate * base.Seconds() // in flight if nothing queued
	var inflight float64
	switch {
	case s.rate*s.work.Seconds() > float64(s.slots): // more than the slots serve: a queue fills up to the limit
		inflight = limit
	default:
		inflight = min(want, limit)
	}
	rtt, perSec = base, inflight/base.Seconds()
	if busy := inflight * s.work.Seconds() / base.Seconds(); busy > float64(s.slots) { // queueing in front of the slots
		perSec = float64(s.slots) / s.work.Seconds()
		rtt = time.Duration(inflight / perSec * float64(time.Second))
	}
	offered := int(math.Round(s.rate * interval.Seconds()))
	admitted := int(math.Round(perSec * interval.Seconds()))
	refused = max(0, offered-admitted)
	taken := 0
	for range int(math.Ceil(inflight)) {
		if l.Acquire() {
			taken++
		}
	}
	if refused > 0 {
		l.Acquire() // demand beyond the limit: this one is refused
	}
	n := max(admitted, 10)
	for i := range n {
		jitter := time.Duration(i%5-2) * rtt / 100 // ±2%, so that p90 is above the mean as in life
		l.Sample(now.Add(time.Duration(i+1)*interval/time.Duration(n)), rtt+jitter)
	}
	for range taken {
		l.Release()
	}
	return rtt, perSec, refused
}

// phase is a stretch of constant conditions.
type phase struct {
	s         service
	intervals int
}

// outcome sums up the last phase of a run.
type outcome struct {
	limit       int
	maxRTT      time.Duration // over the last half of the phase
	perSec      float64       // mean over the last half of the phase
	refused     int           // over the whole phase
	firstGrowth int           // intervals until the limit first reached growthTarget; -1 never
}

func runPhases(p proxy.LimiterPolicy, growthTarget int, phases ...phase) outcome {
	l := proxy.NewLimiter(p)
	now := t0
	var o outcome
	for pi, ph := range phases {
		last := pi == len(phases)-1
		o = outcome{firstGrowth: -1}
		var sum float64
		for i := range ph.intervals {
			rtt, perSec, refused := ph.s.step(&l, now)
			now = now.Add(100 * time.Millisecond)
			if !last {
				continue
			}
			o.refused += refused
			if i >= ph.intervals/2 {
				o.maxRTT = max(o.maxRTT, rtt)
				sum += perSec
			}
			if o.firstGrowth < 0 && growthTarget > 0 && l.Limit() >= growthTarget {
				o.firstGrowth = i + 1
			}
		}
		o.perSec = sum / float64(ph.intervals-ph.intervals/2)
	}
	o.limit = l.Limit()
	return o
}

// Timelines on a synthetic service: 24 slots × 20 ms = 1200 requests/s, the
// benchmark's overload scenario (bench/proxy).
func TestLimiterTimelines(t *testing.T) {
	const work = 20 * time.Millisecond
	policy := proxy.LimiterPolicy{Initial: 100, Min: 16, Max: 1000, Tolerance: 1.05, Interval: 100 * time.Millisecond, MinSamples: 10}
	normal := service{slots: 24, work: work, rate: 600}    // half capacity: learns the baseline
	overload := service{slots: 24, work: work, rate: 2400} // twice capacity
	tests := []struct {
		name   string
		phases []phase
		check  func(t *testing.T, o outcome)
	}{{
		name:   "2× overload settles at the knee: capacity served, latency within tolerance",
		phases: []phase{{normal, 20}, {overload, 100}},
		check: func(t *testing.T, o outcome) {
			if o.limit < 23 || o.limit > 26 {
				t.Errorf("limit %d, want the knee 24 (± 1, +1 while probing past it)", o.limit)
			}
			if o.maxRTT > time.Duration(1.1*float64(work)) {
				t.Errorf("admitted latency up to %v, want within 1.1 × %v", o.maxRTT, work)
			}
			if o.perSec < 0.95*1200 {
				t.Errorf("served %.0f/s of a capacity of 1200/s", o.perSec)
			}
		},
	}, {
		name: "host stall at low concurrency sheds nothing",
		phases: []phase{{normal, 20},
			{service{slots: 24, work: work, extra: 40 * time.Millisecond, rate: 600}, 100}}, // 3× latency, 36 in flight of 100
		check: func(t *testing.T, o outcome) {
			if o.refused > 0 || o.limit != 100 {
				t.Errorf("%d refused, limit %d: a stall far from the limit shed a healthy load", o.refused, o.limit)
			}
		},
	}, {
		name: "after an overload, a host stall on the healthy load that follows sheds nothing",
		phases: []phase{{normal, 20}, {overload, 50}, {normal, 50},
			{service{slots: 24, work: work, extra: 20 * time.Millisecond, rate: 600}, 100}}, // 2× latency: 24 in flight
		check: func(t *testing.T, o outcome) {
			if o.refused > 0 {
				t.Errorf("%d refused (limit %d): the limit kept no headroom over the healthy load", o.refused, o.limit)
			}
		},
	}, {
		name:   "scale-out under overload: the limit follows capacity within 1.2 s",
		phases: []phase{{normal, 20}, {overload, 50}, {service{slots: 96, work: work, rate: 9600}, 50}},
		check: func(t *testing.T, o outcome) {
			if o.firstGrowth < 0 || o.firstGrowth > 12 {
				t.Errorf("limit reached the new knee 96 after %d intervals, want within 12", o.firstGrowth)
			}
			if o.limit > 105 {
				t.Errorf("limit %d, want near the new knee 96", o.limit)
			}
			if o.perSec < 0.95*4800 {
				t.Errorf("served %.0f/s of a capacity of 4800/s", o.perSec)
			}
		},
	}, {
		name:   "recovery: once demand falls, nothing is refused",
		phases: []phase{{normal, 20}, {overload, 50}, {normal, 30}},
		check: func(t *testing.T, o outcome) {
			if o.refused > 0 {
				t.Errorf("%d refused at half capacity after the overload (limit %d)", o.refused, o.limit)
			}
		},
	}, {
		name:   "a second overload settles where the first did (the baseline did not drift)",
		phases: []phase{{normal, 20}, {overload, 50}, {normal, 30}, {overload, 300}},
		check: func(t *testing.T, o outcome) {
			if o.limit < 24 || o.limit > 27 {
				t.Errorf("limit %d after a long overload, want 24 to 27", o.limit)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := runPhases(policy, 96, tt.phases...)
			t.Logf("limit %d, max rtt %v, %.0f/s, %d refused, growth after %d", o.limit, o.maxRTT, o.perSec, o.refused, o.firstGrowth)
			tt.check(t, o)
		})
	}
}

func TestLimiterShrinksUnderQueueingAndRecovers(t *testing.T) {
	l := proxy.NewLimiter(limiterPolicy())
	now := t0
	l.Sample(now, 10*time.Millisecond) // anchors the first interval at t0
	// Light load at 10ms: the baseline settles, the limit stays (not in use).
	for range 5 {
		now = feed(&l, now, 5, 10*time.Millisecond)
	}
	if got := l.Limit(); got != 20 {
		t.Fatalf("limit moved under light load: %d", got)
	}
	// In use, latency normal, nothing refused: the limit grows to keep headroom.
	for range 5 {
		now = feed(&l, now, l.Limit(), 12*time.Millisecond)
	}
	grown := l.Limit()
	if grown <= 20 {
		t.Fatalf("limit did not grow while in use at normal latency: %d", grown)
	}
	// Demand beyond the limit and latency 4× the baseline: the limit falls, at most by half per interval.
	now = feed(&l, now, l.Limit()+1, 40*time.Millisecond)
	if got := l.Limit(); got < grown/2 || got >= grown {
		t.Fatalf("after one congested interval limit %d, want in [%d, %d)", got, grown/2, grown)
	}
	for range 20 {
		now = feed(&l, now, l.Limit()+1, 40*time.Millisecond)
	}
	if got := l.Limit(); got != 4 {
		t.Fatalf("sustained congestion: limit %d, want the minimum 4", got)
	}
	// Sustained overload must not have dragged the baseline up: normal latency lets it grow again...
	for range 10 {
		now = feed(&l, now, l.Limit()+1, 10*time.Millisecond)
	}
	if got := l.Limit(); got <= 4 {
		t.Fatalf("limit did not recover: %d", got)
	}
	// ...and 30 ms (3× the 10 ms baseline) still counts as congestion.
	before := l.Limit()
	feed(&l, now, l.Limit()+1, 30*time.Millisecond)
	if got := l.Limit(); got >= before {
		t.Fatalf("30ms after a 10ms baseline did not lower the limit (%d → %d): baseline drifted", before, got)
	}
}

// Latency that stays high with the limit at its floor is a new normal, not
// queueing the limit could cure: the baseline accepts it, slowly.
func TestLimiterAcceptsASlowerNormalAtTheFloor(t *testing.T) {
	l := proxy.NewLimiter(limiterPolicy())
	now := t0
	for range 5 {
		now = feed(&l, now, 5, 10*time.Millisecond)
	}
	for range 30 {
		now = feed(&l, now, l.Limit()+1, 50*time.Millisecond)
	}
	if got := l.Limit(); got != 4 {
		t.Fatalf("limit %d, want the floor 4", got)
	}
	for range 600 { // a minute at the floor
		now = feed(&l, now, l.Limit()+1, 50*time.Millisecond)
	}
	if got := l.Limit(); got <= 4 {
		t.Fatalf("limit still at the floor after a minute of a steady 50ms: the baseline never accepted it")
	}
}

func TestLimiterAcquire(t *testing.T) {
	l := proxy.NewLimiter(proxy.LimiterPolicy{Initial: 2, Min: 1, Max: 10, Tolerance: 2, Interval: time.Second, MinSamples: 10})
	if !l.Acquire() || !l.Acquire() {
		t.Fatal("could not take the first two slots")
	}
	if l.Acquire() {
		t.Fatal("third slot over a limit of 2")
	}
	l.Release()
	if !l.Acquire() {
		t.Fatal("released slot not reusable")
	}
	if l.Inflight() != 2 {
		t.Fatalf("inflight %d", l.Inflight())
	}
}

// A busy host or a slow dependency raises latency while nothing is refused:
// shrinking then would shed a steady load for nothing.
func TestLimiterIgnoresLatencyWithoutRefusals(t *testing.T) {
	l := proxy.NewLimiter(limiterPolicy())
	now := t0
	l.Sample(now, 10*time.Millisecond)
	for range 5 {
		now = feed(&l, now, 5, 10*time.Millisecond)
	}
	for range 20 {
		now = feed(&l, now, 8, 50*time.Millisecond) // 5× slower, 8 in flight of 20
	}
	if got := l.Limit(); got != 20 {
		t.Fatalf("limit %d after slow intervals far from the limit, want 20 unchanged", got)
	}
	for range 20 {
		now = feed(&l, now, l.Limit(), 50*time.Millisecond) // at the limit, still nobody refused
	}
	if got := l.Limit(); got < 20 {
		t.Fatalf("limit fell to %d with nothing refused", got)
	}
}
