package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/fleet"
)

// TestStormOf: the brake engages when strictly more than the share of the
// hosts seen are suspect or lost, and never on an empty view.
func TestStormOf(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const grace = 10 * time.Second
	all := map[string]fleet.Present{}
	for _, h := range []string{"a", "b", "c", "d"} {
		all[h] = p(1, "10.0.0.1")
	}
	only := func(hosts ...string) map[string]fleet.Present {
		m := map[string]fleet.Present{}
		for _, h := range hosts {
			m[h] = all[h]
		}
		return m
	}
	cases := []struct {
		name    string
		seen    map[string]fleet.Present // the first snapshot
		now     map[string]fleet.Present // the second, 1s later
		after   time.Duration            // then a Tick this long after
		share   float64
		engaged bool
		count   string // unhealthy/hosts
	}{
		{"empty view", nil, nil, 0, 0.5, false, "0/0"},
		{"all up", only("a", "b", "c"), only("a", "b", "c"), 0, 0.5, false, "0/3"},
		{"1 of 3 suspect", only("a", "b", "c"), only("a", "b"), 0, 0.5, false, "1/3"},
		{"2 of 3 suspect", only("a", "b", "c"), only("a"), 0, 0.5, true, "2/3"},
		{"2 of 3 lost", only("a", "b", "c"), only("a"), grace, 0.5, true, "2/3"},
		{"1 of 2 lost: exactly the share, not more", only("a", "b"), only("a"), grace, 0.5, false, "1/2"},
		{"2 of 4: exactly the share", only("a", "b", "c", "d"), only("a", "b"), 0, 0.5, false, "2/4"},
		{"3 of 4", only("a", "b", "c", "d"), only("a"), 0, 0.5, true, "3/4"},
		{"1 of 4 with share 0.2", only("a", "b", "c", "d"), only("a", "b", "c"), 0, 0.2, true, "1/4"},
		{"share 1 never brakes", only("a", "b", "c"), only(), 0, 1, false, "3/3"},
	}
	for _, c := range cases {
		v := fleet.NewView(grace)
		if c.seen != nil {
			v, _ = v.Observe(t0, c.seen)
			v, _ = v.Observe(t0.Add(time.Second), c.now)
			v, _ = v.Tick(t0.Add(time.Second + c.after))
		}
		s := fleet.StormOf(v, c.share)
		if s.Engaged != c.engaged || fmt.Sprintf("%d/%d", s.Unhealthy, s.Hosts) != c.count {
			t.Errorf("%s: %s, want engaged %v with %s unhealthy", c.name, s, c.engaged, c.count)
		}
	}
}

