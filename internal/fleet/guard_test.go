package fleet_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/fleet"
)

// TestEtcdGuard: two hosts taking tokens of one fleet-wide window at once
// get exactly max between them; a target held by one host is refused to the
// other until released, and the next hold has a larger fence; a host that
// left the fleet takes no fleet-wide action.
func TestEtcdGuard(t *testing.T) {
	srv := etcdtest.Start(t)
	// A lease of 10 s: nothing here waits for one to expire (h2 leaves by
	// revoking its lease), and at a load of 24 a 2 s lease's renewal came
	// late enough for the guard to call h1 cut off, rightly, mid-test.
	a := startAgent(t, srv.Endpoint, "h1", 10*time.Second, 10*time.Second)
	b := startAgent(t, srv.Endpoint, "h2", 10*time.Second, 10*time.Second)
	waitStates(t, a, "h1=up h2=up ", 5*time.Second)
	waitJoined(t, a)
	waitJoined(t, b)
	ctx := context.Background()
	const max, per = 20, time.Hour
	var mu sync.Mutex
	var wg sync.WaitGroup
	ok := 0
	gate := make(chan struct{}) // every take starts at once: the most contention
	for _, at := range []*agentT{a, b} {
		for range 25 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				got, why, err := at.Guard().Take(ctx, "restart-web", max, per)
				if err != nil {
					t.Error(err)
				}
				if !got && why == "" {
					t.Error("a refusal without a reason")
				}
				mu.Lock()
				if got {
					ok++
				}
				mu.Unlock()
			}()
		}
	}
	close(gate)
	wg.Wait()
	if ok != max {
		t.Fatalf("%d tokens taken across two hosts, want exactly %d", ok, max)
	}
	fa, release, err := a.Guard().Hold(ctx, "web/0")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Guard().Hold(ctx, "web/0"); !errors.Is(err, fleet.ErrHeld) {
		t.Fatalf("h2 holds web/0 while h1 does: %v", err)
	}
	if err := release(ctx); err != nil {
		t.Fatal(err)
	}
	fb, _, err := b.Guard().Hold(ctx, "web/0")
	if err != nil || fb <= fa {
		t.Fatalf("h2's hold after h1's release: fence %d (h1's %d), %v", fb, fa, err)
	}
	if err := a.Guard().Safe(); err != nil {
		t.Fatalf("h1 joined, yet not safe: %v", err)
	}
	b.stop() // its lease revoked: its locks go with it
	if err := b.Guard().Safe(); !errors.Is(err, fleet.ErrCutOff) {
		t.Fatalf("h2 out of the fleet is safe: %v", err)
	}
	if _, _, err := a.Guard().Hold(ctx, "web/0"); err != nil {
		t.Fatalf("web/0 still held after h2 left: %v", err)
	}
	if _, _, err := b.Guard().Take(ctx, "restart-web", max, per); !errors.Is(err, fleet.ErrCutOff) {
		t.Fatalf("a host out of the fleet took a fleet-wide token: %v", err)
	}
}

func waitJoined(t *testing.T, at *agentT) {
	t.Helper()
	for start := time.Now(); !at.Status().Joined; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("not joined after 5s")
		}
	}
}

// TestLocalGuard: the single-host guard keeps the same rules in memory.
func TestLocalGuard(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	clk := clocktest.New(t0)
	g := fleet.NewLocal(clk)
	ctx := context.Background()
	steps := []struct {
		at   time.Duration
		key  string
		per  time.Duration
		want bool
	}{
		{0, "k", time.Hour, true},
		{time.Minute, "k", time.Hour, true},
		{2 * time.Minute, "k", time.Hour, true},
		{3 * time.Minute, "k", time.Hour, false},  // 3 per hour taken
		{4 * time.Minute, "s", time.Second, true}, // a short window of another key does not
		{5 * time.Minute, "k", time.Hour, false},  // forget the long one
		{59 * time.Minute, "k", time.Hour, false}, // still the same window
		{60 * time.Minute, "k", time.Hour, true},  // the next window
	}
	var prev time.Duration
	for i, s := range steps {
		clk.Advance(s.at - prev)
		prev = s.at
		ok, why, _ := g.Take(ctx, s.key, 3, s.per)
		if ok != s.want || (!ok && why == "") {
			t.Fatalf("step %d (+%v %s): %v %q, want %v", i, s.at, s.key, ok, why, s.want)
		}
	}
	f1, rel, err := g.Hold(ctx, "web/0")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Hold(ctx, "web/0"); !errors.Is(err, fleet.ErrHeld) {
		t.Fatalf("second hold: %v", err)
	}
	rel(ctx)
	if f2, _, err := g.Hold(ctx, "web/0"); err != nil || f2 <= f1 {
		t.Fatalf("hold after release: %d (was %d), %v", f2, f1, err)
	}
}
