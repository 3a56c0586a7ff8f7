package config_test

import (
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

// TestBackupConditionsBuiltin: a database with a backup section gets the
// built-in archive conditions (which no runbook handles, so they escalate);
// a condition the user wrote with the same name, or on the same signal,
// replaces the built-in; without backups there are none.
func TestBackupConditionsBuiltin(t *testing.T) {
	withBackup := dbConfig + "    backup: {repository: /var/lib/pgbackrest}\n"
	parse := func(t *testing.T, yml string) *config.Config {
		t.Helper()
		c, err := config.Parse("medic.yaml", []byte(yml))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	c := parse(t, withBackup)
	lag, fail := c.Conditions[config.BackupArchiveLagging], c.Conditions[config.BackupArchiveFailing]
	if lag == nil || fail == nil {
		t.Fatalf("conditions %v: want the built-in %s and %s", keys(c.Conditions), config.BackupArchiveLagging, config.BackupArchiveFailing)
	}
	if lag.Signal != "backup_archive_lag_seconds" || lag.Above == nil || float64(*lag.Above) != 300 || lag.For.D() != config.DefaultArchiveLagFor ||
		lag.Aggregate != config.DefaultAggregate {
		t.Errorf("lag condition %+v", lag)
	}
	if fail.Signal != "backup_archive_failed_count" || fail.Trend == nil || fail.Trend.Window.D() != config.DefaultArchiveFailWindow ||
		fail.Trend.MinPoints != config.DefaultTrendMinPoints || fail.For.D() != config.DefaultArchiveFailFor {
		t.Errorf("failing condition %+v", fail)
	}
	for _, rb := range c.Runbooks {
		if rb.Trigger.Condition == config.BackupArchiveLagging || rb.Trigger.Condition == config.BackupArchiveFailing {
			t.Errorf("a runbook handles a built-in backup condition: it must escalate, not act")
		}
	}
	// Idempotent.
	c.SetDefaults()
	if len(c.Conditions) != 2 {
		t.Errorf("after a second SetDefaults: %v", keys(c.Conditions))
	}

	// The user's own, by name: kept as written.
	c = parse(t, withBackup+"conditions:\n  backup_archive_lagging: {signal: backup_archive_lag_seconds, above: 15m}\n")
	if got := c.Conditions[config.BackupArchiveLagging]; got == nil || float64(*got.Above) != 900 {
		t.Errorf("the user's backup_archive_lagging was replaced: %+v", got)
	}
	if c.Conditions[config.BackupArchiveFailing] == nil {
		t.Errorf("the other built-in is missing: %v", keys(c.Conditions))
	}
	// The user's own, on the signal: no built-in on it.
	c = parse(t, withBackup+"conditions:\n  archive_pushes: {signal: backup_archive_failed_count, above: 0}\n")
	if c.Conditions[config.BackupArchiveFailing] != nil || c.Conditions[config.BackupArchiveLagging] == nil {
		t.Errorf("with the user's condition on backup_archive_failed_count: %v", keys(c.Conditions))
	}
	// No backup section: no built-in.
	if c = parse(t, dbConfig); len(c.Conditions) != 0 {
		t.Errorf("without backups: %v", keys(c.Conditions))
	}
}

func keys[V any](m map[string]V) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return strings.Join(out, ",")
}

// TestNoRunbookRestores: restores and bootstraps from backup are operator
// actions (medic db restore, medic db bootstrap, behind the API's operator
// role and the audit log); no runbook step can take one, so the automation
// never restores on its own.
func TestNoRunbookRestores(t *testing.T) {
	for _, a := range config.Actions {
		for _, word := range []string{"restore", "bootstrap", "backup", "recover", "pitr"} {
			if strings.Contains(strings.ToLower(a), word) {
				t.Errorf("runbook action %q restores or backs up: restores are operator actions only", a)
			}
		}
	}
	for _, action := range []string{"restore", "db_restore", "bootstrap", "db_bootstrap"} {
		r := &config.Runbook{Trigger: config.RunbookTrigger{Condition: config.BackupArchiveFailing},
			Steps: []config.RunbookStep{{Action: action}}}
		r.SetDefaults()
		if got := issuesOf(r.Validate()); !strings.Contains(got, "steps[0].action: must be one of") {
			t.Errorf("a runbook step %q is accepted (issues %q): no runbook may restore", action, got)
		}
	}
}
