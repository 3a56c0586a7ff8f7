package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/testutil/netns"
)

// memberScripts writes the stop and start commands of etcd member m for
// its host's fleet.etcd_member: stop sends SIGTERM to the PID in the
// member's pid file (the one the test started, then the one start wrote)
// and waits until it is gone (SIGKILL after 10 s); start runs etcd again on
// its data in the member's namespace, detached, and writes its PID. The
// test's cleanup stops whichever PID the file holds.
func memberScripts(t *testing.T, m *netns.Member) (stop, start string) {
	t.Helper()
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "pid")
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(m.PID())), 0o644); err != nil {
		t.Fatal(err)
	}
	stop, start = filepath.Join(dir, "stop.sh"), filepath.Join(dir, "start.sh")
	gone := `[ ! -e /proc/$pid ] || grep -q '^[0-9]* ([^)]*) Z' /proc/$pid/stat`
	sig := "TERM"
	if os.Getenv("MEDIC_ETCD_DRILL_SIGNAL") == "KILL" { // a member that dies at once (no leadership handed over)
		sig = "KILL"
	}
	stopSh := fmt.Sprintf(`pid=$(cat %s)
kill -%s "$pid" || exit 1
i=0
until %s; do
  i=$((i+1)); if [ $i -gt 100 ]; then kill -KILL "$pid"; exit 0; fi
  sleep 0.1
done
`, pidfile, sig, gone)
	var q []string
	for _, a := range append([]string{"ip", "netns", "exec", m.Host.NS}, m.Argv()...) {
		q = append(q, "'"+a+"'")
	}
	startSh := fmt.Sprintf("%s >>%s 2>&1 </dev/null &\necho $! > %s\n", strings.Join(q, " "), m.Log(), pidfile)
	for f, body := range map[string]string{stop: stopSh, start: startSh} {
		if err := os.WriteFile(f, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		b, _ := os.ReadFile(pidfile)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid != m.PID() {
			_ = syscall.Kill(pid, syscall.SIGKILL) // a member start.sh started; the test's own stops with the Net
		}
	})
	return stop, start
}

// etcdLeader is the name of c's leader member.
func etcdLeader(t *testing.T, c *netns.Cluster) string {
	t.Helper()
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, m := range c.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := cli.Status(ctx, m.Endpoint())
		cancel()
		if err == nil && st.Header.MemberId == st.Leader {
			return m.Name
		}
	}
	t.Fatal("no etcd member says it leads")
	return ""
}

