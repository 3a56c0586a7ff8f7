package remedy_test

import (
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/notify"
	"github.com/medic-dev/medic/internal/remedy"
)

// TestBackupArchiveEscalates: a database with a backup section gets the
// built-in archive conditions and no runbook for them, so a lagging
// archive is escalated to automation.escalate with the evidence, and
// nothing is done to the database.
func TestBackupArchiveEscalates(t *testing.T) {
	cfg, err := config.Parse("medic.yaml", []byte(`etcd: {endpoints: ["127.0.0.1:2379"]}
databases:
  pg:
    postgres: {bin_dir: /usr/lib/postgresql/15/bin, data: ./pg, listen: 127.0.0.1:5433}
    backup: {repository: ./repo}
automation: {escalate: {receiver: oncall}}
receivers: {oncall: {webhook: {url: "http://127.0.0.1:1/hook"}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Conditions[config.BackupArchiveLagging] == nil {
		t.Fatalf("no built-in %s in %v", config.BackupArchiveLagging, cfg.Conditions)
	}
	sup := newFakeSup(nil)
	h := start(t, cfg, sup, nil)
	h.fire(config.BackupArchiveLagging, "database", "pg")
	ev := h.wait(remedy.EventEscalated, "guard", "no_runbook")
	if ev.Fields["receiver"] != "oncall" {
		t.Errorf("escalation %+v", ev)
	}
	n, ok := h.notes.find("oncall", notify.KindTrigger, config.BackupArchiveLagging)
	if !ok || !strings.Contains(n.Summary+n.Text, "pg") || !strings.Contains(n.Text, "medic does not improvise") {
		t.Fatalf("escalation notification %+v", n)
	}
	if len(sup.Calls()) != 0 {
		t.Fatalf("acted on a failing archive: %v", sup.Calls())
	}
}
