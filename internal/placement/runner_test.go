package placement_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/placement"
)

// TestRunnersAgainstEtcd runs three runners (hosts h1, h2, h3) against a
// real etcd, two of them believing they coordinate (views that differ for a
// moment): the compare-and-swap keeps one assignment, every host applies
// its share from the watch, and when h3 is lost the coordinators move its
// share to h1 and h2; a changed spec (a reload) takes effect at once.
func TestRunnersAgainstEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	lost := false
	instances := 6
	shares := map[string]int{}
	hosts := func() []placement.Host {
		mu.Lock()
		defer mu.Unlock()
		return []placement.Host{{Name: "h1"}, {Name: "h2"}, {Name: "h3", Lost: lost}}
	}
	key := placement.Key("/medic", "prod", "web")
	var wg sync.WaitGroup
	for _, self := range []string{"h1", "h2", "h3"} {
		r := &placement.Runner{Spec: placement.Spec{Instances: 6}, Service: "web", Self: self, Key: key, Etcd: cli,
			SpecNow: func() placement.Spec { // a reload of services.web.fleet
				mu.Lock()
				defer mu.Unlock()
				return placement.Spec{Instances: instances}
			},
			View: func() placement.View { return placement.View{Hosts: hosts(), Coordinator: self != "h3"} },
			Ready: func() map[string]int {
				mu.Lock()
				defer mu.Unlock()
				out := map[string]int{}
				for h, n := range shares {
					out[h] = n
				}
				return out
			},
			Apply: func(_ context.Context, n int) error {
				mu.Lock()
				shares[self] = n
				mu.Unlock()
				return nil
			},
			Period: 20 * time.Millisecond}
		wg.Add(1)
		go func() { defer wg.Done(); r.Run(ctx) }()
	}
	defer wg.Wait()
	defer cancel()
	wait := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			kv, ok, err := cli.Get(ctx, key)
			var rec placement.Record
			if ok && err == nil {
				json.Unmarshal(kv.Value, &rec)
			}
			mu.Lock()
			applied := placement.Assignment{}
			for h, n := range shares {
				if !(lost && h == "h3") {
					applied[h] = n
				}
			}
			mu.Unlock()
			if rec.Assign.String() == want && applied.String() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 10s: stored %q (%s), applied %q; want %q", rec.Assign, rec.Why, applied, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("h1=2 h2=2 h3=2")
	mu.Lock()
	lost = true
	mu.Unlock()
	wait("h1=3 h2=3")
	// A reload lowers instances to 4: the coordinators take the two
	// surplus instances away, one at a time, without a restart.
	mu.Lock()
	instances = 4
	mu.Unlock()
	wait("h1=2 h2=2")
}

// TestCoordinatorFencedByItsLease: a host that believes it coordinates
// (its local clock still counts it joined) writes nothing while its
// membership key is not held under the lease its view names — a lease
// that expired in etcd — and writes once the key is held under it.
func TestCoordinatorFencedByItsLease(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	lg, err := cli.Raw().Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	member := "/medic/fleet/prod/hosts/h1"
	key := placement.Key("/medic", "prod", "web")
	r := &placement.Runner{Spec: placement.Spec{Instances: 2}, Service: "web", Self: "h1", Key: key, Etcd: cli,
		View: func() placement.View {
			return placement.View{Hosts: []placement.Host{{Name: "h1"}}, Coordinator: true, MemberKey: member, Lease: int64(lg.ID)}
		},
		Ready:  func() map[string]int { return map[string]int{} },
		Apply:  func(context.Context, int) error { return nil },
		Period: 10 * time.Millisecond}
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(300 * time.Millisecond) // ~30 evaluations, each of which would write unfenced
	if _, ok, err := cli.Get(ctx, key); err != nil || ok {
		t.Fatalf("the assignment was written by a coordinator whose membership key is not held (ok %v, err %v)", ok, err)
	}
	if err := cli.Create(ctx, member, "{}", int64(lg.ID)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		kv, ok, err := cli.Get(ctx, key)
		if err == nil && ok {
			var rec placement.Record
			if err := json.Unmarshal(kv.Value, &rec); err != nil || rec.Assign.String() != "h1=2" {
				t.Fatalf("stored %s (%v), want h1=2", kv.Value, err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the coordinator holding its membership key did not write the assignment within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
