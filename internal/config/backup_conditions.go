package config

import "time"

// A failing WAL archive escalates without any configuration: when a
// database has a backup section, SetDefaults adds the conditions below
// (named in BackupConditions) to the config's conditions, unless the user
// wrote a condition of the same name (theirs replaces the built-in) or any
// condition on the same signal (they watch it their own way). No runbook
// handles them, so when one fires the runbook engine escalates it to
// automation.escalate with the evidence and does not act: a broken archive
// is an operator's repair.
const (
	// BackupArchiveLagging fires when the archive is more than
	// DefaultArchiveLagLimit behind for DefaultArchiveLagFor: the recovery
	// point a restore could reach is that old.
	BackupArchiveLagging = "backup_archive_lagging"
	// BackupArchiveFailing fires while failed archive-push attempts keep
	// growing, more than DefaultArchiveFailRate per hour over
	// DefaultArchiveFailWindow, for DefaultArchiveFailFor: postgres retries
	// a failing push about three times a minute, a single transient failure
	// never reaches the rate.
	BackupArchiveFailing = "backup_archive_failing"
)

// The bounds of the built-in backup conditions.
const (
	DefaultArchiveLagLimit   = 5 * time.Minute
	DefaultArchiveLagFor     = time.Minute
	DefaultArchiveFailRate   = 60 // failed pushes per hour
	DefaultArchiveFailWindow = 2 * time.Minute
	DefaultArchiveFailFor    = 2 * time.Minute
)

// BackupConditions returns the built-in conditions of databases with a
// backup section, by name (a new value on each call).
func BackupConditions() map[string]*Condition {
	lag, rate := Quantity(DefaultArchiveLagLimit.Seconds()), Quantity(DefaultArchiveFailRate)
	return map[string]*Condition{
		BackupArchiveLagging: {Signal: "backup_archive_lag_seconds", Above: &lag, For: Duration(DefaultArchiveLagFor)},
		BackupArchiveFailing: {Signal: "backup_archive_failed_count", For: Duration(DefaultArchiveFailFor),
			Trend: &ConditionTrend{Window: Duration(DefaultArchiveFailWindow), AbovePerHour: &rate}},
	}
}

// addBackupConditions adds the built-in backup conditions the config lacks
// when a database has a backup section. It is idempotent.
func (c *Config) addBackupConditions() {
	backups := false
	for _, d := range c.Databases {
		if d != nil && d.Backup != nil {
			backups = true
		}
	}
	if !backups {
		return
	}
	watched := map[string]bool{}
	for _, cond := range c.Conditions {
		if cond != nil {
			watched[cond.Signal] = true
		}
	}
	for name, cond := range BackupConditions() {
		if _, ok := c.Conditions[name]; ok || watched[cond.Signal] {
			continue
		}
		if c.Conditions == nil {
			c.Conditions = map[string]*Condition{}
		}
		c.Conditions[name] = cond
	}
}
