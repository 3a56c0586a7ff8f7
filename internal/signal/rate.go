package signal

import "time"

// Rates turns cumulative counters (CPU seconds, requests, errors) into
// per-second rates between consecutive observations of the same series. A
// counter that went down was reset (its process restarted): the increase
// since the reset is the new value, as in PromQL's rate(). Not safe for
// concurrent use: give each collector its own.
type Rates struct {
	last map[string]Point
}

// Rate records v at t for name{l} and returns the rate per second since the
// previous observation; ok is false for the first observation of a series
// and when t is not after the previous one.
func (r *Rates) Rate(name string, l Labels, t time.Time, v float64) (rate float64, ok bool) {
	if r.last == nil {
		r.last = map[string]Point{}
	}
	key := SeriesKey(name, l)
	prev, seen := r.last[key]
	if seen && !t.After(prev.T) {
		return 0, false
	}
	r.last[key] = Point{t, v}
	if !seen {
		return 0, false
	}
	inc := v - prev.V
	if inc < 0 {
		inc = v
	}
	return inc / t.Sub(prev.T).Seconds(), true
}

// Prune forgets the series last observed before t, so that counters of
// instances that went away do not accumulate.
func (r *Rates) Prune(t time.Time) {
	for k, p := range r.last {
		if p.T.Before(t) {
			delete(r.last, k)
		}
	}
}
