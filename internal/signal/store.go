package signal

import (
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultRetention = time.Hour
	// DefaultMaxPoints holds an hour of samples taken every second.
	DefaultMaxPoints = 3600
	// DefaultMaxSeries bounds the worst case to about 2000 × 3600 × 16 B ≈ 115 MB
	// (a point is 16 bytes: nanoseconds and value); a ring grows only as its
	// series receives samples, and with SetHistory only the signals some
	// condition reads keep more than their newest point.
	DefaultMaxSeries = 2000
)

// Point is one sample of a series.
type Point struct {
	T time.Time
	V float64
}

// Series is a copy of the points of one series, oldest first.
type Series struct {
	Name   string
	Labels Labels
	Points []Point
}

// Sample is one value of one series at one time, as collectors produce it.
type Sample struct {
	Name   string
	Labels Labels
	T      time.Time
	V      float64
}

// Options bound a Store; a zero field takes its default.
type Options struct {
	// Points older than the newest point of their series by more than
	// Retention are dropped, and a series with no point within Retention of
	// the newest sample in the store is deleted. Default 1h.
	Retention time.Duration
	// Points kept per series at most (a ring: the oldest is overwritten). Default 3600.
	MaxPoints int
	// Series kept at most; a sample that would create one more is dropped and
	// counted. Default 2000.
	MaxSeries int
}

// Stats are the store's counters, for /metrics.
type Stats struct {
	Series int
	Points int
	// Samples dropped because MaxSeries series already existed.
	DroppedSeriesLimit uint64
	// Samples dropped because they were older than the newest point of their series.
	DroppedOutOfOrder uint64
	// Samples dropped because their value was NaN or infinite.
	DroppedNonFinite uint64
}

// Store is an in-memory time-series store with bounded retention, safe for
// concurrent use. It never reads the clock: time arrives with each sample,
// and "now" for retention is the newest sample time it has seen.
type Store struct {
	opt Options

	// history, once SetHistory is called: how far back each signal's points
	// are kept; a signal not in it keeps its newest point only. nil keeps
	// every signal for Retention.
	history map[string]time.Duration

	mu        sync.RWMutex
	byName    map[string]map[string]*series // name → labels key → series
	count     int
	newest    time.Time
	lastSweep time.Time
	dropLimit uint64
	dropOrder uint64
	dropNaN   uint64
}

// NewStore returns an empty store.
func NewStore(o Options) *Store {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxPoints <= 0 {
		o.MaxPoints = DefaultMaxPoints
	}
	if o.MaxSeries <= 0 {
		o.MaxSeries = DefaultMaxSeries
	}
	return &Store{opt: o, byName: map[string]map[string]*series{}}
}

// Add appends one sample to the series name{l}, creating the series if the
// series limit allows. A sample at the time of the series' newest point
// replaces its value; an older one is dropped and counted, and so is a NaN
// or infinite value (an empty summary's quantile, a division by zero), which
// no condition can judge and which would poison an average. l is copied.
func (s *Store) Add(name string, l Labels, t time.Time, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		s.mu.Lock()
		s.dropNaN++
		s.mu.Unlock()
		return
	}
	key := l.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.After(s.newest) {
		s.newest = t
	}
	sr := s.byName[name][key]
	if sr == nil {
		if s.count >= s.opt.MaxSeries {
			s.sweepLocked()
		}
		if s.count >= s.opt.MaxSeries {
			s.dropLimit++
			return
		}
		sr = &series{name: name, labels: l.Clone(), keep: s.keepLocked(name)}
		m := s.byName[name]
		if m == nil {
			m = map[string]*series{}
			s.byName[name] = m
		}
		m[key] = sr
		s.count++
	}
	if !sr.add(point{nanos(t), v}, s.opt.MaxPoints) {
		s.dropOrder++
	}
	// Sweep stale series about four times per retention period of sample time.
	if s.newest.Sub(s.lastSweep) >= s.opt.Retention/4 {
		s.sweepLocked()
	}
}

// keepLocked is how far back a series of signal name keeps points, at most
// Retention; 0 keeps the newest point only.
func (s *Store) keepLocked(name string) time.Duration {
	if s.history == nil {
		return s.opt.Retention
	}
	return min(max(s.history[name], 0), s.opt.Retention)
}

// SetHistory says how far back each signal's points are read (the
// conditions' windows: detect.Engine.History); a signal not in h then keeps
// its newest point only (Latest still answers for it), and a series holding
// more than its signal now needs gives the rest back at once. Without a
// call, every signal keeps Retention. Points dropped are not restored when a
// later call asks for more: that signal's history starts again from then.
func (s *Store) SetHistory(h map[string]time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.history = maps.Clone(h)
	if s.history == nil {
		s.history = map[string]time.Duration{}
	}
	for name, m := range s.byName {
		keep := s.keepLocked(name)
		for _, sr := range m {
			sr.keep = keep
			sr.fit()
		}
	}
}

// AddSample adds x (see Add).
func (s *Store) AddSample(x Sample) { s.Add(x.Name, x.Labels, x.T, x.V) }

// sweepLocked deletes the series whose newest point is older than retention.
func (s *Store) sweepLocked() {
	s.lastSweep = s.newest
	cut := s.newest.Add(-s.opt.Retention)
	for name, m := range s.byName {
		for k, sr := range m {
			if sr.n == 0 || sr.last().t < nanos(cut) {
				delete(m, k)
				s.count--
			}
		}
		if len(m) == 0 {
			delete(s.byName, name)
		}
	}
}

