package e2e_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/drill"
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
// etcd-member-loss is refused with its reason.
func TestFleetHostKillDrill(t *testing.T) {
	c, agents := startFleet3(t)
	h1, h3 := agents[0], agents[2]

	if _, stderr, err := h3.medicCLI("drill", "host-kill", "--host", "h3", "--json"); err == nil || !strings.Contains(stderr, "run the drill from another host's agent") {
		t.Fatalf("host-kill of h3 sent to h3 itself: err %v, stderr %s", err, stderr)
	}
	if _, stderr, err := h1.medicCLI("drill", "etcd-member-loss", "--host", "h3", "--json"); err == nil || !strings.Contains(stderr, "cannot declare how to stop and start") {
		t.Fatalf("etcd-member-loss: err %v, stderr %s", err, stderr)
	}

	start := time.Now()
	out, stderr, err := h1.medicCLI("drill", "host-kill", "--host", "h3", "--service", "web", "--load", "100", "--duration", "10s", "--json")
	var res drill.Result
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil {
		t.Fatalf("drill: %v (%v)\nstdout %s\nstderr %s\nh1 stderr:\n%s", err, jerr, out, stderr, tail(h1.stderr.String(), 3000))
	}
	t.Logf("drill in %v: %s; figures %v", time.Since(start).Round(100*time.Millisecond), res.Summary, res.Figures)
	if !res.Passed {
		t.Fatalf("host-kill drill failed: %v\n%s\nh3 stderr:\n%s", res.Reasons, res.Summary, tail(h3.stderr.String(), 3000))
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
	if res.Figures["survivors_ready_min"] != 4 {
		t.Errorf("survivors_ready_min %v, want 4 (h3's 2 of 6 gone)", res.Figures["survivors_ready_min"])
	}
	// h3 simulated its death: its instances were killed, and it audited it.
	code, body := getWithToken(h3.url("/v1/audit?target=fleet/prod/h3"), h3.token)
	if code != 200 || !strings.Contains(body, "fleet.drill.down") || !strings.Contains(body, "fleet.drill.up") {
		t.Errorf("h3 did not audit its simulated death: HTTP %d %s", code, tail(body, 2000))
	}
	// The fleet is back at 2 each, all ready.
	waitPlaced(t, c, agents, "h1=2 h2=2 h3=2", []int{2, 2, 2}, 20*time.Second)
}