// TestFleetEtcdMemberLossDrill: three hosts each declare the etcd member
// beside them (fleet.etcd_member, its stop and start the scripts above).
// `medic drill etcd-member-loss` sent to h1, with the drill's own load
// through h1's proxy: a follower member is stopped by its host for 6 s;
// every agent sees it unhealthy and reports it through the other members
// (the recovery), no host is suspect, no lease is lost, no client error;
// the member is started again and every agent sees it healthy. A member
// that does not exist is refused.
func TestFleetEtcdMemberLossDrill(t *testing.T) {
	n := netns.Require(t)
	c := n.MustStartCluster(t, 3)
	out := t.TempDir()
	tmpl := strings.Replace(hostConfig, "fleet: {name: prod, address: {ADDR}, lease_ttl: 2s, grace: 2s}",
		"fleet: {name: prod, address: {ADDR}, lease_ttl: 2s, grace: 2s, join_jitter: 0s,\n"+
			"  etcd_member: {name: {MEMBER}, stop: [/bin/sh, {STOP}], start: [/bin/sh, {START}], timeout: 15s}}", 1)
	if tmpl == hostConfig {
		t.Fatal("hostConfig has no fleet line to extend")
	}
	var agents []*nsAgent
	for i, name := range []string{"h1", "h2", "h3"} {
		m := c.Members[i]
		stop, start := memberScripts(t, m)
		agents = append(agents, startHostAgent(t, n.MustAddHost(t, name), c.Endpoints, tmpl, out,
			"{MEMBER}", m.Name, "{STOP}", stop, "{START}", start))
	}
	waitPlaced(t, c, agents, "h1=2 h2=2 h3=2", []int{2, 2, 2}, 30*time.Second)
	h1 := agents[0]
	if _, stderr, err := h1.medicCLI("drill", "etcd-member-loss", "--member", "e9", "--json"); err == nil || !strings.Contains(stderr, "etcd has no member e9") {
		t.Fatalf("etcd-member-loss of e9: err %v, stderr %s", err, stderr)
	}

	args := []string{"drill", "etcd-member-loss", "--service", "web", "--load", strconv.Itoa(fleetRate(t)), "--duration", "6s", "--json"}
	// MEDIC_ETCD_DRILL_LEADER=1 stops the leader instead (an election too).
	if os.Getenv("MEDIC_ETCD_DRILL_LEADER") == "1" {
		args = append(args, "--member", etcdLeader(t, c))
	}
	start := time.Now()
	stdout, stderr, err := h1.medicCLI(args...)
	var res drill.Result
	if jerr := json.Unmarshal([]byte(stdout), &res); jerr != nil {
		t.Fatalf("drill: %v (%v)\nstdout %s\nstderr %s\nh1 stderr:\n%s", err, jerr, stdout, stderr, tail(h1.stderr.String(), 3000))
	}
	t.Logf("etcd-member-loss drill in %v: %s; stopped %s; figures %v", time.Since(start).Round(100*time.Millisecond), res.Summary, res.Subject.Member, res.Figures)
	if !res.Passed {
		t.Fatalf("etcd-member-loss drill failed: %v\n%s\nsteps %+v\nh1 stderr:\n%s", res.Reasons, res.Summary, res.Steps, tail(h1.stderr.String(), 3000))
	}
	member := res.Subject.Member
	var runner *nsAgent
	for i, m := range c.Members {
		if m.Name == member {
			runner = agents[i]
		}
	}
	if runner == nil {
		t.Fatalf("the drill stopped %q, not a member of the cluster (subject %+v)", member, res.Subject)
	}
	if res.Detected == nil || res.Detected.Kind != "fleet.etcd.member_unhealthy" || res.TTD == nil || *res.TTD > 3 {
		t.Errorf("detected by %+v after %v, want h1's fleet.etcd.member_unhealthy within 3s", res.Detected, res.TTD)
	}
	if res.Recovered == nil || res.Recovered.Kind != "fleet.etcd.member_loss_absorbed" {
		t.Errorf("recovered by %+v, want fleet.etcd.member_loss_absorbed", res.Recovered)
	}
	for _, f := range []string{"noticed_all_seconds", "returned_seconds", "members"} {
		if _, ok := res.Figures[f]; !ok {
			t.Errorf("figure %s missing: %v", f, res.Figures)
		}
	}
	if res.Requests < 300 || res.ClientErrors != 0 {
		t.Errorf("%d of %d requests through h1's proxy failed, want 0 of at least 300", res.ClientErrors, res.Requests)
	}
	// Every agent saw the member go and come back, and none saw a host
	// suspect, stood down or remediated.
	for _, a := range agents {
		code, body := getWithToken(a.url("/v1/audit?target=etcd/"+member), a.token)
		if code != 200 || !strings.Contains(body, "fleet.etcd.member_unhealthy") || !strings.Contains(body, "fleet.etcd.member_healthy") {
			t.Errorf("%s's audit lacks the member's loss or return: HTTP %d %s", a.h.Name, code, tail(body, 1500))
		}
		for _, kind := range []string{"fleet.host.suspect", "fleet.stood_down", "fleet.storm_brake.engaged", "remedy.step.start"} {
			if _, body := getWithToken(a.url("/v1/audit?kind="+kind), a.token); strings.Contains(body, `"`+kind+`"`) {
				t.Errorf("%s recorded %s during the member's loss:\n%s", a.h.Name, kind, tail(body, 1500))
			}
		}
	}
	_, body := getWithToken(runner.url("/v1/audit?target=etcd/"+member), runner.token)
	if !strings.Contains(body, "fleet.etcd.member_stopped") || !strings.Contains(body, "fleet.etcd.member_started") {
		t.Errorf("%s (which runs %s) did not audit its stop and start:\n%s", runner.h.Name, member, tail(body, 2000))
	}
	// The cluster is whole again: every member answers.
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, ep := range c.Endpoints {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := cli.Status(ctx, ep)
		cancel()
		if err != nil {
			t.Errorf("etcd member at %s after the drill: %v", ep, err)
		}
	}
}
