package remedy_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
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

// Three hosts' engines against a real etcd, all triggered on the same 25
// targets, fleet_rate 20 per hour, cooldown 1h; h3 is cut from etcd after
// its first 5 decisions. Never more than one run per target across the fleet
// (the fleet lock, then the fleet-wide cooldown), and exactly 20 actions in
// total: the fleet-wide rate holds exactly with every host triggering, and
// the cut host takes no action once its lease is not safe.
func TestFleetSingletonAndRateUnderPartition(t *testing.T) {
	srv := etcdtest.Start(t)
	link := etcdtest.NewLink(t, srv.Endpoint)
	const targets, rate = 25, 20
	cfg := restartFast(rate)
	cfg.Runbooks["restart_stuck"].Cooldown = config.Duration(time.Hour)
	type host struct {
		h   *harness
		sup *fakeSup
	}
	var hosts []host
	for _, name := range []string{"h1", "h2", "h3"} {
		ep := srv.Endpoint
		if name == "h3" {
			ep = link.Addr
		}
		g := joinFleet(t, ep, name).Guard()
		sup := newFakeSup(map[string][2]int{"web": {targets, 0}})
		h := start(t, cfg, sup, func(o *remedy.Options) { o.Fleet = g })
		hosts = append(hosts, host{h, sup})
	}
	var wg sync.WaitGroup
	for hi, hs := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range targets {
				if hi == 2 && i == 5 {
					hs.h.decisionOn("web/4") // h3 decided on its first 5 targets,
					link.Cut()               // then it is partitioned
				}
				hs.h.fire("stuck", "instance", fmt.Sprintf("web/%d", i), "service", "web")
			}
		}()
	}
	wg.Wait()
	for _, hs := range hosts { // every decision made
		for i := range targets {
			hs.h.decisionOn(fmt.Sprintf("web/%d", i))
		}
	}
	// A target held by another host was refused with fleet_busy and is
	// decided again 15 s later while its condition holds: move the engines'
	// clocks on until the rate is spent (bounded: 10 s of real time).
	count := func() int {
		n := 0
		for _, hs := range hosts {
			n += len(hs.sup.Calls())
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); count() < rate && time.Now().Before(deadline); {
		for _, hs := range hosts[:2] {
			hs.h.clk.Advance(16 * time.Second)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a run over the rate would show by now
	per := map[string]int{}
	total := 0
	for _, hs := range hosts {
		hs.h.waitCount(len(hs.sup.Calls()), remedy.EventRunEnd, "runbook", "restart_stuck")
		for _, c := range hs.sup.Calls() {
			per[c]++
			total++
		}
	}
	for target, n := range per {
		if n > 1 {
			t.Errorf("%s: %d runs across the fleet, want at most 1", target, n)
		}
	}
	// A run that took its token and was then refused its step because h3
	// was cut (fleet_cut_off, fleet_fence) spent the token without acting.
	spent := 0
	for _, hs := range hosts {
		spent += hs.h.count(remedy.EventStepEnd, "guard", remedy.GuardFleetCutOff) + hs.h.count(remedy.EventStepEnd, "guard", remedy.GuardFleetFence)
	}
	t.Logf("3 hosts, each triggered on the same %d targets, h3 cut after 5 decisions: %d actions (h1 %d, h2 %d, h3 %d) "+
		"and %d runs refused their step by the cut, fleet_rate %d",
		targets, total, len(hosts[0].sup.Calls()), len(hosts[1].sup.Calls()), len(hosts[2].sup.Calls()), spent, rate)
	if total > rate || total+spent != rate {
		t.Fatalf("%d actions and %d tokens spent by runs stopped by the cut, with fleet_rate %d and %d distinct targets: "+
			"want exactly %d tokens, never more actions", total, spent, rate, targets, rate)
	}
}