// TestStormBrakeAgainstEtcd: three agents; two are cut from etcd. The third
// sees them suspect once their leases expire and engages the brake — within
// one lease TTL of the cut (plus the watch's delivery) — audits it, and its
// guard refuses every new fleet-wide action; when the links return the
// brake is released (audited) and the guard answers again.
func TestStormBrakeAgainstEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	const ttl, grace = 2 * time.Second, 4 * time.Second
	a := startAgent(t, srv.Endpoint, "h1", ttl, grace)
	lb, lc := etcdtest.NewLink(t, srv.Endpoint), etcdtest.NewLink(t, srv.Endpoint)
	startAgent(t, lb.Addr, "h2", ttl, grace)
	startAgent(t, lc.Addr, "h3", ttl, grace)
	waitStates(t, a, "h1=up h2=up h3=up ", 5*time.Second)
	waitJoined(t, a)
	ctx := context.Background()
	if _, rel, err := a.Guard().Hold(ctx, "web/0"); err != nil {
		t.Fatalf("hold before the storm: %v", err)
	} else {
		rel(ctx)
	}

	lb.Cut()
	lc.Cut()
	cut := time.Now()
	for !a.Storm().Engaged {
		// The leases expire at most ttl after the cut; the watch delivers
		// the deletion at once. The generous bound is for a loaded machine.
		if time.Since(cut) > ttl+3*time.Second {
			t.Fatalf("storm brake not engaged %v after the cut: %s (%s)", time.Since(cut), a.Storm(), a.states())
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(cut)
	t.Logf("2 of 3 hosts cut from etcd: storm brake engaged after %v (lease_ttl %v): %s", took.Round(10*time.Millisecond), ttl, a.Storm())
	if !a.Status().StormBrake {
		t.Fatal("status does not show the storm brake")
	}
	if _, _, err := a.Guard().Hold(ctx, "web/0"); !errors.Is(err, fleet.ErrStorm) {
		t.Fatalf("hold under the storm brake: %v, want ErrStorm", err)
	}
	if _, _, err := a.Guard().Take(ctx, "automation", 100, time.Hour); !errors.Is(err, fleet.ErrStorm) {
		t.Fatalf("take under the storm brake: %v, want ErrStorm", err)
	}
	if err := a.Guard().Safe(); err != nil {
		t.Fatalf("the brake is not a cut-off: a run under way keeps its lease check: %v", err)
	}

	lb.Restore()
	lc.Restore()
	for a.Storm().Engaged {
		if time.Since(cut) > 30*time.Second {
			t.Fatalf("storm brake still engaged 30s after the cut, links restored: %s (%s)", a.Storm(), a.states())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, rel, err := a.Guard().Hold(ctx, "web/0"); err != nil {
		t.Fatalf("hold after the brake was released: %v", err)
	} else {
		rel(ctx)
	}
	var got []medic.EventKind
	a.mu.Lock()
	for _, ev := range a.events {
		if ev.Kind == medic.EventStormEngaged || ev.Kind == medic.EventStormReleased {
			got = append(got, ev.Kind)
			if ev.Target != "fleet/prod" || ev.Fields["hosts"] != "3" || ev.Reason == "" {
				t.Errorf("brake event %+v", ev)
			}
		}
	}
	a.mu.Unlock()
	if want := []medic.EventKind{medic.EventStormEngaged, medic.EventStormReleased}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("h1 recorded %v, want %v", got, want)
	}
}

// TestFleetCooldownAndFence: a cooldown written by one host refuses the
// target on another until it ends; a lock lost (deleted, as when its lease
// expires) and taken by another host fails its old holder's fence check.
func TestFleetCooldownAndFence(t *testing.T) {
	srv := etcdtest.Start(t)
	a := startAgent(t, srv.Endpoint, "h1", 2*time.Second, 2*time.Second)
	b := startAgent(t, srv.Endpoint, "h2", 2*time.Second, 2*time.Second)
	waitStates(t, a, "h1=up h2=up ", 5*time.Second)
	waitJoined(t, a)
	waitJoined(t, b)
	ctx := context.Background()
	fa, rel, err := a.Guard().Hold(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Guard().Fenced(ctx, "web", fa); err != nil {
		t.Fatalf("fence of a held lock: %v", err)
	}
	if err := a.Guard().Fenced(ctx, "web", fa-1); !errors.Is(err, fleet.ErrStaleFence) {
		t.Fatalf("an older fence passed: %v", err)
	}
	const cool = 2 * time.Second
	if err := a.Guard().Cool(ctx, "web", cool); err != nil {
		t.Fatal(err)
	}
	cooled := time.Now()
	if err := rel(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Guard().Fenced(ctx, "web", fa); !errors.Is(err, fleet.ErrStaleFence) {
		t.Fatalf("fence of a released lock: %v", err)
	}
	_, _, err = b.Guard().Hold(ctx, "web")
	var ce *fleet.CoolingError
	if !errors.As(err, &ce) || !errors.Is(err, fleet.ErrCooling) || ce.By != "h1" || ce.Until.Before(cooled) {
		t.Fatalf("h2 held web during h1's cooldown: %v", err)
	}
	if _, _, err := b.Guard().Hold(ctx, "api"); err != nil {
		t.Fatalf("another target is not cooling: %v", err)
	}
	// A shorter cooldown does not shorten the running one.
	if err := b.Guard().Cool(ctx, "web", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Guard().Hold(ctx, "web"); !errors.Is(err, fleet.ErrCooling) {
		t.Fatalf("a shorter cooldown ended h1's: %v", err)
	}
	time.Sleep(time.Until(cooled.Add(cool + 50*time.Millisecond)))
	fb, relb, err := b.Guard().Hold(ctx, "web")
	if err != nil {
		t.Fatalf("h2 after the cooldown: %v", err)
	}
	defer relb(ctx)
	if err := a.Guard().Fenced(ctx, "web", fa); !errors.Is(err, fleet.ErrStaleFence) {
		t.Fatalf("h1's old fence passed while h2 holds web under %d: %v", fb, err)
	}
}

// TestLocalCooldownAndFence: the single-host guard keeps the same rules.
func TestLocalCooldownAndFence(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	g := fleet.NewLocal(clk)
	ctx := context.Background()
	f, rel, err := g.Hold(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Fenced(ctx, "web", f); err != nil {
		t.Fatal(err)
	}
	g.Cool(ctx, "web", time.Minute)
	rel(ctx)
	if err := g.Fenced(ctx, "web", f); !errors.Is(err, fleet.ErrStaleFence) {
		t.Fatalf("released: %v", err)
	}
	if _, _, err := g.Hold(ctx, "web"); !errors.Is(err, fleet.ErrCooling) {
		t.Fatalf("cooling: %v", err)
	}
	clk.Advance(time.Minute)
	if _, _, err := g.Hold(ctx, "web"); err != nil {
		t.Fatalf("after the cooldown: %v", err)
	}
}
