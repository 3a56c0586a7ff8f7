package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/placement"
	"github.com/medic-dev/medic/internal/testutil/netns"
)

// hostConfig is a medic config for one host of fleet prod, run in its own
// network namespace: every host uses the same ports (API 7070, proxy 8000,
// instances from 9000), each on its own address.
const hostConfig = `
name: {HOST}
data_dir: {DIR}/data
api: {listen: "{ADDR}:7070", tokens_file: tokens.yaml}
etcd: {endpoints: [{ETCD}]}
fleet: {name: prod, address: {ADDR}, lease_ttl: 2s, grace: 2s}
services:
  web:
    command: [{BIN}, demoapp, --listen, "0.0.0.0:${PORT}"]
    port: 9000
    stop: {grace: 1s}
    fleet: {instances: 6, spread: host}
    drills: {allow: true}
    proxy: {listen: "0.0.0.0:8000", try_timeout: 300ms}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 300ms, timeout: 200ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 200ms, timeout: 150ms, failure_threshold: 1}
` + fleetRunbook

// fleetRunbook is the singleton remediation every host of a fleet test
// runs: alert Ping with an instance label triggers runbook touch on that
// target (the same target name on every host: one fleet-wide lock), whose
// one step appends this host's name to {OUT}/run-<target> (a directory all
// the namespaces share); a fleet-wide cooldown of 1h keeps the target from
// a second run, and automation.fleet_rate allows {MAX} runs per hour in the
// fleet. The host's own rates (1000) never bind.
const fleetRunbook = `
conditions:
  ping: {alert: {match: {alertname: Ping}}}
runbooks:
  touch:
    trigger: {condition: ping}
    target: "${labels.instance}"
    steps: [{action: exec, command: [sh, -c, "echo {HOST} >> {OUT}/run-${labels.instance}; sleep 0.3"]}]
    trust: act
    cooldown: 1h
    rate: {max: 1000, per: 1h}
automation: {rate: {max: 1000, per: 1h}, fleet_rate: {max: {MAX}, per: 1h}{ESCALATE}}
`

// nsAgent is a `medic run` in a host's namespace.
type nsAgent struct {
	t      *testing.T
	h      *netns.Host
	dir    string
	out    string // the directory the runbook touch writes to (shared by the hosts)
	token  string
	stderr *lockedBuffer
	proc   *netns.Proc
}

