package proxy

import (
	"strconv"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// TestDecisionTimeline drives the decision plane alone, with no socket and
// no clock: each step is one call at t0+at and the value it must return.
func TestDecisionTimeline(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	one, ratio := 1, 0.75
	cfg := config.Proxy{Listen: "127.0.0.1:0", Retries: config.ProxyRetries{Max: &one, Budget: &ratio, MinPerSecond: new(float64)}}
	cfg.Shed.InitialLimit, cfg.Shed.MinLimit = 2, 1
	cfg.RateLimit.Rate, cfg.RateLimit.Burst = 1, 2
	cfg.SetDefaults()
	d := NewDecision(cfg)
	d.Set("web/0", "127.0.0.1:1", true)
	d.Set("web/1", "127.0.0.1:2", true)

	get := Traits{Idempotent: true, Replayable: true, Untouched: true}
	post := Traits{Replayable: true, Untouched: true}
	var held []Pick
	steps := []struct {
		at   time.Duration
		name string
		do   func(now time.Time) string
		want string
	}{
		{0, "admit a", func(now time.Time) string { return admit(d.Admit(now, Client{Key: "a"}, false)) }, "admitted held"},
		{0, "admit a again", func(now time.Time) string { return admit(d.Admit(now, Client{Key: "a"}, false)) }, "admitted held"},
		{0, "a's burst is spent", func(now time.Time) string { return admit(d.Admit(now, Client{Key: "a"}, false)) }, "refused 429 after 1s"},
		{0, "b finds the limit of 2 full", func(now time.Time) string { return admit(d.Admit(now, Client{Key: "b"}, false)) }, "refused 503 after 1s"},
		{0, "an upgrade bypasses the limit", func(now time.Time) string { return admit(d.Admit(now, Client{Key: "b"}, true)) }, "admitted"},
		{0, "release one slot", func(time.Time) string { d.Release(Admission{}); return "" }, ""},
		{0, "c gets it", func(now time.Time) string { return admit(d.Admit(now, Client{Key: "c"}, false)) }, "admitted held"},
		{0, "first try goes somewhere", func(now time.Time) string {
			p := d.First(now)
			held = append(held, p)
			return nonEmpty(p.Instance())
		}, "picked"},
		{time.Millisecond, "a reset GET is retried on the other instance", func(now time.Time) string {
			first := held[0]
			d.Record(now, first.backend, OutcomeReset, 0, time.Millisecond)
			r := d.Retry(now, OutcomeReset, 0, get, 1, []*backend{first.backend})
			if r.Next.backend == nil || r.Next.Instance() == first.Instance() {
				return "not elsewhere: " + r.Next.Instance()
			}
			d.Done(first.backend)
			d.Done(r.Next.backend)
			return "elsewhere"
		}, "elsewhere"},
		{time.Millisecond, "a reset POST is not retried", func(now time.Time) string {
			return retry(d.Retry(now, OutcomeReset, 0, post, 1, nil))
		}, "no retry"},
		{time.Millisecond, "a POST that was never sent is", func(now time.Time) string {
			r := d.Retry(now, OutcomeConnect, 0, post, 1, nil)
			d.Done(r.Next.backend)
			return retry(r)
		}, "retry"},
		{time.Millisecond, "a 503 is retried for GET (on_status)", func(now time.Time) string {
			r := d.Retry(now, OutcomeStatus, 503, get, 1, nil)
			d.Done(r.Next.backend)
			return retry(r)
		}, "retry"},
		{time.Millisecond, "a 500 is not", func(now time.Time) string { return retry(d.Retry(now, OutcomeStatus, 500, get, 1, nil)) }, "no retry"},
		{time.Millisecond, "no more than retries.max", func(now time.Time) string { return retry(d.Retry(now, OutcomeConnect, 0, get, 2, nil)) }, "no retry"},
		{time.Millisecond, "the budget (75% of 4 requests, no minimum: 3 retries) is spent", func(now time.Time) string {
			return retry(d.Retry(now, OutcomeConnect, 0, get, 1, nil))
		}, "budget exhausted"},
		{2 * time.Millisecond, "three failures in a row eject web/0", func(now time.Time) string {
			b := d.pool.byID["web/0"]
			var evs []event
			for range 3 {
				e, _ := d.Record(now, b, OutcomeConnect, 0, 0)
				evs = append(evs, e...)
			}
			return kinds(evs)
		}, "ejected"},
		{3 * time.Millisecond, "every first try then goes to web/1", func(now time.Time) string {
			for range 20 {
				p := d.First(now)
				d.Done(p.backend)
				if p.Instance() != "web/1" {
					return p.Instance()
				}
			}
			return "web/1"
		}, "web/1"},
		{3 * time.Millisecond, "web/1 not ready: panic mode serves from the ejected one", func(now time.Time) string {
			d.Set("web/1", "127.0.0.1:2", false)
			p := d.First(now)
			d.Done(p.backend)
			return p.Instance() + " " + kinds(p.Events)
		}, "web/0 panic"},
		{time.Minute, "the ejection has ended: web/0 gets its trial", func(now time.Time) string {
			p := d.First(now)
			ev, _ := d.Record(now, p.backend, OutcomeOK, 200, time.Millisecond)
			d.Done(p.backend)
			return p.Instance() + " " + kinds(ev)
		}, "web/0 returned"},
	}
	for _, s := range steps {
		if got := s.do(t0.Add(s.at)); got != s.want {
			t.Fatalf("+%v %s: got %q, want %q", s.at, s.name, got, s.want)
		}
	}
}

func admit(a Admission) string {
	switch {
	case a.Refusal != Admitted:
		return "refused " + strconv.Itoa(a.Status) + " after " + a.RetryAfter.Round(time.Second).String()
	case a.Held:
		return "admitted held"
	}
	return "admitted"
}

func retry(r Retry) string {
	switch {
	case r.BudgetExhausted:
		return "budget exhausted"
	case r.Next.backend != nil:
		return "retry"
	}
	return "no retry"
}

func kinds(evs []event) string {
	s := ""
	for i, e := range evs {
		if i > 0 {
			s += ","
		}
		s += e.kind
	}
	return s
}

func nonEmpty(s string) string {
	if s == "" {
		return "none"
	}
	return "picked"
}
