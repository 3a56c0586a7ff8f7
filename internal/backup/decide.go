package backup

import (
	"strconv"
	"time"

	"github.com/medic-dev/medic/internal/drill/cron"
)

// Schedule is when backups are due: cron expressions in local time for
// full and differential backups (DiffOff: none).
type Schedule struct {
	Full    cron.Schedule
	Diff    cron.Schedule
	DiffOff bool
}

// Due answers which backup to take at now, given the start of the newest
// full backup and of the newest backup of any type (zero: none). Without
// any full backup one is due at once: archived WAL restores nothing
// without a base. A full backup due outranks a differential one; a slot
// missed while medic was down is taken once, not once per missed slot.
func (s Schedule) Due(now, lastFull, lastAny time.Time) (typ string, due bool) {
	if lastFull.IsZero() {
		return Full, true
	}
	if !s.Full.Next(lastFull).After(now) {
		return Full, true
	}
	if !s.DiffOff && !s.Diff.Next(lastAny).After(now) {
		return Diff, true
	}
	return "", false
}

// NextDue is when the next backup falls due after the newest full backup
// started at lastFull and the newest of any type at lastAny (both
// non-zero): the earlier of the two schedules' next slots. The loop wakes
// then when that is sooner than its period, so that a scheduled backup
// starts at its slot and not up to a period after it.
func (s Schedule) NextDue(lastFull, lastAny time.Time) time.Time {
	next := s.Full.Next(lastFull)
	if !s.DiffOff {
		if d := s.Diff.Next(lastAny); d.Before(next) {
			next = d
		}
	}
	return next
}

// Archiver is pg_stat_archiver on the primary with the current WAL position.
type Archiver struct {
	ArchivedCount   int64
	LastArchivedWAL string    // "" when nothing was archived since the statistics began
	LastArchivedAt  time.Time // zero with it
	FailedCount     int64
	LastFailedWAL   string
	LastFailedAt    time.Time
	CurrentWAL      string // pg_walfile_name(pg_current_wal_lsn())
	CurrentOffset   int64  // the position's offset in that segment
	SegmentSize     int64  // wal_segment_size, bytes
	Since           time.Time
}

// Lag is how far the archive is behind the primary's WAL.
type Lag struct {
	// Segments completed on the primary and not yet in the archive.
	Segments int64 `json:"segments"`
	// Seconds since WAL last reached the archive while WAL is waiting to
	// (0 when everything written is archived): the data a restore would
	// lose if every member were lost now. Healthy, it stays below
	// archive.timeout plus the time one archive-push takes.
	Seconds float64 `json:"seconds"`
}

// ArchiveLag computes the lag at now. Without any archived segment the lag
// is counted from since (the postmaster's start).
func ArchiveLag(now time.Time, a Archiver) Lag {
	cur, okc := segNo(a.CurrentWAL, a.SegmentSize)
	last, okl := segNo(a.LastArchivedWAL, a.SegmentSize)
	var l Lag
	if okc && okl && cur > last+1 {
		l.Segments = cur - last - 1 // the current segment is still being written
	} else if okc && !okl && a.LastArchivedWAL == "" {
		l.Segments = 0
	}
	pending := l.Segments > 0 || a.CurrentOffset > 0 || (a.FailedCount > 0 && a.LastFailedAt.After(a.LastArchivedAt))
	if !pending {
		return l
	}
	from := a.LastArchivedAt
	if from.IsZero() {
		from = a.Since
	}
	if !from.IsZero() && now.After(from) {
		l.Seconds = now.Sub(from).Seconds()
	}
	return l
}

// segNo is the segment number of a WAL file name
// (TTTTTTTTXXXXXXXXYYYYYYYY), across timelines; false for a history file.
func segNo(name string, segSize int64) (int64, bool) {
	if len(name) < 24 || segSize <= 0 {
		return 0, false
	}
	log, err1 := strconv.ParseInt(name[8:16], 16, 64)
	seg, err2 := strconv.ParseInt(name[16:24], 16, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return log*(0x100000000/segSize) + seg, true
}

// Segment is the WAL segment the primary writes and since when medic has
// seen it being written.
type Segment struct {
	Name  string
	Since time.Time
}

// SwitchDue says whether the primary must switch to a new WAL segment at
// now so that archive.timeout holds: the current segment, seen since
// seen.Since, has held writes for SwitchAfter(timeout) — early enough that
// a write made just after the segment began is archived within timeout,
// counting the loop's period twice (the segment may have begun up to one
// period before it was seen, and the switch comes up to one period late)
// and a second for the push. PostgreSQL's own archive_timeout is set
// too, but on PostgreSQL 15.18 (Debian 12) it did not switch segments
// under a steady trickle of writes in our tests, so medic enforces it from
// the loop as well (pg_switch_wal() does nothing on a segment without
// writes). It returns the segment to remember.
func SwitchDue(now time.Time, seen Segment, a Archiver, timeout time.Duration) (Segment, bool) {
	if a.CurrentWAL != seen.Name {
		return Segment{Name: a.CurrentWAL, Since: now}, false
	}
	return seen, a.CurrentOffset > 0 && timeout > 0 && now.Sub(seen.Since) >= SwitchAfter(timeout)
}

// StepDue says whether the loop steps at now: every period (next is when
// the period is up), and at once when this member is the primary and was
// not at its last step — a new term creates its stanza and takes the
// backup that is due without waiting up to a period (the archive's
// stanza check after a failover, the first full backup of a new cluster).
func StepDue(now, next time.Time, primary, steppedAsPrimary bool) bool {
	return !now.Before(next) || primary && !steppedAsPrimary
}

// NextStep is when the loop steps next after a step that ended at now: a
// period later, or at due (the next scheduled backup's slot, zero when
// none is waiting) when that comes sooner.
func NextStep(now time.Time, period time.Duration, due time.Time) time.Time {
	next := now.Add(period)
	if due.After(now) && due.Before(next) {
		return due
	}
	return next
}

// ArchivePeriod is how often the primary's current segment is checked
// against archive.timeout: an eighth of it, between 100ms and 2s.
func ArchivePeriod(timeout time.Duration) time.Duration {
	return min(max(timeout/8, 100*time.Millisecond), 2*time.Second)
}

// SwitchAfter is how long a segment may hold writes before medic switches
// it: archive.timeout less two check periods and a second for the push,
// and at least one period.
func SwitchAfter(timeout time.Duration) time.Duration {
	p := ArchivePeriod(timeout)
	return max(timeout-2*p-time.Second, p)
}
