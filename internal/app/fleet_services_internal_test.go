package app

import (
	"testing"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/supervise"
)

// TestPlacementView: this host coordinates only while it is joined (within
// its safe time), watching, and the first up host by name; lost hosts are
// marked lost, suspect ones are not.
func TestPlacementView(t *testing.T) {
	m := func(h string, s fleet.State) fleet.Member {
		return fleet.Member{Info: fleet.Info{Host: h, Capacity: 4}, State: s}
	}
	st := fleet.Status{Self: "h2", Watching: true, Hosts: []fleet.Member{m("h1", fleet.Suspect), m("h2", fleet.Up), m("h3", fleet.Lost)}}
	for _, c := range []struct {
		name   string
		st     fleet.Status
		joined bool
		coord  bool
	}{
		{"first up host, joined", st, true, true},
		{"not joined (cut from etcd)", st, false, false},
		{"not watching yet", func() fleet.Status { s := st; s.Watching = false; return s }(), true, false},
		{"an earlier host is up", func() fleet.Status {
			s := st
			s.Hosts = []fleet.Member{m("h1", fleet.Up), m("h2", fleet.Up), m("h3", fleet.Lost)}
			return s
		}(), true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := PlacementView(c.st, c.joined)
			if v.Coordinator != c.coord {
				t.Fatalf("Coordinator = %v, want %v", v.Coordinator, c.coord)
			}
			if len(v.Hosts) != 3 || v.Hosts[0].Lost || !v.Hosts[2].Lost || v.Hosts[1].Capacity != 4 {
				t.Fatalf("hosts %+v", v.Hosts)
			}
		})
	}
}

// TestWithFleetShares: a reload applies a fleet service at the count it
// runs, leaves other services and the loaded config alone.
func TestWithFleetShares(t *testing.T) {
	next := &config.Config{Services: map[string]*config.Service{
		"web": {Instances: 1, Fleet: &config.ServiceFleet{Instances: 6}},
		"api": {Instances: 2},
	}}
	got := withFleetShares(next, []supervise.ServiceStatus{{Name: "web", Desired: 3}, {Name: "api", Desired: 5}})
	if got.Services["web"].Instances != 3 || got.Services["api"].Instances != 2 {
		t.Fatalf("applied web %d api %d, want 3 and 2", got.Services["web"].Instances, got.Services["api"].Instances)
	}
	if next.Services["web"].Instances != 1 {
		t.Fatalf("the loaded config changed: web %d", next.Services["web"].Instances)
	}
}
