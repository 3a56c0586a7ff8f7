package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// drillDB runs `medic drill SCENARIO --service pg --json` against node n
// and decodes the result; a drill that did not pass fails the test with its
// reasons and timeline.
func (n *dbNode) drill(scenario string) drill.Result {
	n.t.Helper()
	cmd := exec.Command(medicBin, "drill", scenario, "--service", "pg", "--load", "100", "--json", "--addr", n.api, "--token", n.token)
	out, err := cmd.Output()
	var res drill.Result
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		n.t.Fatalf("medic drill %s on %s: not one JSON document (%v): %v\n%s\nagent stderr:\n%s", scenario, n.name, jerr, err, out, tail(n.stderr.String(), 3000))
	}
	w := res.Writes
	if w == nil {
		n.t.Fatalf("%s: no write figures in the result: %s", scenario, out)
	}
	rto := -1.0
	if w.RTO != nil {
		rto = *w.RTO
	}
	n.t.Logf("%s on %s: %s; writes acked %d, lost %d, RTO %.3f s; steps %+v", scenario, n.name, res.Summary, w.Acked, w.Lost, rto, res.Steps)
	if !res.Passed || err != nil {
		var tl []string
		for _, o := range res.Timeline {
			tl = append(tl, o.Time.Format("15:04:05.000")+" "+o.Kind+" "+o.Target+" "+o.Reason)
		}
		n.t.Fatalf("%s did not pass (%v): %v\ntimeline:\n%s\nagent stderr:\n%s", scenario, err, res.Reasons, strings.Join(tl, "\n"), tail(n.stderr.String(), 3000))
	}
	if w.Acked < 100 || w.Lost != 0 {
		n.t.Fatalf("%s: %d writes acknowledged, %d lost: want a load and no loss in sync mode", scenario, w.Acked, w.Lost)
	}
	return res
}

// TestDBDrills runs the database drills against a real two-member sync
// cluster, each under the drill's own write load (100 single-row
// transactions/s through the members' primary listeners), and checks their
// verdicts: a switchover within 1 s of outage, the primary cut from etcd
// (connections refused) and blackholed (a custom scenario: nothing through,
// no error), the primary's postgres killed, and the primary's host lost (its
// agent and postgres SIGKILLed by the drill running on the replica's agent),
// with no acknowledged write lost in any. Promotions and fences reach a
// webhook; a reload leaves the running members' settings alone and says so.
func TestDBDrills(t *testing.T) {
	pgtest.Require(t)
	srv := etcdtest.Start(t)
	a, b := newDBNode(t, "a", srv.Endpoint, "sync"), newDBNode(t, "b", srv.Endpoint, "sync")
	// b tells a webhook of its promotions, fences and refusals.
	var mu sync.Mutex
	var notices []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var doc struct{ Summary string }
		json.NewDecoder(r.Body).Decode(&doc)
		mu.Lock()
		notices = append(notices, doc.Summary)
		mu.Unlock()
	}))
	defer hook.Close()
	appendFile(t, filepath.Join(b.dir, "medic.yaml"), fmt.Sprintf(`receivers:
  hook: {webhook: {url: "%s"}}
automation: {notify: {receiver: hook}, escalate: {receiver: hook}}
`, hook.URL))
	// A custom scenario: the partition as a network that drops packets.
	for _, n := range []*dbNode{a, b} {
		appendFile(t, filepath.Join(n.dir, "medic.yaml"), `drills:
  scenarios:
    db-blackhole:
      description: the primary's agent loses etcd without any error; only timeouts tell
      failure_mode: database primary cut from etcd
      scope: service
      requires: [database]
      fault: {kind: db-partition, params: {mode: blackhole}}
      detect: [{kind: "db.fenced|db.demoted|db.elected|db.writes.failing", on: any}]
      recover: [{kind: db.writes.resumed}]
      max_error_rate: 1
      warmup: 3s
      deadline: 1m
`)
	}
	noticed := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			got := slices.ContainsFunc(notices, func(s string) bool { return strings.Contains(s, want) })
			mu.Unlock()
			if got {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no notice %q; got %q", want, notices)
	}
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	b.start()
	a.eventually(60*time.Second, "b is the synchronous standby", streams("b", "a", true))

	res := b.drill("db-switchover")
	if *res.Writes.RTO > 1 {
		t.Errorf("switchover outage %.3f s, want ≤ 1 s", *res.Writes.RTO)
	}
	b.eventually(30*time.Second, "b leads after the switchover", leaderIs("b"))
	b.eventually(60*time.Second, "a streams from b", streams("a", "b", true))

	noticed("db/pg/b: new primary")
	b.drill("db-partition") // on the primary's own agent
	noticed("db/pg/b: primary fenced")
	a.eventually(30*time.Second, "a leads after b was cut", leaderIs("a"))
	a.eventually(60*time.Second, "b rejoined as a's standby", streams("b", "a", true))

	a.drill("db-blackhole") // on the primary's own agent
	b.eventually(30*time.Second, "b leads after a was blackholed", leaderIs("b"))
	b.eventually(60*time.Second, "a rejoined as b's standby", streams("a", "b", true))

	b.drill("db-kill-postgres")
	b.eventually(60*time.Second, "a streams again", streams("a", "b", true))

	res = a.drill("db-kill-primary") // from the replica: it outlives the primary
	// No replica may take over before the dead primary's lease expires: an
	// outage under a second would mean a late acknowledgment of a write in
	// flight at the kill was taken for the recovery.
	if rto := *res.Writes.RTO; rto > 2*rtoBound.Seconds() || rto < 1 {
		t.Errorf("primary host lost: outage %.3f s, want 1 s to %v", rto, 2*rtoBound)
	}
	a.eventually(30*time.Second, "a leads after b was killed", leaderIs("a"))
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		t.Fatal("b's agent still runs after db-kill-primary")
	}

	// A reload never changes a running member's settings: it says so.
	cfgPath := filepath.Join(a.dir, "medic.yaml")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(raw), "replication: {mode: sync}", "replication: {mode: sync}\n    lease_ttl: 6s", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(medicBin, "reload", "--addr", a.api, "--token", a.token).CombinedOutput(); err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	out, err := exec.Command(medicBin, "audit", "list", "--kind", "config.reload", "--json", "--addr", a.api, "--token", a.token).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "databases settings change on restart only") {
		t.Fatalf("reload with a changed database: audit says (%v)\n%s", err, out)
	}
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
