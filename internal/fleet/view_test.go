package fleet_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/fleet"
)

func p(lease int64, addr string) fleet.Present {
	return fleet.Present{Info: fleet.Info{Address: addr}, Lease: lease}
}

// TestViewTimeline steps one view through joins, an expired lease, a return
// within the grace, a loss and a return after it, with a grace of 40s.
func TestViewTimeline(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const grace = 40 * time.Second
	a1, b1, b2, c1 := p(0xa1, "10.0.0.1"), p(0xb1, "10.0.0.2"), p(0xb2, "10.0.0.2"), p(0xc1, "10.0.0.3")
	type hosts = map[string]fleet.Present
	steps := []struct {
		at      time.Duration
		present hosts // nil: a Tick, not an observation
		changes string
		states  string
	}{
		{0, hosts{"a": a1, "b": b1}, "a unknown→up (initial); b unknown→up (initial)", "a=up b=up"},
		{1 * time.Second, hosts{"a": a1, "b": b1, "c": c1}, "c unknown→up", "a=up b=up c=up"},
		{2 * time.Second, hosts{"a": a1, "b": b1, "c": c1}, "", "a=up b=up c=up"},          // nothing changed: nothing to audit
		{10 * time.Second, hosts{"a": a1, "c": c1}, "b up→suspect", "a=up b=suspect c=up"}, // b's lease expired
		{49 * time.Second, nil, "", "a=up b=suspect c=up"},                                 // 39s gone: still suspect
	}
	v := fleet.NewView(grace)
	for i, s := range steps[:5] {
		v = step(t, i, v, t0.Add(s.at), s.present, s.changes, s.states)
	}
	// Branch 1: b rejoins within the grace with a new lease: up again, never lost.
	w := step(t, 5, v, t0.Add(20*time.Second), hosts{"a": a1, "b": b2, "c": c1}, "b suspect→up", "a=up b=up c=up")
	if m := w.Members()[1]; m.Lease != 0xb2 || !m.GoneAt.IsZero() {
		t.Fatalf("b after its return: lease %x gone_at %v, want b2 and zero", m.Lease, m.GoneAt)
	}
	// Branch 2: b stays gone: lost exactly at gone + grace, and Next said so.
	if at, ok := v.Next(); !ok || !at.Equal(t0.Add(50*time.Second)) {
		t.Fatalf("Next = %v, %v; want +50s", at.Sub(t0), ok)
	}
	v = step(t, 6, v, t0.Add(50*time.Second), nil, "b suspect→lost", "a=up b=lost c=up")
	if _, ok := v.Next(); ok {
		t.Fatal("Next with no suspect host should be false")
	}
	v = step(t, 7, v, t0.Add(60*time.Second), hosts{"a": a1, "c": c1}, "", "a=up b=lost c=up") // lost stays listed, no new event
	v = step(t, 8, v, t0.Add(70*time.Second), hosts{"a": a1, "b": b2, "c": c1}, "b lost→up", "a=up b=up c=up")
	// a's agent restarts between two watch events (delete and create seen at once): a new lease while up.
	v = step(t, 9, v, t0.Add(80*time.Second), hosts{"a": p(0xa2, "10.0.0.1"), "b": b2, "c": c1}, "a up→up", "a=up b=up c=up")
	// c publishes a new address.
	v = step(t, 10, v, t0.Add(90*time.Second), hosts{"a": p(0xa2, "10.0.0.1"), "b": b2, "c": p(0xc1, "10.0.0.9")}, "c up→up", "a=up b=up c=up")
	// Every host gone at once (this agent is the one cut off, or etcd lost its data): all suspect, then all lost.
	v = step(t, 11, v, t0.Add(100*time.Second), hosts{}, "a up→suspect; b up→suspect; c up→suspect", "a=suspect b=suspect c=suspect")
	step(t, 12, v, t0.Add(140*time.Second), nil, "a suspect→lost; b suspect→lost; c suspect→lost", "a=lost b=lost c=lost")
}

func step(t *testing.T, i int, v fleet.View, now time.Time, present map[string]fleet.Present, wantChanges, wantStates string) fleet.View {
	t.Helper()
	var cs []fleet.Change
	if present == nil {
		v, cs = v.Tick(now)
	} else {
		v, cs = v.Observe(now, present)
	}
	var got []string
	for _, c := range cs {
		s := fmt.Sprintf("%s %v→%v", c.Host, c.From, c.To)
		if c.Initial {
			s += " (initial)"
		}
		if c.Reason == "" {
			t.Errorf("step %d: change %s has no reason", i, s)
		}
		got = append(got, s)
	}
	if g := strings.Join(got, "; "); g != wantChanges {
		t.Errorf("step %d: changes %q, want %q", i, g, wantChanges)
	}
	var st []string
	for _, m := range v.Members() {
		st = append(st, m.Host+"="+m.State.String())
	}
	if g := strings.Join(st, " "); g != wantStates {
		t.Errorf("step %d: states %q, want %q", i, g, wantStates)
	}
	return v
}

// TestViewDoesNotChangeItsReceiver: a view is a value; stepping returns the next one.
func TestViewDoesNotChangeItsReceiver(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v, _ := fleet.NewView(time.Second).Observe(t0, map[string]fleet.Present{"a": p(1, "x")})
	v.Observe(t0, map[string]fleet.Present{})
	v.Tick(t0.Add(time.Hour))
	if ms := v.Members(); len(ms) != 1 || ms[0].State != fleet.Up {
		t.Fatalf("receiver changed: %+v", ms)
	}
}
