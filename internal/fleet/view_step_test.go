package fleet_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/fleet"
)

// TestStepAgainstObserve applies a random sequence of puts and deletes of
// hosts' keys, with time passing (suspects turning lost, returns), to one
// view through Step (only the changed keys) and to another through Observe
// (the whole prefix, as a fresh read gives it), and compares the members,
// the changes, the counts, Next and the storm brake after every step.
func TestStepAgainstObserve(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const grace = 40 * time.Second
	r := rand.New(rand.NewPCG(5, 6))
	present := map[string]fleet.Present{}
	for i := range 20 {
		present[fmt.Sprintf("h%02d", i)] = p(int64(i+1), "10.0.0.1")
	}
	now := t0
	inc, cs1 := fleet.NewView(grace).Observe(now, maps.Clone(present))
	full, cs2 := fleet.NewView(grace).Observe(now, maps.Clone(present))
	same(t, -1, inc, full, cs1, cs2)
	lease := int64(100)
	for step := range 3000 {
		now = now.Add(time.Duration(r.IntN(8000)) * time.Millisecond)
		changed := map[string]*fleet.Present{}
		for range r.IntN(4) {
			host := fmt.Sprintf("h%02d", r.IntN(30))
			switch r.IntN(4) {
			case 0: // the lease expired or was revoked
				delete(present, host)
				changed[host] = nil
			case 1: // joined or rejoined with a new lease
				lease++
				present[host] = p(lease, "10.0.0.1")
				v := present[host]
				changed[host] = &v
			case 2: // new information under the same lease (or the same again)
				if old, ok := present[host]; ok {
					old.Address = fmt.Sprintf("10.0.1.%d", r.IntN(3))
					present[host] = old
					changed[host] = &old
				}
			default: // nothing changed: a tick only
			}
		}
		var a, b []fleet.Change
		if len(changed) == 0 && r.IntN(2) == 0 {
			inc, a = inc.Tick(now)
		} else {
			inc, a = inc.Step(now, changed)
		}
		full, b = full.Observe(now, maps.Clone(present))
		same(t, step, inc, full, a, b)
	}
}

func same(t *testing.T, step int, inc, full fleet.View, a, b []fleet.Change) {
	t.Helper()
	if !reflect.DeepEqual(inc.Members(), full.Members()) {
		t.Fatalf("step %d: members\n%+v\nwant\n%+v", step, inc.Members(), full.Members())
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("step %d: changes\n%+v\nwant\n%+v", step, a, b)
	}
	for _, s := range []fleet.State{fleet.Unknown, fleet.Up, fleet.Suspect, fleet.Lost} {
		want := 0
		for _, m := range full.Members() {
			if m.State == s {
				want++
			}
		}
		if inc.Count(s) != want {
			t.Fatalf("step %d: %d hosts %v, want %d", step, inc.Count(s), s, want)
		}
	}
	at1, ok1 := inc.Next()
	at2, ok2 := full.Next()
	var want time.Time
	for _, m := range full.Members() {
		if m.State == fleet.Suspect && (want.IsZero() || m.GoneAt.Add(40*time.Second).Before(want)) {
			want = m.GoneAt.Add(40 * time.Second)
		}
	}
	if at1 != at2 || ok1 != ok2 || at1 != want {
		t.Fatalf("step %d: Next %v %v, want %v (full view %v %v)", step, at1, ok1, want, at2, ok2)
	}
	if fleet.StormOf(inc, 0.5) != fleet.StormOf(full, 0.5) {
		t.Fatalf("step %d: storm %v, want %v", step, fleet.StormOf(inc, 0.5), fleet.StormOf(full, 0.5))
	}
}
