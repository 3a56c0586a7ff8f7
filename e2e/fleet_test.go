package e2e_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/fleet"
)

// fleetConfig is a medic config that joins fleet prod as host {HOST}
// through the etcd at {ETCD}, with a 2s lease and a 3s grace.
const fleetConfig = `
name: {HOST}
data_dir: %[4]s/data
api: {listen: 127.0.0.1:%[2]d}
etcd: {endpoints: [{ETCD}]}
fleet: {name: prod, address: 127.0.0.{N}, capacity: 4, lease_ttl: 2s, grace: 3s}
# %[1]s %[3]d
`

func startFleetAgent(t *testing.T, endpoint, host string, n int) *agent {
	t.Helper()
	return startAgent(t, strings.NewReplacer("{HOST}", host, "{ETCD}", endpoint, "{N}", fmt.Sprint(n)).Replace(fleetConfig))
}

func hostsOf(t *testing.T, a *agent) fleet.Status {
	t.Helper()
	out, err := a.medic("hosts", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st fleet.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("hosts --json is not one JSON document: %v\n%s", err, out)
	}
	return st
}

func hostStates(st fleet.Status) string {
	var s []string
	for _, m := range st.Hosts {
		s = append(s, m.Host+"="+m.State.String())
	}
	return strings.Join(s, " ")
}

// TestFleetMembership runs two real agents in one fleet: each lists both
// hosts up; when one stops (SIGTERM: it revokes its lease) the other sees it
// suspect at once and lost after the 3s grace, audits both, and lists it
// again as up when it returns.
func TestFleetMembership(t *testing.T) {
	srv := etcdtest.Start(t)
	a := startFleetAgent(t, srv.Endpoint, "h1", 1)
	b := startFleetAgent(t, srv.Endpoint, "h2", 2)
	a.eventually(10*time.Second, "h1 lists h1 and h2 up", func() bool { return hostStates(hostsOf(t, a)) == "h1=up h2=up" })
	out, err := a.medic("hosts")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fleet prod: this host h1 (joined with lease", "HOST", "h2    up", "127.0.0.2", "this host"} {
		if !strings.Contains(out, want) {
			t.Fatalf("medic hosts lacks %q:\n%s", want, out)
		}
	}
	b.stop()
	a.eventually(2*time.Second, "h1 sees h2 suspect", func() bool { return hostStates(hostsOf(t, a)) == "h1=up h2=suspect" })
	a.eventually(5*time.Second, "h1 sees h2 lost", func() bool { return hostStates(hostsOf(t, a)) == "h1=up h2=lost" })
	if m := hostsOf(t, a).Hosts[1]; m.Since.Sub(m.GoneAt) < 3*time.Second {
		t.Fatalf("h2 lost %v after its key went, before the 3s grace", m.Since.Sub(m.GoneAt))
	}
	if _, body := get("http://" + a.addr + "/metrics"); !strings.Contains(body, `medic_fleet_hosts{state="lost"} 1`) ||
		!strings.Contains(body, `medic_fleet_hosts{state="up"} 1`) {
		t.Fatalf("metrics lack the fleet's hosts by state:\n%s", body)
	}
	code, body := get("http://" + a.addr + "/v1/audit?target=fleet/prod/h2")
	if code != 200 || !strings.Contains(body, "fleet.host.suspect") || !strings.Contains(body, "fleet.host.lost") {
		t.Fatalf("audit of h2: HTTP %d %s", code, body)
	}
	b = b.restart()
	a.eventually(10*time.Second, "h1 sees h2 return", func() bool { return hostStates(hostsOf(t, a)) == "h1=up h2=up" })
	if _, body := get("http://" + a.addr + "/v1/audit?target=fleet/prod/h2"); !strings.Contains(body, "fleet.host.returned") {
		t.Fatalf("h2's return is not audited: %s", body)
	}
}

// TestHostsWithoutFleet: medic hosts on an agent in no fleet says so and fails.
func TestHostsWithoutFleet(t *testing.T) {
	a := startAgent(t, "data_dir: %[4]s/data\napi: {listen: 127.0.0.1:%[2]d}\n# %[1]s %[3]d\n")
	out, err := a.medic("hosts")
	if err == nil || !strings.Contains(err.Error(), "in no fleet") {
		t.Fatalf("medic hosts without a fleet: %v\n%s", err, out)
	}
}
