package backup

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic-dev/medic/internal/drill/cron"
)

// Loop defaults.
const (
	// DefaultPeriod: how often the loop reads the archiver and the
	// repository and decides whether a backup is due.
	DefaultPeriod = 15 * time.Second
	// DefaultRetryAfter: a failed scheduled backup is not tried again sooner.
	DefaultRetryAfter = 5 * time.Minute
	// backupTimeout bounds one backup (a large database takes long; a hung
	// pgBackRest must not hold the loop forever).
	backupTimeout = 6 * time.Hour
)

// LoopOptions configure a Loop.
type LoopOptions struct {
	Manager *Manager
	// Primary reports whether this member's postgres is the writable
	// primary now: only it archives, creates the stanza and runs backups.
	Primary func() bool
	// Record makes an event durable (the audit log): kind db.backup.*, a
	// reason and fields. nil drops them.
	Record func(ctx context.Context, kind, reason string, fields map[string]string)
	// Member is this member's name, for the backups' records.
	Member string
	// Standby picks the replica backups copy from (ChooseStandby on the
	// cluster's members), or says why there is none; nil: always the primary.
	Standby func() (Standby, string, bool)
	// Metrics may be nil.
	Metrics *Metrics
	// Period of the loop. Default DefaultPeriod.
	Period time.Duration
	// RetryAfter a failed scheduled backup. Default DefaultRetryAfter.
	RetryAfter time.Duration
}

