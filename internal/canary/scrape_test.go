package canary_test

import (
	"testing"

	"github.com/medic-dev/medic/internal/canary"
)

// TestRises: a counter's rise is summed over the group's instances from its
// first read; a counter that goes down restarted (its new value is all
// rise); an instance that appears later starts from its first read.
func TestRises(t *testing.T) {
	var r canary.Rises
	if r.Values() != nil {
		t.Fatal("values before any scrape")
	}
	at := func(id string, v float64) canary.InstanceCounters {
		return canary.InstanceCounters{ID: id, Values: map[string]float64{"errs": v}}
	}
	r.Add([]canary.InstanceCounters{at("web/1000", 100), at("web/1001", 7)})
	if got := r.Values()["errs"]; got != 0 {
		t.Errorf("after the first read: rise %v, want 0 (known, nothing rose)", got)
	}
	r.Add([]canary.InstanceCounters{at("web/1000", 104), at("web/1001", 9)})
	r.Add([]canary.InstanceCounters{at("web/1000", 3), at("web/1002", 50)}) // web/1000 restarted; web/1001 unread; web/1002 new
	r.Add([]canary.InstanceCounters{at("web/1000", 5), at("web/1001", 10), at("web/1002", 51)})
	// 4 + 2, then 3 (restart), then 2 + 1 + 1.
	if got := r.Values()["errs"]; got != 13 {
		t.Errorf("rise %v, want 13", got)
	}
}
