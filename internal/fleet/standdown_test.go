package fleet_test

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/fleet"
)

// TestStandDown: a host stands down only when its lease may have expired
// and it reaches none of its peers, with a deadline grace − slack after
// its lease may have expired.
func TestStandDown(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const grace, slack = 40 * time.Second, 250 * time.Millisecond
	cases := []struct {
		name string
		at   time.Duration // after SafeUntil
		i    fleet.Isolation
		want bool
	}{
		{"joined within its safe time", -time.Second, fleet.Isolation{Joined: true, PeersKnown: 4}, false},
		{"lease just past, isolated", 0, fleet.Isolation{Joined: true, PeersKnown: 4}, true},
		{"just before the lease may expire", -time.Millisecond, fleet.Isolation{PeersKnown: 4}, false},
		{"lease past, a peer reached", time.Second, fleet.Isolation{Joined: true, PeersKnown: 4, PeersReached: 1}, false},
		{"long cut, isolated", 10 * time.Minute, fleet.Isolation{PeersKnown: 4}, true},
		{"cut, a peer reached (etcd down for all?)", grace, fleet.Isolation{PeersKnown: 4, PeersReached: 1}, false},
		{"cut, no peer known", grace, fleet.Isolation{}, false},
		{"not joined within the old safe time", -time.Second, fleet.Isolation{PeersKnown: 4}, false},
	}
	for _, c := range cases {
		c.i.SafeUntil, c.i.Grace, c.i.Slack = t0, grace, slack
		d := fleet.StandDown(t0.Add(c.at), c.i)
		if d.Down != c.want || d.Why == "" {
			t.Errorf("%s: %v (%s), want %v", c.name, d.Down, d.Why, c.want)
		}
		if want := t0.Add(grace - slack); !d.By.Equal(want) {
			t.Errorf("%s: stop by %v, want SafeUntil + grace − slack = %v", c.name, d.By, want)
		}
	}
}

// TestStopGrace: each instance's stop grace is the configured one cut to
// the time left before the deadline, never negative.
func TestStopGrace(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	by := t0.Add(830 * time.Millisecond)
	cases := []struct {
		name  string
		now   time.Time
		grace time.Duration
		want  time.Duration
	}{
		{"grace within the time left", t0, 500 * time.Millisecond, 500 * time.Millisecond},
		{"grace cut to the time left", t0, time.Second, 830 * time.Millisecond},
		{"at the deadline: SIGKILL at once", by, time.Second, 0},
		{"past the deadline: SIGKILL at once", by.Add(time.Second), time.Second, 0},
		{"grace 0 stays 0", t0, 0, 0},
	}
	for _, c := range cases {
		if got := fleet.StopGrace(c.now, by, c.grace); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
