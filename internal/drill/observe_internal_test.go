package drill

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/supervise"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func svc(name string, ready ...bool) supervise.ServiceStatus {
	st := supervise.ServiceStatus{Name: name, Desired: len(ready)}
	for i, r := range ready {
		st.Instances = append(st.Instances, supervise.InstanceStatus{ID: fmt.Sprintf("%s/%d", name, i), Index: i, Ready: r})
		if r {
			st.Ready++
		}
	}
	return st
}

func obsKinds(obs []Observation) string {
	var s []string
	for _, o := range obs {
		s = append(s, o.Kind+" "+o.Target)
	}
	return strings.Join(s, "; ")
}

func TestChangesFromSnapshots(t *testing.T) {
	px := func(inRot ...bool) []proxy.Stats {
		st := proxy.Stats{Service: "web"}
		for i, in := range inRot {
			b := proxy.Closed
			if !in {
				b = proxy.Open
			}
			st.Instances = append(st.Instances, proxy.InstanceStats{ID: fmt.Sprintf("web/%d", i), Ready: true, InRotation: in, Breaker: b})
		}
		return []proxy.Stats{st}
	}
	first := takeSnapshot([]supervise.ServiceStatus{svc("web", true, true)}, px(true, true), "web")
	if got := changes(snapshot{}, first, t0); got != nil {
		t.Fatalf("the first snapshot is the baseline, got %s", obsKinds(got))
	}
	// web/1 ejected by the proxy while still ready.
	ejected := takeSnapshot([]supervise.ServiceStatus{svc("web", true, true)}, px(true, false), "web")
	got := changes(first, ejected, t0)
	if obsKinds(got) != "observed.out_of_rotation web/1; observed.capacity.degraded web" || got[0].Reason != "ejected by the proxy (breaker open)" {
		t.Fatalf("ejection: %s (%q)", obsKinds(got), got[0].Reason)
	}
	// web/1 not ready at all (no proxy this time: readiness decides).
	unready := takeSnapshot([]supervise.ServiceStatus{svc("web", true, false)}, nil, "web")
	if got := changes(first, unready, t0); obsKinds(got) != "observed.out_of_rotation web/1; observed.capacity.degraded web" || !strings.HasPrefix(got[0].Reason, "not ready") {
		t.Fatalf("unready: %s", obsKinds(got))
	}
	if got := changes(ejected, first, t0); obsKinds(got) != "observed.in_rotation web/1; observed.capacity.full web" {
		t.Fatalf("return: %s", obsKinds(got))
	}
	// Services not watched are ignored.
	other := takeSnapshot([]supervise.ServiceStatus{svc("web", true, true), svc("db", false)}, nil, "web")
	if _, ok := other.instances["db/0"]; ok {
		t.Fatal("db is not watched")
	}
}

func TestUsageSeesAvoidanceAndFailures(t *testing.T) {
	u := usage{}
	snap := func(svcReq, req, fails uint64, in bool) snapshot {
		return snapshot{instances: map[string]rotation{"web/1": {in: in, service: "web", requests: req, failures: fails}},
			requests: map[string]uint64{"web": svcReq}}
	}
	steps := []struct {
		at              time.Duration
		svc, req, fails uint64
		in              bool
		want            string
	}{
		{0, 100, 30, 0, true, ""},                                 // baseline
		{500 * time.Millisecond, 125, 30, 0, true, ""},            // unused for 500ms: not yet
		{time.Second, 150, 30, 0, true, "observed.avoided web/1"}, // 1s and 50 requests without it
		{1100 * time.Millisecond, 155, 30, 0, true, ""},           // reported once
		{1200 * time.Millisecond, 160, 31, 1, true, "observed.failing web/1; observed.used web/1"},
		{1300 * time.Millisecond, 165, 32, 2, true, ""},               // same failing episode
		{4 * time.Second, 300, 40, 3, true, "observed.failing web/1"}, // after 2s quiet: a new one
		{6 * time.Second, 400, 40, 3, false, ""},                      // out of rotation: not "avoided"
		{8 * time.Second, 500, 5, 0, true, ""},                        // counters restarted (new process)
	}
	for _, s := range steps {
		got := obsKinds(u.observe(snap(s.svc, s.req, s.fails, s.in), t0.Add(s.at)))
		if got != s.want {
			t.Fatalf("+%v: got %q, want %q", s.at, got, s.want)
		}
	}
	// Without a proxy there is no traffic to steer.
	if got := u.observe(snapshot{instances: map[string]rotation{"web/1": {in: true, service: "web"}}}, t0.Add(time.Hour)); got != nil {
		t.Fatalf("no proxy: %s", obsKinds(got))
	}
}

func TestDueSchedules(t *testing.T) {
	list := []config.DrillSchedule{{Scenario: "kill", Service: "web", Cron: "*/10 * * * *"}, {Scenario: "hang", Service: "web", Cron: "@every 90s"}}
	next := map[string]time.Time{}
	now := t0.Add(3 * time.Minute)
	due, wake := dueSchedules(list, next, now)
	if len(due) != 0 || !wake.Equal(now.Add(90*time.Second)) {
		t.Fatalf("first look: due %v wake %v (never at once)", due, wake)
	}
	due, wake = dueSchedules(list, next, now.Add(90*time.Second))
	if fmt.Sprint(due) != "[1]" || !wake.Equal(now.Add(180*time.Second)) {
		t.Fatalf("+90s: due %v wake %v", due, wake)
	}
	due, _ = dueSchedules(list, next, t0.Add(10*time.Minute))
	if fmt.Sprint(due) != "[0 1]" {
		t.Fatalf("at :10: due %v", due)
	}
	// An edited schedule starts over; a removed one is forgotten.
	list[1].Cron = "@every 1h"
	due, _ = dueSchedules(list[1:], next, t0.Add(11*time.Minute))
	if len(due) != 0 || len(next) != 1 {
		t.Fatalf("after edit: due %v, %d kept", due, len(next))
	}
}

// A scheduled fleet drill carries its host (or etcd member) into the request.
func TestScheduledFleetRequest(t *testing.T) {
	r := scheduledRequest(config.DrillSchedule{Scenario: "host-kill", Service: "web", Host: "h3", Cron: "@daily", LoadRPS: 5})
	if r.Scenario != "host-kill" || r.Service != "web" || r.Host != "h3" || r.LoadRPS != 5 || r.Member != "" {
		t.Fatalf("request %+v", r)
	}
	r = scheduledRequest(config.DrillSchedule{Scenario: "etcd-member-loss", Service: "web", Member: "e2", Cron: "@daily"})
	if r.Member != "e2" || r.Host != "" {
		t.Fatalf("request %+v", r)
	}
}
