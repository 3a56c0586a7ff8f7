package e2e_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/testutil/netns"
)

// medicCLI runs the CLI against the agent of a host in the netns fleet.
func (a *nsAgent) medicCLI(args ...string) (string, string, error) {
	args = append(args, "--addr", a.h.Addr.String()+":7070", "--token", a.token)
	cmd := exec.Command(medicBin, args...)
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// TestFleetHostKillDrill: `medic drill host-kill --host h3` sent to h1's
// agent, with the drill's own load (100 GETs/s through h1's proxy): h3
// simulates its death (its instances SIGKILLed, its etcd connections cut)
// and comes back after 10 s; h1 measures from the fleet's side. The report
// gives the time to detect (h3 suspect: at most lease_ttl + grace + slack),
// the time until 6 instances are ready on h1 and h2, no client error, and
// the rebalance after h3's return. The drill is refused from h3 itself and
// etcd-member-loss is refused with its reason (no host declares a member).
func TestFleetHostKillDrill(t *testing.T) {
	c, agents := startFleet3(t)
	h1, h3 := agents[0], agents[2]
	if _, stderr, err := h3.medicCLI("drill", "host-kill", "--host", "h3", "--json"); err == nil || !strings.Contains(stderr, "run the drill from another host's agent") {
		t.Fatalf("host-kill of h3 sent to h3 itself: err %v, stderr %s", err, stderr)
	}
	if _, stderr, err := h1.medicCLI("drill", "etcd-member-loss", "--json"); err == nil || !strings.Contains(stderr, "must say how to stop and start it") {
		t.Fatalf("etcd-member-loss: err %v, stderr %s", err, stderr)
	}
	hostDrill(t, c, agents, "host-kill", "fleet.drill.down")
}

// TestFleetHostPartitionDrill is host-partition the same way: h3 cuts
// itself from etcd and from its peers without stopping its instances; the
// stand-down rule stops them (audited on h3) before h1 and h2 take its
// share over. Not in CI (about 25 s more): MEDIC_FLEET_DRILLS=all runs it
// (bench/fleet/drills.sh does).
func TestFleetHostPartitionDrill(t *testing.T) {
	if os.Getenv("MEDIC_FLEET_DRILLS") != "all" {
		t.Skip("MEDIC_FLEET_DRILLS=all runs it (bench/fleet/drills.sh); CI runs TestFleetHostKillDrill")
	}
	c, agents := startFleet3(t)
	hostDrill(t, c, agents, "host-partition", "fleet.stood_down")
}

// hostDrill runs scenario against h3 from h1 under the drill's load and
// checks the report; h3's audit must hold want.
func hostDrill(t *testing.T, c *netns.Cluster, agents []*nsAgent, scenario, want string) {
	t.Helper()
	h1, h3 := agents[0], agents[2]
	start := time.Now()
	out, stderr, err := h1.medicCLI("drill", scenario, "--host", "h3", "--service", "web", "--load", strconv.Itoa(fleetRate(t)), "--duration", "10s", "--json")
	var res drill.Result
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil {
		t.Fatalf("drill: %v (%v)\nstdout %s\nstderr %s\nh1 stderr:\n%s", err, jerr, out, stderr, tail(h1.stderr.String(), 3000))
	}
	t.Logf("%s drill in %v: %s; figures %v", scenario, time.Since(start).Round(100*time.Millisecond), res.Summary, res.Figures)
	if !res.Passed {
		t.Fatalf("%s drill failed: %v\n%s\nh3 stderr:\n%s", scenario, res.Reasons, res.Summary, tail(h3.stderr.String(), 3000))
	}
	// lease_ttl 2s + grace 2s; the slack is for a loaded CI machine.
	if res.TTD == nil || *res.TTD > 2+2+3 {
		t.Errorf("time to detect %v, want ≤ lease_ttl + grace + 3s = 7s", res.TTD)
	}
	if res.Detected == nil || res.Detected.Target != "fleet/prod/h3" {
		t.Errorf("detected by %+v, want h3's fleet.host.suspect", res.Detected)
	}
	if res.TTR == nil || res.Recovered == nil || res.Recovered.Kind != "fleet.capacity.restored" {
		t.Errorf("capacity not restored on h1 and h2: TTR %v, %+v", res.TTR, res.Recovered)
	}
	if res.Requests < 500 || res.ClientErrors != 0 {
		t.Errorf("%d of %d requests through h1's proxy failed, want 0 of at least 500", res.ClientErrors, res.Requests)
	}
	for _, f := range []string{"returned_seconds", "rebalanced_seconds", "survivors_ready_min"} {
		if _, ok := res.Figures[f]; !ok {
			t.Errorf("figure %s missing: %v", f, res.Figures)
		}
	}
	// h3's 2 of 6 are gone at once (a survivor's readiness probe missed
	// under load can count one fewer for a moment: 3 in 1 of 3 runs at load
	// average 22, so only the upper bound is checked).
	if m := res.Figures["survivors_ready_min"]; m > 4 {
		t.Errorf("survivors_ready_min %v, want at most 4 (h3's 2 of 6 gone)", m)
	}
	// h3 simulated its loss, and audited it.
	code, body := getWithToken(h3.url("/v1/audit?target=fleet/prod/h3"), h3.token)
	if code != 200 || !strings.Contains(body, want) || !strings.Contains(body, "fleet.drill.up") {
		t.Errorf("h3's audit lacks %s or fleet.drill.up: HTTP %d %s", want, code, tail(body, 2000))
	}
	// The fleet is back at 2 each, all ready.
	waitPlaced(t, c, agents, "h1=2 h2=2 h3=2", []int{2, 2, 2}, 20*time.Second)
}
