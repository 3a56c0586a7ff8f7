package fleetview

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/pmap"
)

// SummariesPrefix is where the hosts of fleet publish their summaries.
func SummariesPrefix(prefix, fleet string) string { return prefix + "/fleet/" + fleet + "/view" }

// Publisher keeps this host's summary in etcd, bound to its membership
// lease: every Every (default PublishEvery) it builds the summary and
// writes it when it changed (its time aside) or the lease changed. Each
// write is bounded by Every.
type Publisher struct {
	Etcd   *etcd.Client
	Key    string       // SummariesPrefix(...)+"/"+host
	Lease  func() int64 // this host's membership lease while joined; 0 otherwise
	Build  func(ctx context.Context) Summary
	Every  time.Duration
	Clock  clock.Clock
	Logger *slog.Logger
}

// Run publishes until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	clk := clock.Or(p.Clock)
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	every := p.Every
	if every <= 0 {
		every = PublishEvery
	}
	var wrote string
	var wroteLease int64
	for {
		if lease := p.Lease(); lease != 0 {
			s := p.Build(ctx)
			s.At = time.Time{}
			_, same := Fit(s)
			if lease != wroteLease || string(same) != wrote {
				s.At = clk.Now()
				_, b := Fit(s)
				wctx, cancel := context.WithTimeout(ctx, every)
				_, err := p.Etcd.Raw().Put(wctx, p.Key, string(b), clientv3.WithLease(clientv3.LeaseID(lease)))
				cancel()
				if err != nil {
					if ctx.Err() == nil {
						logger.Warn("fleet: cannot publish this host's summary", "key", p.Key, "err", err)
					}
				} else {
					wrote, wroteLease = string(same), lease
				}
			}
		}
		t := clk.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// Cache holds every host's summary from a watch. A change parses only the
// changed host's summary (O(length of the host name) per event); reading the summaries
// copies them (O(hosts) per read, not per event).
type Cache struct {
	mu       sync.Mutex
	sums     pmap.Map[Summary]
	watching bool
}

// Summaries returns a copy of the summaries by host, and whether the watch
// has delivered.
func (c *Cache) Summaries() (map[string]Summary, bool) {
	c.mu.Lock()
	sums, watching := c.sums, c.watching
	c.mu.Unlock()
	return sums.Clone(), watching
}

// Follow keeps the cache from a watch of prefix (never a poll) until ctx
// ends. A summary that is not valid JSON is logged and left out.
func (c *Cache) Follow(ctx context.Context, cli *etcd.Client, prefix string, clk clock.Clock, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tab := &etcd.Table[Summary]{Prefix: prefix,
		Parse: func(host string, kv etcd.KV) (Summary, error) {
			var sum Summary
			err := json.Unmarshal(kv.Value, &sum)
			sum.Host = host
			return sum, err
		},
		Invalid: func(host string, err error) {
			logger.Warn("fleet: a host's summary is not valid", "host", host, "err", err)
		}}
	return cli.WatchChanges(ctx, prefix, clk, func(u etcd.Update) {
		tab.Apply(u)
		c.mu.Lock()
		c.sums, c.watching = tab.Rows(), true
		c.mu.Unlock()
	})
}
