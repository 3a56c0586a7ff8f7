package config_test

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// TestStandDownRoom: the time a host cut from etcd has to stop its
// instances, grace − lease_ttl/3 − the peer probes − the slack, for the
// shortest lease and grace the other checks allow and the defaults; the
// shortest is above MinStandDownRoom (so fleet.grace ≥ fleet.lease_ttl ≥ 2s
// implies the check: it guards the constants, not a setting).
func TestStandDownRoom(t *testing.T) {
	cases := []struct {
		ttl, grace, want time.Duration
	}{
		{2 * time.Second, 2 * time.Second, 2*time.Second - 2*time.Second/3 - 750*time.Millisecond}, // 583ms: the tests' and the demo's
		{config.DefaultFleetLeaseTTL, config.DefaultFleetGrace, 40*time.Second - config.DefaultFleetLeaseTTL/3 - 750*time.Millisecond},
		{3 * time.Second, 3 * time.Second, 1250 * time.Millisecond},
	}
	for _, c := range cases {
		got := config.StandDownRoom(c.ttl, c.grace)
		if got != c.want {
			t.Errorf("lease_ttl %v, grace %v: room %v, want %v", c.ttl, c.grace, got, c.want)
		}
		if got < config.MinStandDownRoom {
			t.Errorf("lease_ttl %v, grace %v: room %v below %v, yet both are allowed", c.ttl, c.grace, got, config.MinStandDownRoom)
		}
	}
	for ttl := 2 * time.Second; ttl <= config.MaxFleetLeaseTTL; ttl += time.Second {
		if r := config.StandDownRoom(ttl, ttl); r < config.MinStandDownRoom {
			t.Fatalf("lease_ttl = grace = %v leaves %v, below %v", ttl, r, config.MinStandDownRoom)
		}
	}
}
