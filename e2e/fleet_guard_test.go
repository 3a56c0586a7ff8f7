package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/testutil/netns"
)

// guardConfig is a host of fleet prod in its own namespace with the
// singleton runbook (fleetRunbook) and no fleet service: the fleet
// guardrails without the cost of instances. {RECEIVERS} may add receivers.
const guardConfig = `
name: {HOST}
data_dir: {DIR}/data
api: {listen: "{ADDR}:7070", tokens_file: tokens.yaml}
etcd: {endpoints: [{ETCD}]}
fleet: {name: prod, address: {ADDR}, lease_ttl: 2s, grace: 2s}
services:
  idle:
    command: [sleep, "300"]
{RECEIVERS}` + fleetRunbook

// fleetRateMax is automation.fleet_rate.max of the fleet tests: 3, or
// MEDIC_FLEET_RATE_MAX (bench/fleet/partition.sh runs the 20/h).
func fleetRateMax(t *testing.T) int {
	v := os.Getenv("MEDIC_FLEET_RATE_MAX")
	if v == "" {
		return 3
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil || n < 1 || n > 200 {
		t.Fatalf("MEDIC_FLEET_RATE_MAX=%q: want a number of runs from 1 to 200", v)
	}
	return n
}

// fleetTargets names the targets the fleet tests send alerts for: more
// than the fleet rate allows (max + 3), so the rate must refuse some.
func fleetTargets(t *testing.T) []string {
	var ts []string
	for i := range fleetRateMax(t) + 3 {
		ts = append(ts, fmt.Sprintf("t%02d", i+1))
	}
	return ts
}

// postAlert sends a firing Ping alert for instance to a's API.
func (a *nsAgent) postAlert(instance string) error {
	body := fmt.Sprintf(`{"labels": {"alertname": "Ping", "instance": %q}, "status": "firing"}`, instance)
	req, _ := http.NewRequest("POST", a.url("/v1/alerts"), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("alert %s to %s: %w", instance, a.h.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("alert %s to %s: HTTP %d %s", instance, a.h.Name, resp.StatusCode, b)
	}
	return nil
}

// records lists a's audit records of kind (nil when the agent does not answer).
func (a *nsAgent) records(kind string) []audit.Record {
	code, body := getWithToken(a.url("/v1/audit?limit=5000&kind="+kind), a.token)
	if code != 200 {
		return nil
	}
	var doc struct{ Records []audit.Record }
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return nil
	}
	return doc.Records
}

// hosts is a's view of the fleet (GET /v1/fleet/hosts).
func (a *nsAgent) hosts() fleet.Status {
	var st fleet.Status
	_, body := getWithToken(a.url("/v1/fleet/hosts"), a.token)
	_ = json.Unmarshal([]byte(body), &st)
	return st
}

// fleetTokens reads the counters of automation.fleet_rate's windows in
// etcd: the tokens taken in each window (normally one window).
func fleetTokens(t *testing.T, c *netns.Cluster) []string {
	t.Helper()
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, "/medic/fleet/prod/rate/automation/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("read the fleet rate's windows: %v", err)
	}
	var out []string
	for _, kv := range r.Kvs {
		out = append(out, string(kv.Value))
	}
	return out
}

// remedyTally is what the hosts' audits and the runbook's files say about
// the runs of touch.
type remedyTally struct {
	acts    map[string][]string // target → the hosts whose decision was act
	refused map[string]int      // guard → blocked decisions
	ran     map[string][]string // target → the hosts that ran its step (lines of run-<target>)
	bad     []string            // blocked decisions without a guard or a reason
}

func (r remedyTally) actCount() int {
	n := 0
	for _, hs := range r.acts {
		n += len(hs)
	}
	return n
}

func (r remedyTally) ranCount() int {
	n := 0
	for _, hs := range r.ran {
		n += len(hs)
	}
	return n
}

