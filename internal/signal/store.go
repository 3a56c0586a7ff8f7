package signal

import (
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
	// DefaultMaxSeries bounds the worst case to about 2000 × 3600 × 16 B ≈ 115 MB;
	// a ring grows only as its series receives samples, so a store of a few
	// dozen series sampled every 10 s holds well under a megabyte.
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
		sr = &series{name: name, labels: l.Clone()}
		m := s.byName[name]
		if m == nil {
			m = map[string]*series{}
			s.byName[name] = m
		}
		m[key] = sr
		s.count++
	}
	if !sr.add(Point{t, v}, s.opt.MaxPoints, s.opt.Retention) {
		s.dropOrder++
	}
	// Sweep stale series about four times per retention period of sample time.
	if s.newest.Sub(s.lastSweep) >= s.opt.Retention/4 {
		s.sweepLocked()
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
			if sr.n == 0 || sr.last().T.Before(cut) {
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
		if pts := sr.between(from, to); len(pts) > 0 {
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
		out = append(out, Sample{Name: name, Labels: sr.labels.Clone(), T: p.T, V: p.V})
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

// series is a ring of points in time order. buf grows up to the maximum and
// then wraps; head is the index of the oldest point.
type series struct {
	name   string
	labels Labels
	buf    []Point
	head   int
	n      int
}

func (s *series) at(i int) *Point { return &s.buf[(s.head+i)%len(s.buf)] }

func (s *series) last() Point { return *s.at(s.n - 1) }

// add appends p, dropping points older than retention before p; it reports
// false when p is older than the newest point.
func (s *series) add(p Point, maxPoints int, retention time.Duration) bool {
	if s.n > 0 {
		last := s.at(s.n - 1)
		switch {
		case p.T.Equal(last.T):
			last.V = p.V
			return true
		case p.T.Before(last.T):
			return false
		}
	}
	cut := p.T.Add(-retention)
	for s.n > 0 && s.at(0).T.Before(cut) {
		s.head = (s.head + 1) % len(s.buf)
		s.n--
	}
	switch {
	case s.n < len(s.buf):
		*s.at(s.n) = p
		s.n++
	case len(s.buf) < maxPoints:
		// Full but allowed to grow: lay the ring out in order, then append.
		lin := make([]Point, s.n, min(max(2*s.n, 16), maxPoints))
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

// between copies the points with from <= T <= to.
func (s *series) between(from, to time.Time) []Point {
	var out []Point
	for i := range s.n {
		p := s.at(i)
		if p.T.Before(from) {
			continue
		}
		if p.T.After(to) {
			break
		}
		out = append(out, *p)
	}
	return out
}
