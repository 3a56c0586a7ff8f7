package e2e_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd/etcdtest"
)

// fleetRemedyConfig joins fleet prod as {HOST} and runs runbook touch (one
// file in {OUT} per alert's instance) under a fleet-wide rate of 3 per hour;
// the host's own rate (100) never binds.
const fleetRemedyConfig = `
name: {HOST}
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
etcd: {endpoints: [{ETCD}]}
fleet: {name: prod, address: 127.0.0.{N}, lease_ttl: 2s, grace: 3s}
conditions:
  ping: {alert: {match: {alertname: Ping}}}
runbooks:
  touch:
    trigger: {condition: ping}
    target: "${labels.instance}"
    steps: [{action: exec, command: [touch, "{OUT}/acted-${labels.instance}"]}]
    trust: act
automation: {rate: {max: 100, per: 1h}, fleet_rate: {max: 3, per: 1h}}
services:
  idle:
    command: [sleep, "300"]
# %[1]s %[3]d
`

// TestFleetRateAcrossAgents: two real agents in one fleet, each sent 4
// alerts for targets of its own, with automation.fleet_rate 3: exactly 3
// actions in the fleet, the 5 other decisions audited as blocked by
// fleet_rate.
func TestFleetRateAcrossAgents(t *testing.T) {
	srv := etcdtest.Start(t)
	out := t.TempDir()
	var agents []*agent
	for i, host := range []string{"h1", "h2"} {
		dir := t.TempDir()
		tok, err := runMedic("token", "add", "am", "--role", "operator", "-f", dir+"/tokens.yaml")
		if err != nil {
			t.Fatal(err)
		}
		cfg := strings.NewReplacer("{HOST}", host, "{ETCD}", srv.Endpoint, "{N}", fmt.Sprint(i+1), "{OUT}", out).Replace(fleetRemedyConfig)
		a := startAgentIn(t, dir, cfg)
		a.token = strings.TrimSpace(tok)
		agents = append(agents, a)
	}
	for _, a := range agents {
		a.eventually(10*time.Second, "both hosts up", func() bool { return hostStates(hostsOf(t, a)) == "h1=up h2=up" })
	}
	for i := 1; i <= 4; i++ {
		for hi, a := range agents {
			body := fmt.Sprintf(`{"labels": {"alertname": "Ping", "instance": "h%d-%d"}, "status": "firing"}`, hi+1, i)
			req, _ := http.NewRequest("POST", "http://"+a.addr+"/v1/alerts", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+a.token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("alert to h%d: HTTP %d", hi+1, resp.StatusCode)
			}
		}
	}
	var acted, blocked int
	count := func() {
		acted, blocked = 0, 0
		for _, a := range agents {
			for _, r := range a.auditRecords("remedy.decision") {
				switch {
				case fieldOf(r, "outcome") == "act":
					acted++
				case fieldOf(r, "guard") == "fleet_rate":
					blocked++
				}
			}
		}
	}
	agents[0].eventually(30*time.Second, "8 decisions", func() bool { count(); return acted+blocked >= 8 })
	var files []string
	agents[0].eventually(30*time.Second, "the actions done", func() bool {
		files, _ = filepath.Glob(filepath.Join(out, "acted-*"))
		return len(files) >= 3
	})
	time.Sleep(500 * time.Millisecond) // a 4th action would show by now
	files, _ = filepath.Glob(filepath.Join(out, "acted-*"))
	count()
	if acted != 3 || blocked != 5 || len(files) != 3 {
		t.Fatalf("acted %d, blocked by fleet_rate %d, files %v; want 3, 5, 3 files", acted, blocked, files)
	}
}