// Delete removes the series of signal name whose labels match, and returns
// how many it removed (say, when an instance or a service goes away).
func (s *Store) Delete(name string, match Labels) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, sr := range s.byName[name] {
		if sr.labels.Matches(match) {
			delete(s.byName[name], k)
			s.count--
			n++
		}
	}
	if len(s.byName[name]) == 0 {
		delete(s.byName, name)
	}
	return n
}

// Range returns the points with from <= T <= to of every series of signal
// name whose labels match, sorted by labels key; series without such points
// are left out. The result is a copy.
func (s *Store) Range(name string, match Labels, from, to time.Time) []Series {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Series
	for _, sr := range s.byName[name] {
		if !sr.labels.Matches(match) {
			continue
		}
		if pts := sr.between(nanos(from), nanos(to)); len(pts) > 0 {
			out = append(out, Series{Name: name, Labels: sr.labels.Clone(), Points: pts})
		}
	}
	slices.SortFunc(out, func(a, b Series) int { return strings.Compare(a.Labels.Key(), b.Labels.Key()) })
	return out
}

// Latest returns the newest point of every series of signal name whose
// labels match, sorted by labels key, however old it is (the caller decides
// what is stale).
func (s *Store) Latest(name string, match Labels) []Sample {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Sample
	for _, sr := range s.byName[name] {
		if sr.n == 0 || !sr.labels.Matches(match) {
			continue
		}
		p := sr.last()
		out = append(out, Sample{Name: name, Labels: sr.labels.Clone(), T: p.time(), V: p.v})
	}
	slices.SortFunc(out, func(a, b Sample) int { return strings.Compare(a.Labels.Key(), b.Labels.Key()) })
	return out
}

// Names returns the signal names that have series, sorted.
func (s *Store) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Stats returns the store's size and drop counters.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Stats{Series: s.count, DroppedSeriesLimit: s.dropLimit, DroppedOutOfOrder: s.dropOrder, DroppedNonFinite: s.dropNaN}
	for _, m := range s.byName {
		for _, sr := range m {
			st.Points += sr.n
		}
	}
	return st
}

// point is a Point as the rings hold it: 16 bytes and no pointer (the
// garbage collector does not scan a ring), where a time.Time would take 24
// bytes with a pointer to its location.
type point struct {
	t int64 // Unix nanoseconds
	v float64
}

// Unix nanoseconds hold 1678–2262; nanos clamps a time outside (the zero
// time as "from the start") to the ends, where UnixNano's result would be
// undefined.
var (
	minNanos = time.Unix(0, math.MinInt64)
	maxNanos = time.Unix(0, math.MaxInt64)
)

func nanos(t time.Time) int64 {
	switch {
	case t.Before(minNanos):
		return math.MinInt64
	case t.After(maxNanos):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// time is the point's time, in UTC: the location of the sample's time is
// not kept, its instant is.
func (p point) time() time.Time { return time.Unix(0, p.t).UTC() }

// series is a ring of points in time order. buf grows up to the maximum and
// then wraps; head is the index of the oldest point.
type series struct {
	name   string
	labels Labels
	keep   time.Duration // points older than the newest by more are dropped
	buf    []point
	head   int
	n      int
}

func (s *series) at(i int) *point { return &s.buf[(s.head+i)%len(s.buf)] }

func (s *series) last() point { return *s.at(s.n - 1) }

// limit is the most points the ring may hold: maxPoints, or one when only
// the newest point is kept.
func (s *series) limit(maxPoints int) int {
	if s.keep <= 0 {
		return 1
	}
	return maxPoints
}

// add appends p, dropping points older than keep before p; it reports
// false when p is older than the newest point.
func (s *series) add(p point, maxPoints int) bool {
	if s.n > 0 {
		last := s.at(s.n - 1)
		switch {
		case p.t == last.t:
			last.v = p.v
			return true
		case p.t < last.t:
			return false
		}
	}
	cut := p.t - int64(s.keep)
	for s.n > 0 && s.at(0).t < cut {
		s.head = (s.head + 1) % len(s.buf)
		s.n--
	}
	maxPoints = s.limit(maxPoints)
	switch {
	case s.n < len(s.buf):
		*s.at(s.n) = p
		s.n++
	case len(s.buf) < maxPoints:
		// Full but allowed to grow: lay the ring out in order, then append.
		lin := make([]point, s.n, min(max(2*s.n, 16), maxPoints))
		for i := range s.n {
			lin[i] = *s.at(i)
		}
		s.buf, s.head = append(lin, p), 0
		s.buf = s.buf[:cap(s.buf)]
		s.n++
	default:
		// Full at the maximum: overwrite the oldest.
		s.buf[s.head] = p
		s.head = (s.head + 1) % len(s.buf)
	}
	return true
}

// fit drops the points older than keep before the newest and, when the
// ring is more than twice what it holds, moves them to a ring that fits.
func (s *series) fit() {
	if s.n == 0 {
		return
	}
	cut := s.last().t - int64(s.keep)
	for s.n > 1 && s.at(0).t < cut {
		s.head = (s.head + 1) % len(s.buf)
		s.n--
	}
	if s.keep <= 0 {
		s.buf, s.head, s.n = []point{s.last()}, 0, 1
		return
	}
	if len(s.buf) > 2*s.n && len(s.buf) > 16 {
		lin := make([]point, s.n, max(s.n, 16))
		for i := range s.n {
			lin[i] = *s.at(i)
		}
		s.buf, s.head = lin[:cap(lin)], 0
	}
}

// between copies the points with from <= t <= to (Unix nanoseconds).
func (s *series) between(from, to int64) []Point {
	var out []Point
	for i := range s.n {
		p := s.at(i)
		if p.t < from {
			continue
		}
		if p.t > to {
			break
		}
		out = append(out, Point{p.time(), p.v})
	}
	return out
}
