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
