package fleet_test

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/fleet"
)

// TestStandDown: a host stands down only when its lease may have expired
// and it reaches none of its peers.
func TestStandDown(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const grace = 40 * time.Second
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
		c.i.SafeUntil, c.i.Grace = t0, grace
		got, why := fleet.StandDown(t0.Add(c.at), c.i)
		if got != c.want || why == "" {
			t.Errorf("%s: %v (%s), want %v", c.name, got, why, c.want)
		}
	}
}
