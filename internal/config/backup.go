package config

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/medic-dev/medic/internal/drill/cron"
)

// Backup makes a database recoverable from a pgBackRest repository: medic
// configures WAL archiving (archive-push) on whichever member is the
// primary, runs the scheduled full and differential backups from the
// member that holds the lease, and applies retention. Restores are operator
// actions (medic db restore) and restore drills (db-restore); medic never
// restores on its own.
type Backup struct {
	// Directory of the pgBackRest repository (repo1-path), relative to the config file. It must be
	// shared by every member (a local path in a single-host cluster, a mount otherwise). Required.
	Repository string `yaml:"repository" json:"repository"`
	// pgBackRest stanza name. Default: the database's name.
	Stanza string `yaml:"stanza" json:"stanza,omitempty"`
	// When to take full and differential backups.
	Schedule BackupSchedule `yaml:"schedule" json:"schedule,omitempty"`
	// Full backups kept (repo1-retention-full); older ones and the WAL only they need are expired
	// after each backup. Default 2.
	Retention int `yaml:"retention" json:"retention,omitempty" jsonschema:"minimum=1"`
	// WAL archiving.
	Archive BackupArchive `yaml:"archive" json:"archive,omitempty"`
}

// BackupSchedule says when backups are taken, as cron expressions in local time.
type BackupSchedule struct {
	// Full backups: "minute hour day-of-month month day-of-week", @daily, @every 24h … Default "0 1 * * 0" (Sundays 01:00).
	Full string `yaml:"full" json:"full,omitempty"`
	// Differential backups (changes since the last full). Default "0 1 * * 1-6" (other days 01:00); "off" for none.
	Diff string `yaml:"diff" json:"diff,omitempty"`
}

// BackupArchive is how WAL reaches the repository.
type BackupArchive struct {
	// archive_timeout: the primary switches to a new WAL segment at least this often when there were
	// writes, so that no acknowledged write waits longer than this to be archived: the recovery point
	// of a restore after losing every member. Default 60s.
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
}

// The backup defaults.
const (
	DefaultBackupFull      = "0 1 * * 0"
	DefaultBackupDiff      = "0 1 * * 1-6"
	DefaultBackupRetention = 2
	DefaultArchiveTimeout  = 60 * time.Second
)

// SetDefaults fills the unset backup settings.
func (b *Backup) SetDefaults() {
	if b.Schedule.Full == "" {
		b.Schedule.Full = DefaultBackupFull
	}
	if b.Schedule.Diff == "" {
		b.Schedule.Diff = DefaultBackupDiff
	}
	if b.Retention == 0 {
		b.Retention = DefaultBackupRetention
	}
	if b.Archive.Timeout == 0 {
		b.Archive.Timeout = Duration(DefaultArchiveTimeout)
	}
}

// Validate checks the backup settings.
func (b *Backup) Validate() []FieldIssue {
	var is []FieldIssue
	bad := func(field, format string, args ...any) {
		is = append(is, FieldIssue{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if b.Repository == "" {
		bad("repository", "required: the directory of the pgBackRest repository, such as /var/lib/pgbackrest")
	}
	if _, err := cron.Parse(b.Schedule.Full); err != nil {
		bad("schedule.full", "%v", err)
	}
	if b.Schedule.Diff != "off" {
		if _, err := cron.Parse(b.Schedule.Diff); err != nil {
			bad("schedule.diff", "%v (or off)", err)
		}
	}
	if b.Retention < 1 {
		bad("retention", "must be at least 1 full backup")
	}
	if t := b.Archive.Timeout.D(); t < time.Second {
		bad("archive.timeout", "%v is below 1s: every write would switch WAL segments", t)
	}
	return is
}

// RepositoryPath is the repository made absolute against the directory of
// the config file at configPath.
func (b *Backup) RepositoryPath(configPath string) string {
	base := ""
	if configPath != "" {
		if abs, err := filepath.Abs(filepath.Dir(configPath)); err == nil {
			base = abs
		}
	}
	return resolve(base, b.Repository)
}
