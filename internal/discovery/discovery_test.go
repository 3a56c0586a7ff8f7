package discovery_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/discovery"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
)

// TestPublishFollowLease runs a publisher and a follower against a real
// etcd: a readiness change reaches the follower (through its watch), a new
// lease is written again, and the publication goes when its lease is
// revoked (a host that left or whose lease expired).
func TestPublishFollowLease(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	grant := func() int64 {
		l, err := cli.Raw().Grant(ctx, 30)
		if err != nil {
			t.Fatal(err)
		}
		return int64(l.ID)
	}
	var lease atomic.Int64
	lease.Store(grant())
	prefix := discovery.Prefix("/medic", "prod", "web")
	pub := &discovery.Publisher{Etcd: cli, Key: prefix + "/h1", Host: "h1", Lease: lease.Load, Period: 100 * time.Millisecond}
	var mu sync.Mutex
	var last map[string]discovery.Publication
	seen := make(chan struct{}, 100)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pub.Run(ctx) }()
	go func() {
		defer wg.Done()
		discovery.Follow(ctx, cli, prefix, nil, nil, func(u discovery.Update) {
			mu.Lock()
			last = u.All.Clone()
			mu.Unlock()
			seen <- struct{}{}
		})
	}()
	defer wg.Wait()
	defer cancel()
	waitFor := func(what string, cond func(map[string]discovery.Publication) bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			mu.Lock()
			ok := cond(last)
			mu.Unlock()
			if ok {
				return
			}
			select {
			case <-seen:
			case <-deadline:
				t.Fatalf("after 5s: %s; last %+v", what, last)
			}
		}
	}
	pub.Set([]discovery.Instance{{ID: "web/1", Addr: "10.0.0.1:9001"}, {ID: "web/0", Addr: "10.0.0.1:9000", Ready: true}})
	waitFor("h1 publishes 1 ready of 2", func(p map[string]discovery.Publication) bool {
		return p["h1"].Ready() == 1 && len(p["h1"].Instances) == 2 && p["h1"].Instances[0].ID == "web/0"
	})
	pub.Set([]discovery.Instance{{ID: "web/0", Addr: "10.0.0.1:9000", Ready: true}, {ID: "web/1", Addr: "10.0.0.1:9001", Ready: true}})
	waitFor("h1 publishes 2 ready", func(p map[string]discovery.Publication) bool { return p["h1"].Ready() == 2 })
	old := lease.Load()
	if err := cli.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	// Without a lease (0) the publisher writes nothing: the key stays gone.
	lease.Store(0)
	waitFor("the publication goes with its lease", func(p map[string]discovery.Publication) bool { _, ok := p["h1"]; return !ok })
	lease.Store(grant())
	waitFor("the publication is written again under the new lease", func(p map[string]discovery.Publication) bool { return p["h1"].Ready() == 2 })
	kv, ok, err := cli.Get(ctx, prefix+"/h1")
	if err != nil || !ok || kv.Lease != lease.Load() {
		t.Fatalf("the publication is bound to lease %x, want %x (%v)", kv.Lease, lease.Load(), err)
	}
}