// startHostAgent starts a medic on h with the config tmpl, in which {HOST},
// {DIR}, {ADDR}, {ETCD} and {BIN} are this agent's, {OUT} is out, {MAX}
// is the fleet rate (fleetRateMax) and kv holds more placeholders and their
// values ({ESCALATE} is empty unless given).
func startHostAgent(t *testing.T, h *netns.Host, etcdEndpoints []string, tmpl, out string, kv ...string) *nsAgent {
	t.Helper()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	tok, err := runMedic("token", "add", "test", "--role", "admin", "-f", tokens)
	if err != nil {
		t.Fatal(err)
	}
	kv = append(kv, "{HOST}", h.Name, "{DIR}", dir, "{ADDR}", h.Addr.String(),
		"{ETCD}", strings.Join(etcdEndpoints, ", "), "{BIN}", fmt.Sprintf("%q", medicBin),
		"{OUT}", out, "{MAX}", fmt.Sprint(fleetRateMax(t)), "{ESCALATE}", "")
	cfg := strings.NewReplacer(kv...).Replace(tmpl)
	if err := os.WriteFile(filepath.Join(dir, "medic.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &nsAgent{t: t, h: h, dir: dir, out: out, token: strings.TrimSpace(lastLine(tok))}
	a.launch()
	return a
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func (a *nsAgent) launch() {
	a.t.Helper()
	a.stderr = &lockedBuffer{}
	cmd := a.h.Command(medicBin, "run", "-c", filepath.Join(a.dir, "medic.yaml"))
	cmd.Stderr = a.stderr
	p, err := a.h.Start(cmd)
	if err != nil {
		a.t.Fatal(err)
	}
	a.proc = p
	a.t.Cleanup(func() { p.Stop(30 * time.Second) })
	a.eventually(15*time.Second, a.h.Name+"'s API up", func() bool {
		code, _ := getWithToken(a.url("/healthz"), a.token)
		return code == 200
	})
}

func (a *nsAgent) url(path string) string { return "http://" + a.h.Addr.String() + ":7070" + path }

func (a *nsAgent) eventually(within time.Duration, what string, cond func() bool) {
	a.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			a.t.Fatalf("after %v: %s\n%s's stderr:\n%s", within, what, a.h.Name, tail(a.stderr.String(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready is the number of ready instances of web on this host; -1 when the
// agent does not answer.
func (a *nsAgent) ready() int {
	code, body := getWithToken(a.url("/v1/status"), a.token)
	if code != 200 {
		return -1
	}
	var doc api.StatusDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return -1
	}
	for _, s := range doc.Services {
		if s.Name == "web" {
			n := 0
			for _, in := range s.Instances {
				if in.Ready {
					n++
				}
			}
			return n
		}
	}
	return -1
}

// desired is web's desired count on this host; -1 when the agent does not answer.
func desired(a *nsAgent) int {
	code, body := getWithToken(a.url("/v1/status"), a.token)
	if code != 200 {
		return -1
	}
	var doc api.StatusDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return -1
	}
	for _, s := range doc.Services {
		if s.Name == "web" {
			return s.Desired
		}
	}
	return -1
}

// assignment reads web's placement from etcd.
func assignment(t *testing.T, c *netns.Cluster) placement.Record {
	t.Helper()
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, placement.Key("/medic", "prod", "web"))
	if err != nil || len(r.Kvs) == 0 {
		return placement.Record{}
	}
	var rec placement.Record
	_ = json.Unmarshal(r.Kvs[0].Value, &rec)
	return rec
}

// fleetRate is the GET rate of the fleet tests: 100/s, or
// MEDIC_FLEET_RATE (bench/fleet runs them at 200/s).
func fleetRate(t *testing.T) int {
	v := os.Getenv("MEDIC_FLEET_RATE")
	if v == "" {
		return 100
	}
	var r int
	if _, err := fmt.Sscan(v, &r); err != nil || r < 1 || r > 2000 {
		t.Fatalf("MEDIC_FLEET_RATE=%q: want a rate from 1 to 2000 per second", v)
	}
	return r
}

// load sends GETs at about rate per second, round robin over the proxies,
// until stop is closed; it counts requests and failures (not 200).
type loadResult struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	firstErrs    []string
}

func runLoad(stop <-chan struct{}, rate int, proxies []string, res *loadResult) *sync.WaitGroup {
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 3 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer tick.Stop()
		for i := 0; i < rate*600; i++ { // bounded: 10 minutes at most
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			url := "http://" + proxies[i%len(proxies)] + "/"
			wg.Add(1)
			go func() {
				defer wg.Done()
				res.sent.Add(1)
				resp, err := client.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					res.failed.Add(1)
					res.mu.Lock()
					if len(res.firstErrs) < 5 {
						if err != nil {
							res.firstErrs = append(res.firstErrs, err.Error())
						} else {
							res.firstErrs = append(res.firstErrs, resp.Status)
						}
					}
					res.mu.Unlock()
				}
			}()
		}
	}()
	return &wg
}

// startFleet3 starts a 3-member etcd and agents on hosts h1, h2, h3, and
// waits until web is placed 2 on each and all 6 are ready.
func startFleet3(t *testing.T) (*netns.Cluster, []*nsAgent) {
	t.Helper()
	n := netns.Require(t)
	c := n.MustStartCluster(t, 3)
	out := t.TempDir()
	var agents []*nsAgent
	for _, name := range []string{"h1", "h2", "h3"} {
		agents = append(agents, startHostAgent(t, n.MustAddHost(t, name), c.Endpoints, hostConfig, out))
	}
	waitPlaced(t, c, agents, "h1=2 h2=2 h3=2", []int{2, 2, 2}, 30*time.Second)
	return c, agents
}

// waitPlaced waits until the assignment is want and each agent has its
// ready count (-1: not asked).
func waitPlaced(t *testing.T, c *netns.Cluster, agents []*nsAgent, want string, ready []int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		rec := assignment(t, c)
		ok := rec.Assign.String() == want
		var got []int
		for i, a := range agents {
			if ready[i] < 0 {
				got = append(got, -1)
				continue
			}
			r := a.ready()
			got = append(got, r)
			ok = ok && r == ready[i]
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("after %v: placement %q (%s), ready %v; want %q and %v\nh1 stderr:\n%s",
				within, rec.Assign, rec.Why, got, want, ready, tail(agents[0].stderr.String(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFleetHostKill: three hosts (network namespaces) with a real 3-member
// etcd, web placed 6 instances spread by host. Under GET load through the
// proxies of h1 and h2, h3 is killed (every process of it by PID, its link
// down): h1 and h2 take over its share (3 each) within lease_ttl + grace +
// start + readiness + slack, with no client error; when h3 returns the
// fleet rebalances to 2 each, one instance at a time, with no client error.
func TestFleetHostKill(t *testing.T) {
	c, agents := startFleet3(t)
	h1, h2, h3 := agents[0], agents[1], agents[2]
	// Each proxy also knows the other hosts' instances (remote backends).
	remote := func(a *nsAgent) int {
		_, body := getWithToken(a.url("/v1/status"), a.token)
		var doc api.StatusDoc
		if err := json.Unmarshal([]byte(body), &doc); err != nil || len(doc.Proxies) != 1 {
			return -1
		}
		n := 0
		for _, in := range doc.Proxies[0].Instances {
			if in.Remote && in.InRotation {
				n++
			}
		}
		return n
	}
	h1.eventually(5*time.Second, "h1's proxy lists h2's and h3's 4 instances as remote, in rotation", func() bool { return remote(h1) == 4 })
	if code, body := get(h1.url("/v1/fleet/services/web/health")); code != 200 || !strings.Contains(body, `"local_in_rotation": 2`) {
		t.Fatalf("h1's health for web: HTTP %d %s", code, body)
	}

	stop := make(chan struct{})
	var res loadResult
	wg := runLoad(stop, fleetRate(t), []string{h1.h.Addr.String() + ":8000", h2.h.Addr.String() + ":8000"}, &res)
	time.Sleep(2 * time.Second)
	killed := time.Now()
	if err := h3.h.Kill(); err != nil {
		t.Fatal(err)
	}
	var restored time.Duration
	for {
		rec := assignment(t, c)
		if rec.Assign.String() == "h1=3 h2=3" && h1.ready() == 3 && h2.ready() == 3 {
			restored = time.Since(killed)
			break
		}
		if time.Since(killed) > 40*time.Second {
			t.Fatalf("6 ready not restored on h1 and h2 40s after h3's death: placement %q (%s), ready %d %d",
				rec.Assign, rec.Why, h1.ready(), h2.ready())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("h3 killed: 6 ready on h1+h2 after %v (lease_ttl 2s + grace 2s + start + readiness)", restored.Round(10*time.Millisecond))
	// lease_ttl + grace + start and readiness (~0.5s) + 1s is 5.5s; the
	// bound leaves room for a loaded CI machine.
	if restored > 15*time.Second {
		t.Errorf("capacity restored after %v, want ≤ 15s", restored)
	}
	code, body := getWithToken(h1.url("/v1/audit?target=web"), h1.token)
	if code != 200 || !strings.Contains(body, "fleet.placement") || !strings.Contains(body, "lost h3") {
		t.Errorf("the take-over is not audited on h1: HTTP %d %s", code, tail(body, 2000))
	}

	// h3 returns: a new agent on its host; the fleet rebalances.
	if err := h3.h.Revive(); err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	h3.launch()
	for {
		rec := assignment(t, c)
		if rec.Assign.String() == "h1=2 h2=2 h3=2" && h1.ready() == 2 && h2.ready() == 2 && h3.ready() == 2 {
			break
		}
		if time.Since(returned) > 60*time.Second {
			t.Fatalf("no rebalance 60s after h3 returned: placement %q (%s), ready %d %d %d",
				rec.Assign, rec.Why, h1.ready(), h2.ready(), h3.ready())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("h3 returned: rebalanced to 2 each after %v", time.Since(returned).Round(10*time.Millisecond))
	// One instance at a time: the coordinator (h1) audited each step.
	_, body = getWithToken(h1.url("/v1/audit?target=web"), h1.token)
	for _, step := range []string{"one more on h3 (h1=3 h2=3 h3=1)", "one fewer on h1 (h1=2 h2=3 h3=1)",
		"one more on h3 (h1=2 h2=3 h3=2)", "one fewer on h2 (h1=2 h2=2 h3=2)"} {
		if !strings.Contains(body, step) {
			t.Errorf("the rebalance step %q is not in h1's audit:\n%s", step, tail(body, 3000))
		}
	}
	// A reload that changes web on h1 rolls its instances at h1's share
	// (2), not at the file's instances (1, the starting count).
	cfgPath := filepath.Join(h1.dir, "medic.yaml")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "    port: 9000\n", "    port: 9000\n    env: {RELOADED: \"1\"}\n", 1))
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(h1.proc.Cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	h1.eventually(20*time.Second, "h1 reloaded web at its share", func() bool {
		_, body := getWithToken(h1.url("/v1/audit?target=config"), h1.token)
		return strings.Contains(body, "reload applied") && h1.ready() == 2 && desired(h1) == 2
	})
	for range 10 {
		if d := desired(h1); d != 2 {
			t.Fatalf("after a reload h1 wants %d instances of web, want its share 2", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("load: %d GETs through h1 and h2, %d failed %v", res.sent.Load(), res.failed.Load(), res.firstErrs)
	if res.failed.Load() != 0 {
		t.Errorf("%d of %d GETs failed through the surviving proxies: %v", res.failed.Load(), res.sent.Load(), res.firstErrs)
	}
}

// TestFleetHostPartition: h3 is cut from etcd and from the other hosts
// (its link down) for a while, under GET load through h1 and h2. h1 and h2
// take over its share (3 each) with no client error; h3 never writes the
// assignment while cut off, and the assignment never holds more than
// instances + 1 (the surge); h3's own instances keep running (nothing stops
// an instance on a guess). When the link returns, h3 joins again, follows
// the new assignment and the fleet rebalances to 2 each with no error.
// Across the cut, every host is sent alerts for max+3 targets of the
// singleton runbook touch (fleetRunbook): never more than one run per
// target, and exactly automation.fleet_rate's max act decisions and tokens
// in the fleet (checkSingletonAndRate).
func TestFleetHostPartition(t *testing.T) {
	c, agents := startFleet3(t)
	h1, h2, h3 := agents[0], agents[1], agents[2]
	stop := make(chan struct{})
	var res loadResult
	wg := runLoad(stop, fleetRate(t), []string{h1.h.Addr.String() + ":8000", h2.h.Addr.String() + ":8000"}, &res)
	most := sampleInstances(stop, agents)
	// The singleton remediation under the partition: every host is sent an
	// alert for each target (max + 3 of them), one target every 200 ms from
	// 1 s before the cut (h3 only while it is reachable), so that h3 may
	// hold locks and tokens when its link goes down.
	var h3cut atomic.Bool
	alerted := make(chan struct{})
	go func() {
		defer close(alerted)
		var posts sync.WaitGroup
		for _, target := range fleetTargets(t) {
			for _, a := range agents {
				if a != h3 || !h3cut.Load() {
					posts.Add(1)
					// An error is a host cut meanwhile: its audit says what it decided.
					go func() { defer posts.Done(); _ = a.postAlert(target) }()
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		posts.Wait()
	}()
	time.Sleep(time.Second)
	h3cut.Store(true)
	if err := h3.h.Partition(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	t.Logf("h3 partitioned")
	took := waitPlaced(t, c, agents, "h1=3 h2=3", []int{3, 3, -1}, 30*time.Second)
	t.Logf("h3 partitioned: 6 ready on h1+h2 after %v", took.Round(10*time.Millisecond))
	// A while cut off: 2 s past the take-over, or until MEDIC_FLEET_CUT_FOR
	// after the cut (bench/fleet/partition.sh holds it 30 s).
	hold := 2 * time.Second
	if d, err := time.ParseDuration(os.Getenv("MEDIC_FLEET_CUT_FOR")); err == nil && d > time.Since(cut)+hold {
		hold = d - time.Since(cut)
	}
	time.Sleep(hold)
	if err := h3.h.Heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	took = waitPlaced(t, c, agents, "h1=2 h2=2 h3=2", []int{2, 2, 2}, 60*time.Second)
	t.Logf("h3 healed after %v cut off: rebalanced to 2 each after %v", healed.Sub(cut).Round(10*time.Millisecond), took.Round(10*time.Millisecond))
	<-alerted
	r := checkSingletonAndRate(t, c, agents, fleetRateMax(t), 30*time.Second)
	t.Logf("singleton remediation, fleet_rate %d/h, %d targets on every host: %s; tokens %v",
		fleetRateMax(t), len(fleetTargets(t)), r, fleetTokens(t, c))
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	// h3, cut from etcd and its peers past half the grace, stood down: the
	// fleet never ran more than instances + the surge of 1.
	if n := <-most; n > 7 {
		t.Errorf("%d instances of web ran at once across the hosts: above instances 6 + surge 1", n)
	} else {
		t.Logf("at most %d instances of web ran at once across the hosts (instances 6 + surge 1)", n)
	}
	_, body3 := getWithToken(h3.url("/v1/audit?kind=fleet.stood_down"), h3.token)
	if !strings.Contains(body3, "fleet.stood_down") {
		t.Errorf("h3 did not audit standing down:\n%s\nh3's stderr:\n%s", tail(body3, 2000), tail(h3.stderr.String(), 3000))
	}
	// The stand-down's end: what it stopped at once, how long it took and
	// how far before its deadline (lastSafe + grace − slack).
	var downs struct {
		Records []struct {
			Reason string            `json:"reason"`
			Fields map[string]string `json:"fields"`
		} `json:"records"`
	}
	if err := json.Unmarshal([]byte(body3), &downs); err == nil {
		for _, e := range downs.Records {
			if e.Fields["stopped"] != "" {
				t.Logf("h3: %s", e.Reason)
			}
		}
	}
	// Every assignment written meanwhile: by h1 (the coordinator; h3 was
	// cut off), never above 7 instances.
	_, body := getWithToken(h1.url("/v1/audit?target=web"), h1.token)
	var evs struct {
		Records []struct {
			Kind   string            `json:"kind"`
			Fields map[string]string `json:"fields"`
		} `json:"records"`
	}
	if err := json.Unmarshal([]byte(body), &evs); err != nil {
		t.Fatalf("h1's audit: %v\n%s", err, tail(body, 2000))
	}
	steps := 0
	for _, e := range evs.Records {
		if e.Kind != "fleet.placement" {
			continue
		}
		steps++
		total := 0
		for _, f := range strings.Fields(e.Fields["to"]) {
			var h string
			var k int
			fmt.Sscanf(strings.Replace(f, "=", " ", 1), "%s %d", &h, &k)
			total += k
		}
		if total > 7 {
			t.Errorf("an assignment of %d instances (%s): above instances + 1", total, e.Fields["to"])
		}
	}
	if steps < 3 {
		t.Errorf("h1 audited %d placement steps, want the first placement, the take-over and the rebalance:\n%s", steps, tail(body, 3000))
	}
	// h3 never writes the assignment from the cut on. (Before it, h3 may
	// have written the first one: with fleet.join_jitter the hosts join in
	// any order, and the first joined coordinates.)
	_, body3 = getWithToken(h3.url("/v1/audit?target=web"), h3.token)
	var evs3 struct {
		Records []struct {
			Time time.Time `json:"time"`
			Kind string    `json:"kind"`
		} `json:"records"`
	}
	if err := json.Unmarshal([]byte(body3), &evs3); err != nil {
		t.Fatalf("h3's audit: %v\n%s", err, tail(body3, 2000))
	}
	for _, e := range evs3.Records {
		if e.Kind == "fleet.placement" && !e.Time.Before(cut) {
			t.Errorf("h3 wrote an assignment %v after the cut:\n%s", e.Time.Sub(cut).Round(time.Millisecond), tail(body3, 2000))
		}
	}
	t.Logf("load: %d GETs through h1 and h2, %d failed %v", res.sent.Load(), res.failed.Load(), res.firstErrs)
	if res.failed.Load() != 0 {
		t.Errorf("%d of %d GETs failed through h1 and h2: %v", res.failed.Load(), res.sent.Load(), res.firstErrs)
	}
}

// sampleInstances counts the running instances of web (demoapp processes)
// in every host's namespace every 50 ms until stop is closed, and sends the
// largest total seen.
func sampleInstances(stop <-chan struct{}, agents []*nsAgent) <-chan int {
	out := make(chan int, 1)
	go func() {
		most := 0
		t0 := time.Now()
		for i := 0; i < 20*600; i++ { // bounded: 10 minutes at most
			select {
			case <-stop:
				out <- most
				return
			case <-time.After(50 * time.Millisecond):
			}
			n := 0
			var per []int
			for _, a := range agents {
				pids, _ := a.h.PIDs()
				k := 0
				for _, pid := range pids {
					b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
					if strings.Contains(string(b), "demoapp") {
						k++
					}
				}
				per = append(per, k)
				n += k
			}
			if n > most { // no t.Logf here: this goroutine may outlive a test that failed early
				fmt.Fprintf(os.Stderr, "%v: %d instances of web across the hosts %v\n", time.Since(t0).Round(10*time.Millisecond), n, per)
			}
			most = max(most, n)
		}
		out <- most
	}()
	return out
}