func tallyRemedies(agents []*nsAgent) remedyTally {
	r := remedyTally{acts: map[string][]string{}, refused: map[string]int{}, ran: map[string][]string{}}
	for _, a := range agents {
		for _, rec := range a.records("remedy.decision") {
			switch rec.Fields["outcome"] {
			case "act":
				r.acts[rec.Target] = append(r.acts[rec.Target], a.h.Name)
			case "blocked":
				r.refused[rec.Fields["guard"]]++
				if rec.Fields["guard"] == "" || rec.Reason == "" {
					r.bad = append(r.bad, fmt.Sprintf("%s on %s: %q", rec.Target, a.h.Name, rec.Reason))
				}
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(agents[0].out, "run-*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		r.ran[strings.TrimPrefix(filepath.Base(f), "run-")] = strings.Fields(string(b))
	}
	return r
}

func (r remedyTally) String() string {
	var guards []string
	for g, n := range r.refused {
		guards = append(guards, fmt.Sprintf("%s=%d", g, n))
	}
	sort.Strings(guards)
	return fmt.Sprintf("%d act decisions, %d runs on %d targets, refused %s", r.actCount(), r.ranCount(), len(r.ran), strings.Join(guards, " "))
}

// checkSingletonAndRate waits (within) until the fleet's rate window holds
// max tokens and the hosts' audits hold max act decisions, then checks the
// two fleet-wide guardrails: never more than one run of touch per target
// (a run is one line of run-<target>, and with a 1h fleet-wide cooldown a
// target runs at most once), every act decision on a distinct target, and
// exactly max tokens taken and max act decisions in the fleet; blocked
// decisions are audited with their guard and reason. A run that had its
// token but was refused its step (its host cut off: fleet_fence or
// fleet_cut_off) is an act decision without a line: the limit errs on the
// side of fewer actions.
func checkSingletonAndRate(t *testing.T, c *netns.Cluster, agents []*nsAgent, max int, within time.Duration) remedyTally {
	t.Helper()
	deadline := time.Now().Add(within)
	var r remedyTally
	var tokens []string
	for {
		r, tokens = tallyRemedies(agents), fleetTokens(t, c)
		if r.actCount() >= max && len(tokens) == 1 && tokens[0] == fmt.Sprint(max) && r.ranCount() >= r.actCount()-r.refused["fleet_fence"]-r.refused["fleet_cut_off"] {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after %v: tokens %v, %s; want %d tokens and %d act decisions", within, tokens, r, max, max)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(tokens) > 1 {
		t.Logf("the run crossed an hour: windows %v (each holds at most %d)", tokens, max)
	}
	for target, hosts := range r.ran {
		if len(hosts) > 1 {
			t.Errorf("target %s ran %d times (hosts %v): more than one run of a singleton remediation", target, len(hosts), hosts)
		}
	}
	for target, hosts := range r.acts {
		if len(hosts) > 1 {
			t.Errorf("target %s: %d act decisions (hosts %v) under one fleet-wide lock and cooldown", target, len(hosts), hosts)
		}
	}
	if n := r.actCount(); len(tokens) == 1 && n != max {
		t.Errorf("%d act decisions in the fleet, want exactly the fleet rate %d (%s)", n, max, r)
	}
	if n := r.ranCount(); n > max {
		t.Errorf("%d runs in the fleet, above the fleet rate %d (%s)", n, max, r)
	}
	if len(r.bad) > 0 {
		t.Errorf("blocked decisions without a guard or a reason: %v", r.bad)
	}
	if r.refused["fleet_rate"] == 0 {
		t.Errorf("no decision refused by fleet_rate: %s", r)
	}
	return r
}

// startGuardFleet starts a 3-member etcd and agents h1, h2, h3 with
// guardConfig (kv adds placeholders), and waits until each sees all three up.
func startGuardFleet(t *testing.T, n *netns.Net, kv ...string) (*netns.Cluster, []*nsAgent) {
	t.Helper()
	c := n.MustStartCluster(t, 3)
	out := t.TempDir()
	kv = append(kv, "{RECEIVERS}", "")
	var agents []*nsAgent
	for _, name := range []string{"h1", "h2", "h3"} {
		agents = append(agents, startHostAgent(t, n.MustAddHost(t, name), c.Endpoints, guardConfig, out, kv...))
	}
	for _, a := range agents {
		a.eventually(15*time.Second, a.h.Name+" sees h1, h2, h3 up", func() bool {
			return hostStates(a.hosts()) == "h1=up h2=up h3=up"
		})
	}
	return c, agents
}

// TestFleetRateAcrossHosts: three hosts (network namespaces) with a real
// 3-member etcd and the real binary, all triggering the same runbook on the
// same max+3 targets at once, under automation.fleet_rate max (3; the bench
// runs 20): exactly max act decisions and max tokens in the fleet, never a
// second run on a target (the fleet-wide lock and cooldown), every refusal
// audited on its host with its guard and reason.
func TestFleetRateAcrossHosts(t *testing.T) {
	n := netns.Require(t)
	c, agents := startGuardFleet(t, n)
	max, targets := fleetRateMax(t), fleetTargets(t)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(targets)*len(agents))
	for _, target := range targets {
		for _, a := range agents {
			wg.Add(1)
			go func() { defer wg.Done(); errs <- a.postAlert(target) }()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every host decides on every target at least once.
	for _, a := range agents {
		a.eventually(30*time.Second, a.h.Name+" decided on every target", func() bool {
			seen := map[string]bool{}
			for _, rec := range a.records("remedy.decision") {
				seen[rec.Target] = true
			}
			return len(seen) >= len(targets)
		})
	}
	r := checkSingletonAndRate(t, c, agents, max, 30*time.Second)
	t.Logf("3 hosts, %d targets each, fleet_rate %d/h: %s; tokens %v; after %v",
		len(targets), max, r, fleetTokens(t, c), time.Since(start).Round(10*time.Millisecond))
}

// TestFleetStormBrake: three hosts (network namespaces) with a real
// 3-member etcd and the real binary; h2 and h3 are cut from everything
// (their links down). "Unhealthy" is docs/fleet.md's: suspect or lost
// (the lease expired). h1, the survivor, engages the storm brake within one
// lease TTL (+ etcd's 500 ms expiry sweep) of the cut, audits it, escalates
// it to a webhook the test runs, and refuses a new remediation with guard
// fleet_storm; when the links return the brake is released (audited, the
// escalation resolved) and automation acts again.
func TestFleetStormBrake(t *testing.T) {
	n := netns.Require(t)
	// The webhook receiver listens on the bridge's address in the root
	// namespace, which every host reaches.
	ln, err := net.Listen("tcp", n.Gate.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var hooks []string
	hook := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hooks = append(hooks, string(b))
		mu.Unlock()
	}))
	hook.Listener.Close()
	hook.Listener = ln
	hook.Start()
	defer hook.Close()
	hooked := func(kind string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range hooks {
			if strings.Contains(b, "storm brake engaged") && strings.Contains(b, `"kind":"`+kind+`"`) {
				return true
			}
		}
		return false
	}
	_, agents := startGuardFleet(t, n, "{RECEIVERS}", "receivers:\n  hook: {webhook: {url: \""+hook.URL+"\"}}\n",
		"{ESCALATE}", ", escalate: {receiver: hook}", "{MAX}", "100")
	h1, h2, h3 := agents[0], agents[1], agents[2]
	const leaseTTL = 2 * time.Second

	if err := h2.h.Partition(); err != nil {
		t.Fatal(err)
	}
	if err := h3.h.Partition(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	var engaged audit.Record
	h1.eventually(15*time.Second, "h1 audits the storm brake engaged", func() bool {
		recs := h1.records("fleet.storm_brake.engaged")
		if len(recs) == 0 {
			return false
		}
		engaged = recs[0]
		return true
	})
	took := engaged.Time.Sub(cut)
	t.Logf("h2 and h3 cut: h1 engaged the storm brake %v after the cut (lease_ttl %v): %s %v",
		took.Round(10*time.Millisecond), leaseTTL, engaged.Reason, engaged.Fields)
	// The hosts' last renewals were at most lease_ttl/3 before the cut, so
	// their leases expire at most lease_ttl after it; etcd sweeps expired
	// leases every 500 ms. 1 s of slack for a loaded CI machine.
	if bound := leaseTTL + 1500*time.Millisecond; took > bound {
		t.Errorf("storm brake engaged %v after the cut, want within one lease TTL + etcd's sweep (≤ %v)", took, bound)
	}
	if engaged.Fields["unhealthy"] != "2" || engaged.Fields["hosts"] != "3" {
		t.Errorf("engaged with fields %v, want 2 unhealthy of 3 hosts", engaged.Fields)
	}
	if st := h1.hosts(); !st.StormBrake {
		t.Errorf("h1's /v1/fleet/hosts does not show the storm brake: %+v", st)
	}
	h1.eventually(10*time.Second, "the storm brake escalated to the webhook", func() bool { return hooked("trigger") })

	// Automation is paused: a remediation on h1 is refused with fleet_storm.
	if err := h1.postAlert("during-storm"); err != nil {
		t.Fatal(err)
	}
	var refused audit.Record
	h1.eventually(10*time.Second, "h1 refuses a remediation with fleet_storm", func() bool {
		for _, rec := range h1.records("remedy.decision") {
			if rec.Target == "during-storm" {
				refused = rec
				return true
			}
		}
		return false
	})
	if refused.Fields["outcome"] != "blocked" || refused.Fields["guard"] != "fleet_storm" || refused.Reason == "" {
		t.Fatalf("decision during the storm: outcome %q guard %q reason %q, want blocked by fleet_storm",
			refused.Fields["outcome"], refused.Fields["guard"], refused.Reason)
	}
	t.Logf("during the storm: %s", refused.Reason)
	if _, err := os.Stat(filepath.Join(h1.out, "run-during-storm")); err == nil {
		t.Fatal("the runbook ran under the storm brake")
	}

	// The hosts recover: the brake is released, audited and resolved.
	if err := h2.h.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := h3.h.Heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	h1.eventually(20*time.Second, "h1 audits the storm brake released", func() bool {
		return len(h1.records("fleet.storm_brake.released")) > 0
	})
	t.Logf("links back: storm brake released after %v", time.Since(healed).Round(10*time.Millisecond))
	h1.eventually(10*time.Second, "the escalation resolved at the webhook", func() bool { return hooked("resolve") })
	if err := h1.postAlert("after-storm"); err != nil {
		t.Fatal(err)
	}
	h1.eventually(10*time.Second, "h1 acts again after the brake", func() bool {
		_, err := os.Stat(filepath.Join(h1.out, "run-after-storm"))
		return err == nil
	})
}
