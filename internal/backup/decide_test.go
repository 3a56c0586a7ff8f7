package backup

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/drill/cron"
)

func TestDue(t *testing.T) {
	full, _ := cron.Parse("0 1 * * 0")
	diff, _ := cron.Parse("0 1 * * 1-6")
	s := Schedule{Full: full, Diff: diff}
	at := func(v string) time.Time {
		x, err := time.ParseInLocation("2006-01-02 15:04", v, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, c := range []struct {
		now, lastFull, lastAny string
		want                   string
	}{
		{"2026-03-02 10:00", "", "", Full},                                 // none yet: at once
		{"2026-03-02 10:00", "2026-03-01 01:00", "2026-03-01 01:00", Diff}, // Monday 01:00 passed
		{"2026-03-02 00:30", "2026-03-01 01:00", "2026-03-01 01:00", ""},   // not yet
		{"2026-03-02 10:00", "2026-03-01 01:00", "2026-03-02 01:00", ""},   // Monday's diff taken
		{"2026-03-09 02:00", "2026-03-01 01:00", "2026-03-07 01:00", Full}, // Sunday: full outranks diff
		{"2026-03-20 02:00", "2026-03-01 01:00", "2026-03-01 01:00", Full}, // missed slots: one backup
	} {
		var lf, la time.Time
		if c.lastFull != "" {
			lf, la = at(c.lastFull), at(c.lastAny)
		}
		got, _ := s.Due(at(c.now), lf, la)
		if got != c.want {
			t.Errorf("now %s last full %s last %s: %q, want %q", c.now, c.lastFull, c.lastAny, got, c.want)
		}
	}
	s.DiffOff = true
	if got, _ := s.Due(at("2026-03-02 10:00"), at("2026-03-01 01:00"), at("2026-03-01 01:00")); got != "" {
		t.Errorf("diff off: %q", got)
	}
}

func TestArchiveLag(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const seg = 16 << 20
	for _, c := range []struct {
		name string
		a    Archiver
		want Lag
	}{
		{"caught up, nothing written since the switch", Archiver{LastArchivedWAL: "000000010000000000000004", LastArchivedAt: now.Add(-time.Hour),
			CurrentWAL: "000000010000000000000005", SegmentSize: seg}, Lag{}},
		{"writes in the current segment", Archiver{LastArchivedWAL: "000000010000000000000004", LastArchivedAt: now.Add(-30 * time.Second),
			CurrentWAL: "000000010000000000000005", CurrentOffset: 8192, SegmentSize: seg}, Lag{Seconds: 30}},
		{"archiving stuck three segments back", Archiver{LastArchivedWAL: "0000000100000000000000FE", LastArchivedAt: now.Add(-10 * time.Minute),
			FailedCount: 40, LastFailedAt: now, CurrentWAL: "000000010000000100000002", SegmentSize: seg}, Lag{Segments: 3, Seconds: 600}},
		{"after a promotion, the new timeline", Archiver{LastArchivedWAL: "000000010000000000000007.partial", LastArchivedAt: now.Add(-2 * time.Second),
			CurrentWAL: "000000020000000000000007", CurrentOffset: 100, SegmentSize: seg}, Lag{Seconds: 2}},
		{"nothing archived yet", Archiver{CurrentWAL: "000000010000000000000003", CurrentOffset: 10, SegmentSize: seg, Since: now.Add(-time.Minute)},
			Lag{Seconds: 60}},
	} {
		if got := ArchiveLag(now, c.a); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestLSNAfter(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"000000010000000000000004", "0/5000000"},
		{"0000000200000001000000FF", "2/0"},
		{"00000002.history", ""},
		{"000000010000000000000007.partial", ""},
	} {
		got, _ := LSNAfter(c.name, 16<<20)
		if got != c.want {
			t.Errorf("LSNAfter(%s) = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestSwitchDue(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	seg := func(name string, off int64) Archiver { return Archiver{CurrentWAL: name, CurrentOffset: off} }
	seen, due := SwitchDue(t0, Segment{}, seg("000000010000000000000003", 100), time.Minute)
	if due || seen.Name != "000000010000000000000003" || !seen.Since.Equal(t0) {
		t.Fatalf("first sight: %+v %t", seen, due)
	}
	// archive.timeout 60s: checked every 2s, switched after 55s.
	if _, due := SwitchDue(t0.Add(54*time.Second), seen, seg("000000010000000000000003", 900), time.Minute); due {
		t.Error("due 54s into a segment")
	}
	if _, due := SwitchDue(t0.Add(55*time.Second), seen, seg("000000010000000000000003", 900), time.Minute); !due {
		t.Error("not due 55s into a segment with writes: a write at its start would outlive archive.timeout")
	}
	for _, c := range []struct{ timeout, period, after time.Duration }{
		{time.Minute, 2 * time.Second, 55 * time.Second},
		{2 * time.Second, 250 * time.Millisecond, 500 * time.Millisecond},
		{time.Second, 125 * time.Millisecond, 125 * time.Millisecond},
	} {
		if p, a := ArchivePeriod(c.timeout), SwitchAfter(c.timeout); p != c.period || a != c.after {
			t.Errorf("archive.timeout %v: period %v, switch after %v; want %v, %v", c.timeout, p, a, c.period, c.after)
		}
	}
	if _, due := SwitchDue(t0.Add(time.Hour), seen, seg("000000010000000000000003", 0), time.Minute); due {
		t.Error("due without writes in the segment")
	}
	if s, due := SwitchDue(t0.Add(2*time.Minute), seen, seg("000000010000000000000004", 10), time.Minute); due || !s.Since.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("a new segment restarts the clock: %+v %t", s, due)
	}
}

func TestStepDue(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	later := now.Add(15 * time.Second)
	for _, c := range []struct {
		name                      string
		next                      time.Time
		primary, steppedAsPrimary bool
		want                      bool
	}{
		{"period up", now, false, false, true},
		{"period up on the primary", now.Add(-time.Second), true, true, true},
		{"replica within the period", later, false, false, false},
		{"primary already stepped as one", later, true, true, false},
		{"just became the primary", later, true, false, true},
		{"no longer the primary: waits for the period", later, false, true, false},
	} {
		if got := StepDue(now, c.next, c.primary, c.steppedAsPrimary); got != c.want {
			t.Errorf("%s: StepDue = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestNextDueAndNextStep(t *testing.T) {
	full, _ := cron.Parse("@daily")
	diff, _ := cron.Parse("@every 10s")
	s := Schedule{Full: full, Diff: diff}
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.Local)
	if got, want := s.NextDue(at, at.Add(5*time.Second)), at.Add(15*time.Second); !got.Equal(want) {
		t.Errorf("NextDue: %v, want the differential's slot %v", got, want)
	}
	s.DiffOff = true
	if got, want := s.NextDue(at, at.Add(5*time.Second)), full.Next(at); !got.Equal(want) {
		t.Errorf("NextDue without differentials: %v, want the full's slot %v", got, want)
	}
	const period = 15 * time.Second
	for _, c := range []struct {
		name string
		due  time.Time
		want time.Time
	}{
		{"none waiting", time.Time{}, at.Add(period)},
		{"slot within the period", at.Add(4 * time.Second), at.Add(4 * time.Second)},
		{"slot beyond the period", at.Add(time.Hour), at.Add(period)},
		{"slot already past (a backup is being retried later)", at.Add(-time.Second), at.Add(period)},
	} {
		if got := NextStep(at, period, c.due); !got.Equal(c.want) {
			t.Errorf("%s: NextStep = %v, want %v", c.name, got, c.want)
		}
	}
}
