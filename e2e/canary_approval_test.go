package e2e_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/release"
)

// TestCanaryApprovalInList: a canary under trust propose waits for an
// approval to promote; the wait is listed by `medic approvals` (the remedy
// engine's list, which the dashboard shows) as canary:web, and `medic
// approve canary:web` promotes it.
func TestCanaryApprovalInList(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	cfg := strings.Replace(canaryConfigFor(), "      steps: [25, 50, 100]\n", "      steps: [25, 100]\n      trust: propose\n", 1)
	if !strings.Contains(cfg, "trust: propose") {
		t.Fatal("the test's config edit did not apply")
	}
	a := startAgentIn(t, dir, cfg)
	a.token = op
	a.eventually(15*time.Second, "2 ready", func() bool { return a.status().Services[0].Ready == 2 })
	load := startLoad("http://"+a.status().Proxies[0].Listen+"/", 100, 120*time.Second)
	defer load.finish()

	type result struct {
		out string
		err error
	}
	deployed := make(chan result, 1)
	go func() {
		out, err := a.medic("deploy", "web", "--set", "command="+canaryCommand("--id", "approved"), "--version", "v2", "--json")
		deployed <- result{out, err}
	}()
	var listed string
	a.eventually(90*time.Second, "the canary's approval listed", func() bool {
		out, err := a.medic("approvals", "--json")
		if err != nil {
			return false
		}
		var doc struct {
			Approvals []struct{ ID, Runbook, Target, Summary, State string }
		}
		if json.Unmarshal([]byte(out), &doc) != nil {
			return false
		}
		for _, ap := range doc.Approvals {
			if ap.ID == "canary:web" && ap.Runbook == "deploy.canary" && ap.Target == "web" && ap.State == "pending" {
				listed = ap.Summary
				return true
			}
		}
		return false
	})
	t.Logf("listed: %s", listed)
	if !strings.Contains(listed, "at 25%") {
		t.Fatalf("summary %q does not say the step", listed)
	}
	if out, err := a.medic("approve", "canary:web"); err != nil {
		t.Fatalf("approve canary:web: %v\n%s", err, out)
	}
	var res result
	select {
	case res = <-deployed:
	case <-time.After(90 * time.Second):
		t.Fatal("the deploy did not end after the approval")
	}
	var rel release.Release
	if err := json.Unmarshal([]byte(res.out), &rel); err != nil || rel.Outcome != release.Live {
		t.Fatalf("deploy after the approval: %v %v\n%s", res.err, err, res.out)
	}
	if out, err := a.medic("approve", "canary:web"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("approve again after the end: %v\n%s, want HTTP 404", err, out)
	}
}
