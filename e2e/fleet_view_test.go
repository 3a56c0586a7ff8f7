package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/fleetview"
	"github.com/medic-dev/medic/internal/sqlite"
)

// fleetViewConfig is fleetConfig with one service, app, on the host.
const fleetViewConfig = fleetConfig + `
services:
  app:
    command: [%[1]s, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: %[3]d
    instances: 1
`

func fleetStatusOf(t *testing.T, a *agent) fleetview.Status {
	t.Helper()
	out, err := a.medic("status", "--fleet", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st fleetview.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --fleet --json is not one JSON document: %v\n%s", err, out)
	}
	return st
}

// TestFleetViewAndAuditAnchors runs two real agents in one fleet: h1 shows
// h2's services, events and scorecard answers from the summaries in etcd;
// `medic audit verify --fleet` on h1 passes, then fails naming h2 and the
// record once h2's store is rewritten with its chain recomputed (which h2's
// own verify cannot see), and h2 refuses to anchor the rewritten log.
func TestFleetViewAndAuditAnchors(t *testing.T) {
	srv := etcdtest.Start(t)
	a := startAgent(t, strings.NewReplacer("{HOST}", "h1", "{ETCD}", srv.Endpoint, "{N}", "1").Replace(fleetViewConfig))
	b := startAgent(t, strings.NewReplacer("{HOST}", "h2", "{ETCD}", srv.Endpoint, "{N}", "2").Replace(fleetViewConfig))

	// One view: h1 lists h2's service with its ready instance.
	a.eventually(30*time.Second, "h1 shows h2's app ready from h2's summary", func() bool {
		st := fleetStatusOf(t, a)
		if !st.Watching || len(st.Hosts) != 2 {
			return false
		}
		h := st.Hosts[1]
		return h.Host == "h2" && h.Summary != nil && len(h.Summary.Services) == 1 &&
			h.Summary.Services[0].Name == "app" && h.Summary.Services[0].Ready == 1
	})
	out, err := a.medic("status", "--fleet")
	if err != nil || !strings.Contains(out, "h1 (this host)") || !strings.Contains(out, "h2") || !strings.Contains(out, "1/1") {
		t.Fatalf("status --fleet: %v\n%s", err, out)
	}
	out, err = a.medic("events", "--fleet")
	if err != nil || !strings.Contains(out, " h2 ") || !strings.Contains(out, " h1 ") {
		t.Fatalf("events --fleet lacks h2's or h1's events: %v\n%s", err, out)
	}
	// The fleet's scorecard names both hosts on every question, and its
	// answer follows the hosts' (never yes unless both say yes).
	a.eventually(30*time.Second, "scorecard --fleet has both hosts' answers", func() bool {
		out, _ := a.medic("scorecard", "--fleet", "--json")
		var c fleetview.Card
		if json.Unmarshal([]byte(out), &c) != nil || len(c.Items) == 0 {
			return false
		}
		for _, it := range c.Items {
			if len(it.Hosts) != 2 {
				return false
			}
			all := true
			for _, h := range it.Hosts {
				if h.Why == "no summary published yet" || h.Why == "its scorecard is not evaluated yet" {
					return false
				}
				all = all && h.Answer == "yes"
			}
			if (it.Answer == "yes") != all {
				t.Fatalf("question %s answers %s from %+v", it.ID, it.Answer, it.Hosts)
			}
		}
		return true
	})

	// Both logs extend their anchors.
	a.eventually(20*time.Second, "audit verify --fleet passes on both hosts", func() bool {
		out, err := a.medic("audit", "verify", "--fleet")
		return err == nil && strings.Contains(out, "every host's audit log extends its anchored head (2 hosts)")
	})

	// Rewrite one of h2's records with h2 stopped, recomputing the chain
	// after it, the head table and the head file: h2's own verify passes.
	b.stop()
	dataDir := filepath.Join(b.dir, "data")
	const victim = 3
	func() {
		db, err := sqlite.Open(dataDir)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		log, err := audit.Open(db, clock.Real{})
		if err != nil {
			t.Fatal(err)
		}
		recs, err := log.List(context.Background(), audit.Filter{})
		if err != nil || len(recs) < victim+2 {
			t.Fatalf("h2's records: %d, %v", len(recs), err)
		}
		recs[victim-1].Reason = "nothing happened"
		stmts := []string{"DROP TRIGGER audit_no_update"}
		h := recs[victim-2].Head()
		for i := victim - 1; i < len(recs); i++ {
			recs[i] = audit.Next(h, recs[i])
			h = recs[i].Head()
			stmts = append(stmts, fmt.Sprintf("UPDATE audit SET reason = '%s', prev = '%s', hash = '%s' WHERE seq = %d",
				strings.ReplaceAll(recs[i].Reason, "'", "''"), recs[i].Prev, recs[i].Hash, recs[i].Seq))
		}
		stmts = append(stmts, fmt.Sprintf("UPDATE audit_head SET seq = %d, hash = '%s'", h.Seq, h.Hash))
		for _, q := range stmts {
			if _, err := db.SQL().Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if err := os.WriteFile(filepath.Join(dataDir, audit.HeadFile), []byte(fmt.Sprintf("v1 %d %s\n", h.Seq, h.Hash)), 0o600); err != nil {
			t.Fatal(err)
		}
	}()
	b = b.restart()
	if out, err := b.medic("audit", "verify"); err != nil {
		t.Fatalf("h2's own verify should pass on a recomputed chain: %v\n%s", err, out)
	}
	// h2 refuses to anchor a log that does not extend its anchor.
	b.eventually(20*time.Second, "h2 records fleet.audit.refused", func() bool {
		_, body := get("http://" + b.addr + "/v1/audit?kind=fleet.audit.refused")
		return strings.Contains(body, "does not extend") || strings.Contains(body, "this log's record")
	})
	out, err = a.medic("audit", "verify", "--fleet")
	if err == nil {
		t.Fatalf("verify --fleet passed on a rewritten log:\n%s", out)
	}
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "h2 ") {
			line = l
		}
	}
	if !strings.Contains(line, "REWRITTEN") || !strings.Contains(line, "host h2") || !strings.Contains(out, "h1         ok") ||
		!strings.Contains(out, "1 of 2 hosts failed") {
		t.Fatalf("verify --fleet does not name h2's rewrite:\n%s", out)
	}
	// The record is named: the victim lies in the range given.
	m := regexp.MustCompile(`a record in (\d+)–(\d+) was rewritten|record (\d+) was rewritten`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no record named in %q", line)
	}
	from, to := atoi(m[1]), atoi(m[2])
	if m[3] != "" {
		from, to = atoi(m[3]), atoi(m[3])
	}
	if from > victim || to < victim {
		t.Fatalf("verify --fleet names records %d–%d; record %d was rewritten:\n%s", from, to, victim, out)
	}
	t.Logf("verify --fleet:\n%s", out)

	// Whoever can write etcd can publish any address as a host's API: an
	// anchor for h9 at a listener of the test's. verify --fleet reads it
	// there, but never sends it the operator's token.
	var mu sync.Mutex
	var asked []string
	spy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path+" Authorization="+r.Header.Get("Authorization"))
		mu.Unlock()
		http.Error(w, `{"error": "nothing here"}`, http.StatusNotFound)
	}))
	defer spy.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	fake, _ := json.Marshal(fleetview.Anchor{Host: "h9", API: spy.URL, At: time.Now(), Heads: []audit.Head{{Seq: 1}}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err = cli.Put(ctx, fleetview.AnchorsPrefix("/medic", "prod")+"/h9", string(fake))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	out, _ = a.medic("audit", "verify", "--fleet", "--token", "operator-secret-token")
	mu.Lock()
	defer mu.Unlock()
	if len(asked) == 0 || !strings.Contains(out, "h9") {
		t.Fatalf("verify --fleet did not read h9's published address (asked %v):\n%s", asked, out)
	}
	for _, q := range asked {
		if !strings.HasSuffix(q, "Authorization=") {
			t.Fatalf("verify --fleet sent a credential to an address read from etcd: %s", q)
		}
	}
	t.Logf("h9's published address was asked %v, without a token", asked)
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
