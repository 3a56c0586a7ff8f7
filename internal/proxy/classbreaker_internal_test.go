package proxy

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// TestClassBreaker walks a class breaker through closed → open → half-open →
// closed and half-open → open again, with given times.
func TestClassBreaker(t *testing.T) {
	b := newClassBreaker(&config.ProxyClassBreaker{Failures: 3, Window: config.Duration(10 * time.Second),
		OpenFor: config.Duration(30 * time.Second), HalfOpenTrials: 2})
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	fail := func(now time.Time) *breakerChange {
		ok, gen, _, _ := b.allow(now)
		if !ok {
			t.Fatalf("refused at %v while %s", now.Sub(t0), b.state)
		}
		return b.result(now, gen, true)
	}
	// Failures spread wider than the window do not open it.
	fail(at(0))
	fail(at(6 * time.Second))
	if ch := fail(at(12 * time.Second)); ch != nil || b.state != BreakerClosed {
		t.Fatalf("3 failures over 12 s (window 10 s) opened it: %+v", ch)
	}
	if ch := fail(at(13 * time.Second)); ch == nil || ch.to != BreakerOpen {
		t.Fatalf("3 failures within 10 s: %+v, state %s", ch, b.state)
	}
	// Open: refused, with the time left.
	if ok, _, wait, _ := b.allow(at(20 * time.Second)); ok || wait != 23*time.Second {
		t.Fatalf("open: ok %v wait %v; want refused for 23 s", ok, wait)
	}
	// After open_for: two trials, a third refused until they end.
	ok1, g1, _, ch := b.allow(at(43 * time.Second))
	if !ok1 || ch == nil || ch.to != BreakerHalfOpen {
		t.Fatalf("after open_for: %v %+v", ok1, ch)
	}
	ok2, g2, _, _ := b.allow(at(43 * time.Second))
	if ok3, _, _, _ := b.allow(at(43 * time.Second)); !ok2 || ok3 {
		t.Fatalf("half-open with 2 trials: second %v third %v", ok2, ok3)
	}
	// A result from before the breaker opened is ignored.
	if ch := b.result(at(43*time.Second), 0, true); ch != nil {
		t.Fatalf("a stale result moved the breaker: %+v", ch)
	}
	if ch := b.result(at(44*time.Second), g1, false); ch != nil {
		t.Fatalf("one of two trials closed it: %+v", ch)
	}
	if ch := b.result(at(44*time.Second), g2, false); ch == nil || ch.to != BreakerClosed {
		t.Fatalf("both trials succeeded: %+v, %s", ch, b.state)
	}
	// Open again; a failed trial reopens it for open_for from then.
	for i := range 3 {
		fail(at(50*time.Second + time.Duration(i)*time.Second))
	}
	_, g, _, _ := b.allow(at(90 * time.Second))
	if ch := b.result(at(91*time.Second), g, true); ch == nil || ch.to != BreakerOpen {
		t.Fatalf("a failed trial: %+v", ch)
	}
	if ok, _, wait, _ := b.allow(at(92 * time.Second)); ok || wait != 29*time.Second {
		t.Fatalf("reopened: ok %v wait %v", ok, wait)
	}
	if st, opened, refused := b.snapshot(); st != BreakerOpen || opened != 3 || refused != 3 {
		t.Fatalf("snapshot %s opened %d refused %d", st, opened, refused)
	}
}

// TestClassBreakerTrialGivenBack: a half-open trial whose request was then
// refused (rate, seat) is given back, so the next request can be the trial;
// without it the breaker stayed half-open, refusing the class, for good.
func TestClassBreakerTrialGivenBack(t *testing.T) {
	b := newClassBreaker(&config.ProxyClassBreaker{Failures: 1, Window: config.Duration(10 * time.Second),
		OpenFor: config.Duration(time.Second), HalfOpenTrials: 1})
	t0 := time.Unix(1000, 0)
	_, gen, _, _ := b.allow(t0)
	if ch := b.result(t0, gen, true); ch == nil || ch.to != BreakerOpen {
		t.Fatalf("one failure: %+v", ch)
	}
	ok, gen, _, _ := b.allow(t0.Add(2 * time.Second))
	if !ok || b.state != BreakerHalfOpen {
		t.Fatalf("after open_for: ok %v, %s", ok, b.state)
	}
	b.untry(gen) // the trial was refused by the class rate
	ok, gen, _, _ = b.allow(t0.Add(3 * time.Second))
	if !ok {
		t.Fatal("the trial given back was not let through again: the breaker stays half-open for good")
	}
	if ch := b.result(t0.Add(3*time.Second), gen, false); ch == nil || ch.to != BreakerClosed {
		t.Fatalf("a good trial: %+v, %s", ch, b.state)
	}
	b.untry(gen) // a stale give-back changes nothing once closed
	if b.state != BreakerClosed || b.trials != 0 {
		t.Fatalf("stale untry: %s, trials %d", b.state, b.trials)
	}
}
