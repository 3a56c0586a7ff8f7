package proxy

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// TestClassRateOutOfOrder: requests reach the rate bucket with their own
// start times, not in time order (concurrent requests under one lock). A
// class of 20/s, burst 20, asked 500 times a second for 10 s in a jittered
// order must admit at most 20 × 10 + 20: golang.org/x/time/rate alone
// counted the same interval's tokens twice when its clock went back.
func TestClassRateOutOfOrder(t *testing.T) {
	d := NewDecision(classesConfig(1000, map[string]*config.ProxyClass{
		"anonymous": {Rate: 20, Burst: 20},
	}))
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Unix(1000, 0)
	const n = 5000
	times := make([]time.Time, n)
	for i := range times {
		times[i] = t0.Add(time.Duration(i) * 2 * time.Millisecond)
	}
	// Each request may be overtaken by those that started up to 5 ms after it.
	for i := 0; i+3 < n; i++ {
		if j := i + rng.IntN(3); j != i {
			times[i], times[j] = times[j], times[i]
		}
	}
	admitted := 0
	for _, at := range times {
		a := d.Admit(at, Client{Class: 0}, false)
		if a.Refusal == Admitted {
			admitted++
			if a.Held {
				d.Release(a)
			}
		}
	}
	if bound := 20*10 + 20; admitted > bound {
		t.Fatalf("admitted %d of %d over 10 s; the class allows %d", admitted, n, bound)
	}
	if admitted < 20*10 {
		t.Fatalf("admitted %d: the bucket refused within its rate", admitted)
	}
}
