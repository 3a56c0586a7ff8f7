package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/testutil/amtest"
)

// TestAlertmanagerTriggersRunbook: the real Alertmanager, given an alert,
// calls medic's webhook with a bearer token; the alert condition fires, its
// runbook acts, and the resolution arrives the same way.
func TestAlertmanagerTriggersRunbook(t *testing.T) {
	amtest.Bin(t)
	dir := t.TempDir()
	tok, err := runMedic("token", "add", "alertmanager", "--role", "operator", "-f", dir+"/tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(tok)
	cfg := `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
conditions:
  disk_alert: {alert: {match: {alertname: DiskFull}}}
runbooks:
  mark:
    trigger: {condition: disk_alert}
    steps: [{action: exec, command: [touch, "%[4]s/acted-${labels.instance}"]}]
    trust: act
services:
  idle:
    command: [sleep, "300"]
`
	a := startAgentIn(t, dir, cfg)
	a.token = token
	base := amtest.Start(t, "http://"+a.addr+"/v1/alerts/alertmanager", token)
	t0 := time.Now()
	amtest.Post(t, base, fmt.Sprintf(`[{"labels": {"alertname": "DiskFull", "instance": "db1"}, "startsAt": %q}]`,
		time.Now().UTC().Format(time.RFC3339)))
	a.eventually(30*time.Second, "runbook acted on the Alertmanager alert", func() bool {
		_, err := os.Stat(filepath.Join(dir, "acted-db1"))
		return err == nil
	})
	t.Logf("alert posted to Alertmanager → runbook acted: %v", time.Since(t0).Round(time.Millisecond))
	recs := a.auditRecords("condition.firing")
	if len(recs) == 0 || !strings.Contains(fmt.Sprint(recs[0]["reason"]), "alertmanager") {
		t.Fatalf("condition.firing records: %v", recs)
	}
	// Resolve it through Alertmanager: endsAt in the past.
	amtest.Post(t, base, fmt.Sprintf(`[{"labels": {"alertname": "DiskFull", "instance": "db1"}, "startsAt": %q, "endsAt": %q}]`,
		t0.UTC().Add(-time.Minute).Format(time.RFC3339), time.Now().UTC().Add(-time.Second).Format(time.RFC3339)))
	a.eventually(30*time.Second, "condition resolved by Alertmanager", func() bool {
		return len(a.auditRecords("condition.inactive")) > 0
	})
}
