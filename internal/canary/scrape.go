package canary

import (
	"context"
	"sync"
	"time"

	"github.com/medic-dev/medic/internal/clock"
)

// ScrapeEvery is how often the counters of a canary's scraped metrics
// (Config.Metrics) are read from each canary and baseline instance.
const ScrapeEvery = time.Second

// Metric is a counter scraped from the canary's and the baseline's
// instances (its Prometheus text endpoint at Path).
type Metric struct {
	Name string
	Path string
}

// Scraper reads counters from a group's ready instances: for each instance,
// the sum of each named metric's series (a name absent from an instance's
// answer is absent from its map). An instance that cannot be read is left
// out.
type Scraper interface {
	Scrape(ctx context.Context, service, group, path string, names []string) []InstanceCounters
}

// InstanceCounters are one instance's counter values.
type InstanceCounters struct {
	ID     string
	Values map[string]float64
}

// Rises accumulates how much each counter rose on a group's instances since
// each was first read. A value below the previous one is a restart of the
// instance's counter: the new value is all rise. It is not safe for
// concurrent use.
type Rises struct {
	prev map[string]map[string]float64 // instance → name → last value
	rise map[string]float64            // name → total rise
}

// Add takes one scrape of the group.
func (r *Rises) Add(scrape []InstanceCounters) {
	if r.prev == nil {
		r.prev, r.rise = map[string]map[string]float64{}, map[string]float64{}
	}
	for _, in := range scrape {
		p := r.prev[in.ID]
		if p == nil {
			p = map[string]float64{}
			r.prev[in.ID] = p
		}
		for name, v := range in.Values {
			if last, ok := p[name]; ok {
				if v >= last {
					r.rise[name] += v - last
				} else {
					r.rise[name] += v
				}
			} else if _, ok := r.rise[name]; !ok {
				r.rise[name] = 0 // first read: the counter is known, nothing rose yet
			}
			p[name] = v
		}
	}
}

// Values returns the rises so far (nil before any value was read).
func (r *Rises) Values() map[string]float64 {
	if len(r.rise) == 0 {
		return nil
	}
	out := make(map[string]float64, len(r.rise))
	for k, v := range r.rise {
		out[k] = v
	}
	return out
}

// scraper reads a canary's counters every ScrapeEvery until its context ends.
type scraper struct {
	mu     sync.Mutex
	groups map[string]*Rises
	wg     sync.WaitGroup
}

func newScraper(ctx context.Context, clk clock.Clock, sc Scraper, service string, metrics []Metric) *scraper {
	s := &scraper{groups: map[string]*Rises{Canary: {}, Baseline: {}}}
	byPath := map[string][]string{}
	var paths []string
	for _, m := range metrics {
		if byPath[m.Path] == nil {
			paths = append(paths, m.Path)
		}
		byPath[m.Path] = append(byPath[m.Path], m.Name)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := clk.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C():
			}
			for _, g := range []string{Canary, Baseline} {
				var all []InstanceCounters
				for _, p := range paths {
					all = append(all, sc.Scrape(ctx, service, g, p, byPath[p])...)
				}
				s.mu.Lock()
				s.groups[g].Add(all)
				s.mu.Unlock()
			}
			t.Reset(ScrapeEvery)
		}
	}()
	return s
}

// rises returns the group's counter rises so far.
func (s *scraper) rises(group string) map[string]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groups[group].Values()
}
