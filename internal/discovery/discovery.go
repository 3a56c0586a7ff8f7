// Package discovery publishes this host's instances of fleet services, with
// their readiness, to etcd, and follows every host's publications (a watch,
// never a poll), so that each agent's proxy can balance over the ready
// instances of the whole fleet (docs/fleet.md, Discovery and traffic).
//
// One key per service and host,
// <prefix>/fleet/<fleet>/instances/<service>/<host>, holds the host's
// instances as JSON and is bound to the host's membership lease: when the
// lease expires (the host died or is cut from etcd) the key goes with it,
// and every proxy drops that host's instances.
package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/pmap"
)

// Instance is one instance as its host publishes it.
type Instance struct {
	ID    string `json:"id"`   // the instance's id on its host, such as web/0
	Addr  string `json:"addr"` // host:port other hosts reach it at
	Ready bool   `json:"ready"`
}

// Publication is one host's instances of one service.
type Publication struct {
	Host      string     `json:"host"`
	Instances []Instance `json:"instances"`
}

// Ready counts the ready instances.
func (p Publication) Ready() int {
	n := 0
	for _, in := range p.Instances {
		if in.Ready {
			n++
		}
	}
	return n
}

// Prefix is where the hosts publish their instances of service.
func Prefix(prefix, fleet, service string) string {
	return prefix + "/fleet/" + fleet + "/instances/" + service
}

// Publisher keeps this host's publication of one service in etcd: it
// writes it whenever the instances change or this host joins the fleet
// with a new lease, bound to that lease.
type Publisher struct {
	Etcd    *etcd.Client
	Key     string       // Prefix(...)+"/"+host
	Host    string       // this host's name
	Lease   func() int64 // this host's membership lease while joined; 0 otherwise
	Period  time.Duration
	Clock   clock.Clock
	Logger  *slog.Logger
	mu      sync.Mutex
	want    []Instance
	wake    chan struct{}
	initted sync.Once
}

func (p *Publisher) init() {
	p.initted.Do(func() { p.wake = make(chan struct{}, 1) })
}

// Set replaces the instances to publish (sorted by id) and wakes Run.
func (p *Publisher) Set(ins []Instance) {
	p.init()
	ins = slices.Clone(ins)
	slices.SortFunc(ins, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
	p.mu.Lock()
	p.want = ins
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run writes the publication until ctx ends. It writes when Set changed
// the instances or the lease changed, and again every Period while a write
// failed; each write is bounded by Period. Reading the lease is local (no
// etcd request): Run talks to etcd only to write.
func (p *Publisher) Run(ctx context.Context) {
	p.init()
	clk := clock.Or(p.Clock)
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var wrote string
	var wroteLease int64
	for {
		lease := p.Lease()
		p.mu.Lock()
		b, err := json.Marshal(Publication{Host: p.Host, Instances: p.want})
		p.mu.Unlock()
		if err != nil {
			panic(err) // plain data
		}
		if lease != 0 && (lease != wroteLease || string(b) != wrote) {
			wctx, cancel := context.WithTimeout(ctx, p.Period)
			_, err := p.Etcd.Raw().Put(wctx, p.Key, string(b), clientv3.WithLease(clientv3.LeaseID(lease)))
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					logger.Warn("discovery: cannot publish this host's instances", "key", p.Key, "err", err)
				}
			} else {
				wrote, wroteLease = string(b), lease
			}
		}
		t := clk.NewTimer(p.Period)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-p.wake:
		case <-t.C():
		}
		t.Stop()
	}
}

// Update is one delivery of Follow.
type Update struct {
	// All is every host's publication of the service, by host: a persistent
	// map (pmap), which the receiver may keep; it never changes.
	All pmap.Map[Publication]
	// Reset: All comes from a fresh read (the first, or after a lost
	// watch): any host's publication may have changed. Otherwise Changed
	// names the hosts whose publication was put or removed, sorted.
	Reset   bool
	Changed []string
}

// Follow calls fn with every host's publication of the service, then again
// at every change, until ctx ends (an etcd watch; a lost watch reads the
// prefix again and delivers a Reset). A change parses only the changed
// host's publication and costs O(length of the host name), so a receiver that looks only
// at Changed does O(1) work per host that changed. A publication that is not
// valid JSON is logged and left out.
func Follow(ctx context.Context, cli *etcd.Client, prefix string, clk clock.Clock, logger *slog.Logger, fn func(Update)) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tab := &etcd.Table[Publication]{Prefix: prefix,
		Parse: func(host string, kv etcd.KV) (Publication, error) {
			var p Publication
			err := json.Unmarshal(kv.Value, &p)
			p.Host = host
			return p, err
		},
		Invalid: func(host string, err error) {
			logger.Warn("discovery: a host's publication is not valid", "host", host, "err", err)
		}}
	return cli.WatchChanges(ctx, prefix, clk, func(u etcd.Update) {
		changed := tab.Apply(u)
		if !u.Reset && len(changed) == 0 {
			return // keys nested below the prefix: not a publication
		}
		fn(Update{All: tab.Rows(), Reset: u.Reset, Changed: changed})
	})
}

// Remote names another host's instance in a proxy: host/id.
func Remote(host, id string) string { return fmt.Sprintf("%s/%s", host, id) }