// State is one database's backup state as this member sees it.
type State struct {
	Database string `json:"database"`
	Stanza   string `json:"stanza"`
	// Primary: this member archives and backs up now.
	Primary    bool        `json:"primary"`
	Repository string      `json:"repository"`
	Backups    int         `json:"backups"`
	Last       *BackupInfo `json:"last,omitempty"`
	// LastFrom is the member medic's newest backup copied its files from
	// (a streaming replica when there is one, else the primary), and
	// LastFromWhy why not a replica ("" when it was one).
	LastFrom    string `json:"last_from,omitempty"`
	LastFromWhy string `json:"last_from_why,omitempty"`
	// LastFull is the newest full backup's start.
	LastFull time.Time `json:"last_full,omitzero"`
	// Failures counts failed backups since medic started; LastError is the newest.
	Failures    int       `json:"failures"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Archive is the archive's lag (primary only).
	Archive         *Lag      `json:"archive_lag,omitempty"`
	LastArchivedWAL string    `json:"last_archived_wal,omitempty"`
	LastArchivedAt  time.Time `json:"last_archived_at,omitzero"`
	ArchiveFailures int64     `json:"archive_failures"`
	// RepositoryFreeBytes is the space left where the repository lives.
	RepositoryFreeBytes uint64 `json:"repository_free_bytes"`
	// TLSServer is this member's pgBackRest TLS server (host:port, "" when
	// none), and TLSServerUp whether it runs.
	TLSServer   string `json:"tls_server,omitempty"`
	TLSServerUp bool   `json:"tls_server_up,omitempty"`
	// Running names the backup in progress ("" when none).
	Running string    `json:"running,omitempty"`
	At      time.Time `json:"at"`
}

// Loop keeps one database's archiving and scheduled backups on this member.
type Loop struct {
	o     LoopOptions
	m     *Manager
	sched Schedule

	run sync.Mutex // one pgBackRest backup at a time (scheduled or asked)

	mu        sync.Mutex
	st        State
	stanzaOK  bool // created while this member is the primary
	retryAt   time.Time
	wasLeader bool
	segment   Segment   // the primary's current WAL segment, for SwitchDue
	dueAt     time.Time // the next scheduled backup's slot, as the last step saw it (zero: none waiting)
}

// NewLoop checks the schedule.
func NewLoop(o LoopOptions) (*Loop, error) {
	m := o.Manager
	c := m.o.Config
	full, err := cron.Parse(c.Schedule.Full)
	if err != nil {
		return nil, fmt.Errorf("backup: schedule.full: %w", err)
	}
	s := Schedule{Full: full, DiffOff: c.Schedule.Diff == "off"}
	if !s.DiffOff {
		if s.Diff, err = cron.Parse(c.Schedule.Diff); err != nil {
			return nil, fmt.Errorf("backup: schedule.diff: %w", err)
		}
	}
	if o.Period <= 0 {
		o.Period = DefaultPeriod
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.Primary == nil {
		o.Primary = func() bool { return false }
	}
	l := &Loop{o: o, m: m, sched: s}
	l.st = State{Database: m.o.Cluster, Stanza: m.stanza, Repository: m.o.Repository, TLSServer: m.TLSListen()}
	return l, nil
}

// Manager is the loop's pgBackRest manager (restores use it).
func (l *Loop) Manager() *Manager { return l.m }

// State returns the latest state.
func (l *Loop) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.st
	return st
}

// Serve runs the loop until ctx ends: Step every period, at a scheduled
// backup's slot when that comes sooner (NextStep), and as soon as this
// member becomes the primary (StepDue); on the primary the archive.timeout check every ArchivePeriod; with TLS, this
// member's pgBackRest TLS server beside it (stopped before Serve returns).
func (l *Loop) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.m.ServeTLS(ctx, func(up bool) {
			l.mu.Lock()
			l.st.TLSServerUp = up
			l.mu.Unlock()
		}, func(kind, reason string) { l.record(ctx, kind, reason, nil) })
	}()
	next := l.m.clock.Now()
	for {
		primary := l.o.Primary()
		l.mu.Lock()
		stepped := l.wasLeader
		l.mu.Unlock()
		if StepDue(l.m.clock.Now(), next, primary, stepped) {
			l.Step(ctx)
			l.mu.Lock()
			due := l.dueAt
			l.mu.Unlock()
			next = NextStep(l.m.clock.Now(), l.o.Period, due)
		}
		if primary {
			l.enforceArchiveTimeout(ctx)
		}
		t := l.m.clock.NewTimer(min(ArchivePeriod(l.m.o.Config.Archive.Timeout.D()), max(0, next.Sub(l.m.clock.Now()))))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// enforceArchiveTimeout switches the primary's WAL segment when it has held
// writes for archive.timeout (see SwitchDue).
func (l *Loop) enforceArchiveTimeout(ctx context.Context) {
	a, err := ReadArchiver(ctx, l.m.LocalDSN())
	if err != nil {
		return
	}
	now := l.m.clock.Now()
	// The archiver was read anyway: the lag and the failed pushes in the
	// state (and the signals) are this fresh, not a loop period old.
	l.observed(now, a)
	l.mu.Lock()
	seen, due := SwitchDue(now, l.segment, a, l.m.o.Config.Archive.Timeout.D())
	l.segment = seen
	l.mu.Unlock()
	if !due {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, l.m.LocalDSN())
	if err != nil {
		return
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(cctx, "SELECT pg_switch_wal()"); err != nil {
		l.m.log.Warn("backup: switch WAL for archive.timeout", "err", err)
		return
	}
	l.m.log.Debug("backup: WAL switched: the segment held writes for archive.timeout", "segment", a.CurrentWAL)
}

// Step is one iteration: observe, and on the primary create the stanza
// once per term and take the backup that is due.
func (l *Loop) Step(ctx context.Context) {
	now := l.m.clock.Now()
	primary := l.o.Primary()
	l.mu.Lock()
	if primary && !l.wasLeader {
		l.stanzaOK = false // a new term: check the stanza against this primary
	}
	l.wasLeader = primary
	l.dueAt = time.Time{}
	l.st.Primary, l.st.At = primary, now
	stanzaOK := l.stanzaOK
	l.mu.Unlock()

	var fs syscall.Statfs_t
	if syscall.Statfs(l.m.o.Repository, &fs) == nil {
		l.mu.Lock()
		l.st.RepositoryFreeBytes = fs.Bavail * uint64(fs.Bsize)
		l.mu.Unlock()
	}
	if primary {
		l.observeArchiver(ctx, now)
		if !stanzaOK {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			err := l.m.StanzaCreate(cctx)
			cancel()
			if err != nil {
				l.failed(ctx, "stanza-create", err)
			} else {
				l.mu.Lock()
				l.stanzaOK = true
				l.mu.Unlock()
				l.record(ctx, "db.backup.stanza", fmt.Sprintf("stanza %s ready in %s; this member archives its WAL", l.m.stanza, l.m.o.Repository), nil)
			}
		}
	} else {
		l.mu.Lock()
		l.st.Archive = nil
		l.mu.Unlock()
	}
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	info, err := l.m.Info(ictx)
	cancel()
	if err == nil {
		l.setInfo(info)
	}
	l.mu.Lock()
	ready := primary && l.stanzaOK && err == nil && !now.Before(l.retryAt)
	lastFull, lastAny := l.st.LastFull, time.Time{}
	if l.st.Last != nil {
		lastAny = l.st.Last.Start
	}
	l.mu.Unlock()
	if !ready {
		return
	}
	typ, due := l.sched.Due(now, lastFull, lastAny)
	if !due {
		l.mu.Lock()
		l.dueAt = l.sched.NextDue(lastFull, lastAny)
		l.mu.Unlock()
		return
	}
	if _, err := l.Backup(ctx, typ, "schedule"); err != nil {
		l.mu.Lock()
		l.retryAt = now.Add(l.o.RetryAfter)
		l.mu.Unlock()
	}
}

func (l *Loop) setInfo(info Info) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.st.Backups = len(info.Backups)
	l.st.Last = info.Last()
	l.st.LastFull = time.Time{}
	for _, b := range info.Backups {
		if b.Type == Full {
			l.st.LastFull = b.Start
		}
	}
	if l.o.Metrics != nil && l.st.Last != nil {
		l.o.Metrics.last(l.m.o.Cluster, *l.st.Last)
	}
}

// Backup takes a backup now (the schedule's, or an operator's: by names
// who asked) on the primary, and records its start and its end.
func (l *Loop) Backup(ctx context.Context, typ, by string) (BackupInfo, error) {
	if !l.o.Primary() {
		return BackupInfo{}, fmt.Errorf("backup: this member is not the primary: ask the primary's agent")
	}
	l.run.Lock()
	defer l.run.Unlock()
	l.mu.Lock()
	l.st.Running = typ
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.st.Running = ""
		l.mu.Unlock()
	}()
	sb, why, ok := Standby{}, "no replica lookup on this agent", false
	if l.o.Standby != nil {
		sb, why, ok = l.o.Standby()
	}
	from, role := l.o.Member, "primary"
	if ok {
		from, role = sb.Member, "replica"
	}
	l.record(ctx, "db.backup.started", fmt.Sprintf("%s backup of %s started (%s), from %s %s", typ, l.m.o.Cluster, by, role, from),
		map[string]string{"type": typ, "from": from, "from_role": role, "why": why})
	bctx, cancel := context.WithTimeout(ctx, backupTimeout)
	var info Info
	var err error
	if ok {
		if info, err = l.m.BackupFrom(bctx, typ, &sb); err != nil {
			// The replica went away or fell behind: the backup is due, take it from the primary.
			why = fmt.Sprintf("the backup from replica %s failed: %v", sb.Member, err)
			from, role = l.o.Member, "primary"
			l.record(ctx, "db.backup.fallback", fmt.Sprintf("%s backup of %s: %s; taking it from the primary", typ, l.m.o.Cluster, why),
				map[string]string{"type": typ, "replica": sb.Member})
		}
	}
	if !ok || err != nil {
		info, err = l.m.Backup(bctx, typ)
	}
	cancel()
	if err != nil {
		l.failed(ctx, typ+" backup", err)
		return BackupInfo{}, err
	}
	l.setInfo(info)
	l.mu.Lock()
	l.st.LastFrom, l.st.LastFromWhy = from, why
	l.mu.Unlock()
	last := *info.Last()
	reason := fmt.Sprintf("%s backup %s from %s %s: %d bytes in %v", typ, last.Label, role, from, last.Size, last.Duration())
	if why != "" {
		reason += " (" + why + ")"
	}
	l.record(ctx, "db.backup.done", reason,
		map[string]string{"type": typ, "label": last.Label, "size_bytes": fmt.Sprint(last.Size),
			"duration_seconds": fmt.Sprintf("%.0f", last.Duration().Seconds()), "from": from, "from_role": role, "why": why})
	return last, nil
}

func (l *Loop) failed(ctx context.Context, what string, err error) {
	l.mu.Lock()
	l.st.Failures++
	l.st.LastError, l.st.LastErrorAt = fmt.Sprintf("%s: %v", what, err), l.m.clock.Now()
	l.mu.Unlock()
	if l.o.Metrics != nil {
		l.o.Metrics.failures.WithLabelValues(l.m.o.Cluster).Inc()
	}
	l.record(ctx, "db.backup.failed", fmt.Sprintf("%s of %s failed: %v", what, l.m.o.Cluster, err), map[string]string{"what": what})
}

func (l *Loop) record(ctx context.Context, kind, reason string, fields map[string]string) {
	if l.o.Record != nil {
		l.o.Record(ctx, kind, reason, fields)
	} else {
		l.m.log.Info(reason, "kind", kind)
	}
}

// archiverSQL reads pg_stat_archiver and the current WAL position (primary only).
const archiverSQL = `SELECT archived_count, coalesce(last_archived_wal, ''), coalesce(last_archived_time, 'epoch'),
  failed_count, coalesce(last_failed_wal, ''), coalesce(last_failed_time, 'epoch'),
  pg_walfile_name(pg_current_wal_lsn()), (pg_walfile_name_offset(pg_current_wal_lsn())).file_offset,
  (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), pg_postmaster_start_time()
FROM pg_stat_archiver`

// ReadArchiver reads the archiver's statistics from the postgres at dsn.
func ReadArchiver(ctx context.Context, dsn string) (Archiver, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, dsn)
	if err != nil {
		return Archiver{}, fmt.Errorf("backup: read the archiver: %w", err)
	}
	defer c.Close(context.Background())
	var a Archiver
	var off int32
	err = c.QueryRow(cctx, archiverSQL).Scan(&a.ArchivedCount, &a.LastArchivedWAL, &a.LastArchivedAt, &a.FailedCount,
		&a.LastFailedWAL, &a.LastFailedAt, &a.CurrentWAL, &off, &a.SegmentSize, &a.Since)
	if err != nil {
		return Archiver{}, fmt.Errorf("backup: read the archiver: %w", err)
	}
	a.CurrentOffset = int64(off)
	if a.LastArchivedAt.Unix() == 0 {
		a.LastArchivedAt = time.Time{}
	}
	if a.LastFailedAt.Unix() == 0 {
		a.LastFailedAt = time.Time{}
	}
	return a, nil
}

// LocalDSN connects to this member's postgres through its unix socket.
func (m *Manager) LocalDSN() string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable application_name=medic-backup", m.SocketDir(), m.o.Port, m.o.Superuser)
}

func (l *Loop) observeArchiver(ctx context.Context, now time.Time) {
	a, err := ReadArchiver(ctx, l.m.LocalDSN())
	if err != nil {
		l.m.log.Warn("backup: archiver", "err", err)
		return
	}
	l.observed(now, a)
}

// observed puts the primary's archiver, read at now, into the state and the metrics.
func (l *Loop) observed(now time.Time, a Archiver) {
	lag := ArchiveLag(now, a)
	l.mu.Lock()
	l.st.Archive = &lag
	l.st.LastArchivedWAL, l.st.LastArchivedAt, l.st.ArchiveFailures = a.LastArchivedWAL, a.LastArchivedAt, a.FailedCount
	free := l.st.RepositoryFreeBytes
	l.mu.Unlock()
	if mt := l.o.Metrics; mt != nil {
		db := l.m.o.Cluster
		mt.lagSeconds.WithLabelValues(db).Set(lag.Seconds)
		mt.lagSegments.WithLabelValues(db).Set(float64(lag.Segments))
		mt.archiveFailed.WithLabelValues(db).Set(float64(a.FailedCount))
		mt.repoFree.WithLabelValues(db).Set(float64(free))
	}
}

// Metrics are the medic_backup_* series.
type Metrics struct {
	lastSuccess, lastSize, lastDuration *prometheus.GaugeVec
	failures                            *prometheus.CounterVec
	lagSeconds, lagSegments             *prometheus.GaugeVec
	archiveFailed, repoFree             *prometheus.GaugeVec
}

// NewMetrics registers the series on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	g := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"database"})
	}
	m := &Metrics{
		lastSuccess:   g("medic_backup_last_success_timestamp_seconds", "End of the newest backup in the repository (Unix time)."),
		lastSize:      g("medic_backup_last_size_bytes", "Size of the database the newest backup restores."),
		lastDuration:  g("medic_backup_last_duration_seconds", "How long the newest backup took."),
		failures:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medic_backup_failures_total", Help: "Failed backups and stanza creations on this member."}, []string{"database"}),
		lagSeconds:    g("medic_backup_archive_lag_seconds", "Seconds since WAL last reached the archive while WAL waits to (primary only)."),
		lagSegments:   g("medic_backup_archive_lag_segments", "Completed WAL segments not yet archived (primary only)."),
		archiveFailed: g("medic_backup_archive_failed_count", "Failed archive-push attempts (pg_stat_archiver.failed_count)."),
		repoFree:      g("medic_backup_repository_free_bytes", "Space left on the repository's file system."),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.lastSuccess, m.lastSize, m.lastDuration, m.failures, m.lagSeconds, m.lagSegments, m.archiveFailed, m.repoFree} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("backup: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (mt *Metrics) last(db string, b BackupInfo) {
	mt.lastSuccess.WithLabelValues(db).Set(float64(b.Stop.Unix()))
	mt.lastSize.WithLabelValues(db).Set(float64(b.Size))
	mt.lastDuration.WithLabelValues(db).Set(b.Duration().Seconds())
}
