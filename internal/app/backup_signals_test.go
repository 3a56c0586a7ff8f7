package app

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/backup"
	"github.com/medic-dev/medic/internal/signal"
)

// TestBackupSignals: the archive's lag is a signal only on the primary (a
// replica archives nothing, and its zero must not clear a page), the
// newest backup's age and the repository's space on every member.
func TestBackupSignals(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	states := []backup.State{
		{Database: "pg", Primary: true, Archive: &backup.Lag{Seconds: 400, Segments: 3}, ArchiveFailures: 7,
			Last: &backup.BackupInfo{Stop: now.Add(-time.Hour)}, RepositoryFreeBytes: 1 << 30},
		{Database: "other", Primary: false, Archive: &backup.Lag{Seconds: 0}},
	}
	got := map[string]float64{}
	for _, s := range backupSignals(now, states) {
		got[s.Name+"/"+s.Labels[signal.LabelDatabase]] = s.V
	}
	want := map[string]float64{
		"backup_archive_lag_seconds/pg": 400, "backup_archive_lag_segments/pg": 3, "backup_archive_failed_count/pg": 7,
		"backup_last_success_age_seconds/pg": 3600, "backup_repository_free_bytes/pg": 1 << 30, "backup_failures_total/pg": 0,
		"backup_repository_free_bytes/other": 0, "backup_failures_total/other": 0,
	}
	if len(got) != len(want) {
		t.Errorf("signals %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %t), want %v", k, g, ok, v)
		}
	}
}
