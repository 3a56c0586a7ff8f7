package remedy_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/remedy"
)

// joinFleet runs a fleet agent for host against the real etcd at endpoint
// until the test ends, and waits until it has joined.
func joinFleet(t *testing.T, endpoint, host string) *fleet.Agent {
	t.Helper()
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a, err := fleet.New(fleet.Options{Fleet: "prod", Host: host, Address: "127.0.0.1", Version: "test", Prefix: "/medic",
		LeaseTTL: 2 * time.Second, Grace: 2 * time.Second, Etcd: cli, Record: func(context.Context, medic.Event) {}})
	if err != nil {
		cli.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Serve(ctx); cli.Close() }() //nolint:errcheck // ends with ctx
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for !a.Status().Joined {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not join the fleet", host)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return a
}

// Two hosts' engines sharing automation.fleet_rate of 3 through a real etcd,
// each triggered on 5 targets of its own at once: exactly 3 actions in
// total, every other decision blocked by fleet_rate.
func TestFleetRateAcrossHostsEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	const n, perHost = 3, 5
	type host struct {
		h   *harness
		sup *fakeSup
	}
	var hosts []host
	for _, name := range []string{"h1", "h2"} {
		g := joinFleet(t, srv.Endpoint, name).Guard()
		sup := newFakeSup(map[string][2]int{"web": {2 * perHost, 0}})
		h := start(t, restartFast(n), sup, func(o *remedy.Options) { o.Fleet = g })
		hosts = append(hosts, host{h, sup})
	}
	var wg sync.WaitGroup
	for hi, hs := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perHost {
				hs.h.fire("stuck", "instance", fmt.Sprintf("web/%d", hi*perHost+i), "service", "web")
			}
		}()
	}
	wg.Wait()
	acts, blocked := 0, 0
	for hi, hs := range hosts {
		for i := range perHost {
			outcome, guard, _ := hs.h.decisionOn(fmt.Sprintf("web/%d", hi*perHost+i))
			switch {
			case outcome == "act":
				acts++
			case outcome == "blocked" && guard == remedy.GuardFleetRate:
				blocked++
			default:
				t.Errorf("decision %s (%s)", outcome, guard)
			}
		}
	}
	if acts != n || blocked != 2*perHost-n {
		t.Fatalf("%d act and %d fleet_rate decisions across two hosts with fleet_rate %d, want exactly %d and %d", acts, blocked, n, n, 2*perHost-n)
	}
	for _, hs := range hosts { // the runs finish: their actions are counted
		hs.h.waitCount(len(hs.sup.Calls()), remedy.EventRunEnd, "runbook", "restart_stuck")
	}
	calls := 0
	for _, hs := range hosts {
		calls += len(hs.sup.Calls())
	}
	if calls != n {
		t.Fatalf("%d actions across two hosts with fleet_rate %d, want exactly %d", calls, n, n)
	}
}
