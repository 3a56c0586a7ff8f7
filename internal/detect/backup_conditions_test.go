package detect_test

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/detect"
	"github.com/medic-dev/medic/internal/signal"
)

// builtin returns the named built-in backup condition with its defaults.
func builtin(t *testing.T, name string) *detect.Condition {
	t.Helper()
	spec := config.BackupConditions()[name]
	spec.SetDefaults()
	c, err := detect.NewCondition(name, spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// firstFiring feeds value(at) every 5 s (the backup signals' period) for
// up to d and returns when the condition first fired (-1: never).
func firstFiring(t *testing.T, c *detect.Condition, sig string, d time.Duration, value func(at time.Duration) float64) time.Duration {
	t.Helper()
	store := signal.NewStore(signal.Options{})
	l := signal.Labels{signal.LabelDatabase: "pg"}
	for at := time.Duration(0); at <= d; at += 5 * time.Second {
		store.Add(sig, l, t0.Add(at), value(at))
		for _, tr := range c.Eval(t0.Add(at), store) {
			if tr.Fired() {
				if tr.Labels[signal.LabelDatabase] != "pg" {
					t.Errorf("fired with labels %v, want database=pg", tr.Labels)
				}
				return at
			}
		}
	}
	return -1
}

// TestBackupConditionsFire: the built-in archive conditions page for a
// lagging or failing archive, within bounds, and not for a healthy one or
// one transient failed push.
func TestBackupConditionsFire(t *testing.T) {
	lagging := func(t *testing.T) *detect.Condition { return builtin(t, config.BackupArchiveLagging) }
	failing := func(t *testing.T) *detect.Condition { return builtin(t, config.BackupArchiveFailing) }
	cases := []struct {
		name     string
		cond     func(*testing.T) *detect.Condition
		sig      string
		value    func(at time.Duration) float64
		min, max time.Duration // -1: must never fire within 10 minutes
	}{
		{"healthy archive: lag below archive.timeout", lagging, "backup_archive_lag_seconds",
			func(at time.Duration) float64 { return float64(int(at.Seconds()) % 70) }, -1, -1},
		{"archive stuck from the start: lag grows", lagging, "backup_archive_lag_seconds",
			func(at time.Duration) float64 { return at.Seconds() }, 6 * time.Minute, 6*time.Minute + 10*time.Second},
		{"no failed push", failing, "backup_archive_failed_count",
			func(time.Duration) float64 { return 0 }, -1, -1},
		{"one transient failed push", failing, "backup_archive_failed_count",
			func(at time.Duration) float64 { return map[bool]float64{true: 1}[at >= time.Minute] }, -1, -1},
		{"postgres retrying a failing push, 3 a minute", failing, "backup_archive_failed_count",
			func(at time.Duration) float64 { return float64(3 * int(at/time.Minute)) }, 2 * time.Minute, 4 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := firstFiring(t, tc.cond(t), tc.sig, 10*time.Minute, tc.value)
			if tc.min < 0 {
				if got >= 0 {
					t.Fatalf("fired at +%v, want never", got)
				}
				return
			}
			if got < tc.min || got > tc.max {
				t.Fatalf("fired at +%v, want within [%v, %v]", got, tc.min, tc.max)
			}
		})
	}
}
