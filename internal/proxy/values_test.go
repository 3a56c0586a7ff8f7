package proxy_test

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/proxy"
)

func TestBudget(t *testing.T) {
	b := proxy.NewBudget(0.2, 0)
	for i := range 100 {
		b.Request(t0.Add(time.Duration(i) * time.Millisecond))
	}
	now := t0.Add(100 * time.Millisecond)
	n := 0
	for b.Allow(now) {
		n++
		if n > 1000 {
			t.Fatal("budget never runs out")
		}
	}
	if n != 20 {
		t.Fatalf("100 requests allowed %d retries, want 20", n)
	}
	// Ten seconds later the window has moved on: the old requests no longer count.
	if b.Allow(t0.Add(11 * time.Second)) {
		t.Fatal("retry allowed with no recent requests and no minimum")
	}

	// The minimum allows a few retries per second even without traffic.
	b = proxy.NewBudget(0.2, 3)
	n = 0
	for b.Allow(t0) {
		n++
	}
	if n != 30 {
		t.Fatalf("minimum of 3/s over 10s allowed %d, want 30", n)
	}
}

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
	// In use, latency normal: the limit grows.
	for range 5 {
		now = feed(&l, now, l.Limit(), 12*time.Millisecond)
	}
	grown := l.Limit()
	if grown <= 20 {
		t.Fatalf("limit did not grow while in use at normal latency: %d", grown)
	}
	// Queueing: latency 4× the baseline. The limit falls, at most by half per interval.
	now = feed(&l, now, l.Limit(), 40*time.Millisecond)
	if got := l.Limit(); got < grown/2 || got >= grown {
		t.Fatalf("after one congested interval limit %d, want in [%d, %d)", got, grown/2, grown)
	}
	for range 20 {
		now = feed(&l, now, l.Limit(), 40*time.Millisecond)
	}
	if got := l.Limit(); got != 4 {
		t.Fatalf("sustained congestion: limit %d, want the minimum 4", got)
	}
	// Sustained overload must not have dragged the baseline up: normal latency lets it grow again...
	for range 10 {
		now = feed(&l, now, l.Limit(), 12*time.Millisecond)
	}
	if got := l.Limit(); got <= 4 {
		t.Fatalf("limit did not recover: %d", got)
	}
	// ...and 30 ms (3× the 10 ms baseline) still counts as congestion.
	before := l.Limit()
	feed(&l, now, l.Limit(), 30*time.Millisecond)
	if got := l.Limit(); got >= before {
		t.Fatalf("30ms after a 10ms baseline did not lower the limit (%d → %d): baseline drifted", before, got)
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

func TestClientLimits(t *testing.T) {
	c := proxy.NewClientLimits(10, 2, 3, time.Minute)
	// Burst of 2, then refused with a wait of about 1/10 s.
	for i := range 2 {
		if ok, _ := c.Allow(t0, "noisy"); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := c.Allow(t0, "noisy")
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("third request: ok=%v wait=%v, want refused with wait ≤ 100ms", ok, wait)
	}
	// Another client is unaffected.
	if ok, _ := c.Allow(t0, "quiet"); !ok {
		t.Fatal("a different client was refused")
	}
	// The refused request did not consume a token: after 100ms one is back.
	if ok, _ := c.Allow(t0.Add(100*time.Millisecond), "noisy"); !ok {
		t.Fatal("token not refilled after 1/rate")
	}
	// Bounded: a fourth client evicts the least recently seen.
	c.Allow(t0, "a")
	c.Allow(t0, "b")
	if c.Len() != 3 {
		t.Fatalf("tracking %d clients, max 3", c.Len())
	}
	// Idle clients are forgotten.
	c.Allow(t0.Add(2*time.Minute), "c")
	if c.Len() != 1 {
		t.Fatalf("idle clients kept: %d", c.Len())
	}
}

// A busy host or a slow dependency raises latency while concurrency stays far
// below the limit: shrinking then would shed a steady load for nothing.
func TestLimiterIgnoresLatencyFarFromTheLimit(t *testing.T) {
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
	// Once the load reaches the limit, the limit protects the new normal, not the old one.
	now = feed(&l, now, 20, 60*time.Millisecond)
	if got := l.Limit(); got < 20 {
		t.Fatalf("limit fell to %d on 60ms after the baseline moved to ~50ms", got)
	}
}
