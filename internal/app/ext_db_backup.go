package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/backup"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/ports"
	"github.com/medic-dev/medic/internal/signal"
)

// backupOptions are a database's pgBackRest options before its member
// exists (the archiving settings go into its postgres); nil without backup.
// The state directory sits beside the data directory, which the postgres
// user can reach by construction (the archive_command reads its config there).
func backupOptions(m *Main, name string, cfg *config.Database) (*backup.Options, error) {
	b := cfg.Backup
	if b == nil {
		return nil, nil
	}
	_, ps, err := net.SplitHostPort(cfg.Postgres.Listen)
	if err != nil {
		return nil, fmt.Errorf("postgres.listen: %w", err)
	}
	port, _ := strconv.Atoi(ps)
	repo := b.RepositoryPath(m.cfg.Path)
	if !filepath.IsAbs(repo) {
		if repo, err = filepath.Abs(repo); err != nil {
			return nil, err
		}
	}
	o := &backup.Options{Cluster: name, Config: b, Repository: repo, Data: cfg.Postgres.Data, Port: port,
		Superuser: cfg.Postgres.Superuser, BinDir: cfg.Postgres.BinDir, StateDir: backup.StateDirOf(cfg.Postgres.Data),
		Clock: m.Clock, Logger: m.Logger.With("component", "backup", "db", name)}
	if b.TLS != nil {
		o.TLS = backupTLS(b.TLS, m.cfg.Path, cfg.Postgres.ConnectAddress)
	}
	return o, nil
}

// backupTLS is backup.tls with its defaults: the server listens on the host
// of postgres.connect_address, port 8432, unless set, and serves clients
// whose certificate carries cert's common name unless clients are listed.
func backupTLS(t *config.BackupTLS, configPath, connect string) *backup.TLS {
	cert, key, ca := t.Files(configPath)
	pgHost, _, _ := net.SplitHostPort(connect)
	listen := t.Listen
	if listen == "" {
		listen = net.JoinHostPort(pgHost, strconv.Itoa(config.DefaultBackupTLSPort))
	}
	clients := t.Clients
	if len(clients) == 0 {
		clients = []string{config.CommonName(cert)}
	}
	return &backup.TLS{Cert: cert, Key: key, CA: ca, Listen: listen, Clients: clients}
}

// backupServerAddr is the address the other members reach this member's
// pgBackRest TLS server at ("" without one): tls.connect_address, else
// the listen address, with postgres.connect_address's host when it
// listens on every address.
func backupServerAddr(t *config.BackupTLS, o *backup.Options, connect string) string {
	if t == nil || o == nil || o.TLS == nil {
		return ""
	}
	return config.PublishedAddress(t.ConnectAddress, o.TLS.Listen, connect)
}

// startBackup makes the member's backup loop once its postgres manager exists.
func startBackup(m *Main, o *backup.Options, agent *pgha.Agent, mets *backup.Metrics, view *atomic.Pointer[pgha.View]) (*backup.Loop, error) {
	pg := agent.Postgres()
	o.Command = pg.Command
	o.UID, o.GID = pg.Owner()
	mgr, err := backup.New(*o)
	if err != nil {
		return nil, err
	}
	if err := mgr.Prepare(); err != nil {
		return nil, err
	}
	name := o.Cluster
	host, _ := os.Hostname()
	return backup.NewLoop(backup.LoopOptions{Manager: mgr, Metrics: mets, Member: agent.Name(),
		Standby: func() (backup.Standby, string, bool) {
			v := view.Load()
			if v == nil {
				return backup.Standby{}, "the cluster's members are not known yet", false
			}
			return backup.ChooseStandby(backup.Self{Member: agent.Name(), Host: host, TLS: o.TLS != nil}, standbyCandidates(*v))
		},
		Primary: func() bool {
			_, writable, _, _ := pg.State()
			return writable
		},
		Record: func(ctx context.Context, kind, reason string, fields map[string]string) {
			m.Record(ctx, medic.Event{Time: m.Clock.Now(), Kind: medic.EventKind(kind), Actor: "db:" + agent.Name(),
				Target: "db/" + name, Reason: reason, Fields: fields})
		}})
}

// standbyCandidates are the members of v as backup.ChooseStandby reads them.
func standbyCandidates(v pgha.View) []backup.Candidate {
	var cs []backup.Candidate
	for _, mi := range v.Members {
		cs = append(cs, backup.Candidate{Member: mi.Name, Host: mi.Host, Data: mi.Data, Postgres: mi.Postgres,
			Replica: mi.Role == pgha.RoleReplica, Streaming: mi.Streaming, Upstream: mi.Upstream, Ready: mi.Ready, LagBytes: mi.LagBytes,
			Server: mi.BackupServer})
	}
	return cs
}

// backupStates returns the backup state of every database that has backups.
func backupStates(dbs []*dbMember) []backup.State {
	var out []backup.State
	for _, d := range dbs {
		if d.backup != nil {
			out = append(out, d.backup.State())
		}
	}
	return out
}

// backupRequest is the body of POST /v1/db/backup.
type backupRequest struct {
	Database string `json:"database"`
	Type     string `json:"type"` // full (default), diff, incr
}

func (h *dbAPI) backupNow(w http.ResponseWriter, r *http.Request) {
	var body backupRequest
	if err := api.DecodeBody(r, &body); err != nil {
		api.WriteError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if body.Type == "" {
		body.Type = backup.Full
	}
	d, err := h.pick(body.Database)
	if err != nil {
		api.WriteError(w, http.StatusNotFound, "%v", err)
		return
	}
	if d.backup == nil {
		api.WriteError(w, http.StatusConflict, "database %s has no backup section in the config", d.name)
		return
	}
	actor := api.ActorOf(r)
	info, err := d.backup.Backup(r.Context(), body.Type, actor)
	reason := fmt.Sprintf("%s backup of %s: %s", body.Type, d.name, info.Label)
	if err != nil {
		reason = fmt.Sprintf("%s backup of %s failed: %v", body.Type, d.name, err)
	}
	h.record(r.Context(), medic.Event{Kind: medic.EventAPIAction, Target: "db/" + d.name, Actor: actor, Reason: reason})
	if err != nil {
		api.WriteError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, info)
}

// RestoreRequest is the body of POST /v1/db/restore.
type RestoreRequest struct {
	Database string `json:"database"`
	// To is an RFC 3339 time, or "latest" (the end of the archive).
	To string `json:"to"`
	// Into is an empty or missing directory on the agent's host; with
	// AsNewCluster the agent picks one under its data directory.
	Into         string `json:"into,omitempty"`
	AsNewCluster bool   `json:"as_new_cluster,omitempty"`
	// Keep leaves the scratch postgres running (default); false stops it
	// once it accepted writes and removes the directory (a check).
	Keep *bool `json:"keep,omitempty"`
}

// RestoreDoc answers a restore.
type RestoreDoc struct {
	Database       string  `json:"database"`
	Dir            string  `json:"dir"`
	Addr           string  `json:"addr"`
	Target         string  `json:"target"`
	RestoreSeconds float64 `json:"restore_seconds"`
	RecoverSeconds float64 `json:"recover_seconds"`
	Running        bool    `json:"running"`
	Stop           string  `json:"stop,omitempty"` // the command that stops the scratch postgres
}

// restore is an operator's point-in-time restore into a scratch directory
// and a scratch postgres on a free port: never over a member, recorded in
// the audit log before it starts and when it ends.
func (h *dbAPI) restore(w http.ResponseWriter, r *http.Request) {
	var body RestoreRequest
	if err := api.DecodeBody(r, &body); err != nil {
		api.WriteError(w, http.StatusBadRequest, "%v", err)
		return
	}
	target, err := parseTarget(body.To)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, "to: %v", err)
		return
	}
	if (body.Into == "") == !body.AsNewCluster {
		api.WriteError(w, http.StatusBadRequest, "give exactly one of into (a directory) and as_new_cluster")
		return
	}
	d, err := h.pick(body.Database)
	if err != nil {
		api.WriteError(w, http.StatusNotFound, "%v", err)
		return
	}
	if d.backup == nil {
		api.WriteError(w, http.StatusConflict, "database %s has no backup section in the config", d.name)
		return
	}
	dir := body.Into
	if body.AsNewCluster {
		dir = filepath.Join(filepath.Dir(d.backup.Manager().ConfigPath()), "restores", d.name+"-"+time.Now().UTC().Format("20060102T150405"))
	}
	actor := api.ActorOf(r)
	h.record(r.Context(), medic.Event{Kind: medic.EventAPIAction, Target: "db/" + d.name, Actor: actor,
		Reason: fmt.Sprintf("restore of %s to %s into %s started", d.name, orLatest(body.To), dir)})
	doc, err := runRestore(r.Context(), d.backup.Manager(), dir, target, body.Keep == nil || *body.Keep)
	doc.Database = d.name
	reason := fmt.Sprintf("restore of %s to %s into %s: postgres on %s (restore %.1fs, recovery %.1fs)", d.name, orLatest(body.To), dir,
		doc.Addr, doc.RestoreSeconds, doc.RecoverSeconds)
	if err != nil {
		reason = fmt.Sprintf("restore of %s to %s into %s failed: %v", d.name, orLatest(body.To), dir, err)
	}
	h.record(r.Context(), medic.Event{Kind: medic.EventAPIAction, Target: "db/" + d.name, Actor: actor, Reason: reason})
	if err != nil {
		api.WriteError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, doc)
}

func orLatest(s string) string {
	if s == "" {
		return "latest"
	}
	return s
}

// parseTarget reads "latest" (or "") or an RFC 3339 time.
func parseTarget(s string) (backup.Target, error) {
	if s == "" || s == "latest" {
		return backup.Latest, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return backup.Target{}, fmt.Errorf("%q: want latest or an RFC 3339 time such as 2026-03-01T10:00:00Z", s)
	}
	return backup.Target{Time: t}, nil
}

// runRestore restores into dir and starts the scratch postgres; without
// keep it stops it and removes dir once it accepted writes.
func runRestore(ctx context.Context, mgr *backup.Manager, dir string, target backup.Target, keep bool) (RestoreDoc, error) {
	var doc RestoreDoc
	port, err := ports.Free(1)
	if err != nil {
		return doc, err
	}
	s, err := mgr.Restore(ctx, dir, port, target)
	if err != nil {
		return doc, err
	}
	doc.Dir, doc.Addr, doc.RestoreSeconds = s.Dir, s.Addr(), s.Restore.Seconds()
	doc.Target = target.String()
	if err := s.Start(ctx); err != nil {
		_ = s.Stop(context.WithoutCancel(ctx))
		return doc, err
	}
	doc.RecoverSeconds = s.Recover.Seconds()
	if !keep {
		return doc, s.Remove(context.WithoutCancel(ctx))
	}
	doc.Running = true
	doc.Stop = fmt.Sprintf("pg_ctl stop -D %s (as the postgres user), then remove the directory", s.Dir)
	return doc, nil
}

// restoreDrillWait bounds the wait for the archive to pass the drill's
// target, beyond archive.timeout: a longer wait is itself the finding.
const restoreDrillWait = 30 * time.Second

// restoreDrill is the db-restore injector. At the injection T it reads
// which WAL segment the primary archived last: if every member were lost at
// T, a restore would have that and nothing after it. It waits until the
// next segment reached the archive (recovery must read past its target),
// restores the newest backup plus the WAL up to the end of that segment
// into a scratch postgres, starts it, verifies it (pg_amcheck, the drill's
// writes) and measures: restore time (files, then recovery until it
// accepts writes) and data loss (the newest write acknowledged before T
// against the newest the restore holds), with the writes older than
// archive.timeout before T that are missing (none may be), then compares
// with the database's objectives. The scratch postgres is removed when the
// drill restores.
func (h *dbDrills) restoreDrill(ctx context.Context, t *drill.Target) (drill.Restore, error) {
	d, err := h.member(t.Service)
	if err != nil {
		return nil, err
	}
	if d.backup == nil {
		return nil, fmt.Errorf("database %s has no backup section: nothing to restore from", d.name)
	}
	mgr := d.backup.Manager()
	mi, err := primaryOf(ctx, d)
	if err != nil {
		return nil, err
	}
	primary := pgDSN(mi.Postgres, d.superuser)
	at := t.Clock.Now()
	arch, err := backup.ReadArchiver(ctx, primary)
	if err != nil {
		return nil, fmt.Errorf("the primary %s: %w", mi.Name, err)
	}
	lsn, ok := backup.LSNAfter(arch.LastArchivedWAL, arch.SegmentSize)
	if !ok {
		return nil, fmt.Errorf("the primary %s archived no WAL segment of its timeline yet (last: %q): take a backup and let it archive first", mi.Name, arch.LastArchivedWAL)
	}
	t.Note("at %s the primary %s had archived up to %s (%.1fs ago): the restore stops at %s", at.Format("15:04:05.000"), mi.Name,
		arch.LastArchivedWAL, at.Sub(arch.LastArchivedAt).Seconds(), lsn)
	timeout := mgr.Config().Archive.Timeout.D()
	deadline := at.Add(timeout + restoreDrillWait)
	for {
		a, err := backup.ReadArchiver(ctx, primary)
		if err == nil && a.LastArchivedWAL != arch.LastArchivedWAL && len(a.LastArchivedWAL) == 24 {
			break
		}
		if t.Clock.Now().After(deadline) {
			return nil, fmt.Errorf("the archive did not move past %s within archive.timeout %v + %v: archiving is stuck (last %q, %v)",
				arch.LastArchivedWAL, timeout, restoreDrillWait, a.LastArchivedWAL, err)
		}
		tm := t.Clock.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			tm.Stop()
			return nil, ctx.Err()
		case <-tm.C():
		}
	}
	port, err := ports.Free(1)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(filepath.Dir(mgr.ConfigPath()), "drills", fmt.Sprintf("restore-%d", t.Drill))
	rec := func(kind, reason string, fields map[string]string) {
		if h.record != nil {
			h.record(ctx, medic.Event{Time: t.Clock.Now(), Kind: medic.EventKind(kind), Target: t.Service, Actor: t.Actor(), Reason: reason, Fields: fields})
		}
	}
	rec("db.restore.started", fmt.Sprintf("restore of %s to %s (the archive at %s) into %s", d.name, lsn, at.Format("15:04:05.000"), dir), nil)
	s, err := mgr.Restore(ctx, dir, port, backup.Target{LSN: lsn, Exclusive: true})
	if err != nil {
		return nil, err
	}
	undo := func(rctx context.Context) error {
		if err := s.Remove(rctx); err != nil {
			return err
		}
		t.Note("scratch postgres on %s stopped, %s removed", s.Addr(), s.Dir)
		return nil
	}
	if err := s.Start(ctx); err != nil {
		return undo, err
	}
	total := s.Restore + s.Recover
	t.Figure("restore_seconds", s.Restore.Seconds())
	t.Figure("recover_seconds", s.Recover.Seconds())
	t.Figure("rto_seconds", total.Seconds())
	if bi := d.backup.State().Last; bi != nil && total > 0 {
		t.Figure("restored_bytes", float64(bi.Size))
		t.Figure("restore_mb_per_second", float64(bi.Size)/(1<<20)/total.Seconds())
	}
	checked, err := mgr.Amcheck(ctx, s.Port)
	switch {
	case err != nil:
		t.Fail("pg_amcheck on the restored data: " + err.Error())
	case checked:
		t.Note("pg_amcheck found every table and index of the restore intact")
	default:
		t.Note("pg_amcheck is not installed: no structural check")
	}
	loss, missing, newest, err := writesLost(ctx, primary, s.DSN(), t.Drill, at, timeout)
	if err != nil {
		t.Fail("read the drill's writes back: " + err.Error())
	} else {
		t.Figure("data_loss_seconds", loss.Seconds())
		t.Figure("missing_writes_beyond_archive_timeout", float64(missing))
		t.Note("the newest write the restore holds was acknowledged %s, %.3fs before the target's newest", newest, loss.Seconds())
		if missing > 0 {
			t.Fail(fmt.Sprintf("%d writes acknowledged more than archive.timeout (%v) before the target are missing from the restore", missing, timeout))
		}
	}
	if c := h.objectives(d.name); c != nil {
		if rto := c.RTO.D(); rto > 0 && total > rto {
			t.Fail(fmt.Sprintf("restore took %.1fs > RTO %v", total.Seconds(), rto))
		}
		if rpo := c.RPO.D(); err == nil && loss > rpo {
			t.Fail(fmt.Sprintf("data loss %.2fs > RPO %v", loss.Seconds(), rpo))
		}
	}
	rec("db.restore.verified", fmt.Sprintf("restored %s in %.1fs (files %.1fs, recovery %.1fs), data loss %.2fs", d.name, total.Seconds(),
		s.Restore.Seconds(), s.Recover.Seconds(), loss.Seconds()),
		map[string]string{"rto_seconds": fmt.Sprintf("%.3f", total.Seconds()), "data_loss_seconds": fmt.Sprintf("%.3f", loss.Seconds())})
	return undo, nil
}

func (h *dbDrills) objectives(name string) *config.Objectives {
	return h.objs[name]
}

func pgDSN(addr, user string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf("host=%s port=%s user=%s dbname=postgres sslmode=disable connect_timeout=5", host, port, user)
}

// writesLost compares the drill's writes (medic_drill_writes, one row per
// acknowledged transaction, stamped by the server) on the primary with the
// restore: the loss is the newest write before at on the primary minus the
// newest in the restore; missing counts the writes older than bound before
// at that the restore lacks.
func writesLost(ctx context.Context, primary, restored string, drillID int64, at time.Time, bound time.Duration) (loss time.Duration, missing int, newest string, err error) {
	q := func(dsn string) (time.Time, int, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, dsn)
		if err != nil {
			return time.Time{}, 0, err
		}
		defer c.Close(context.Background())
		var last time.Time
		var old int
		err = c.QueryRow(cctx, `SELECT coalesce(max(at) FILTER (WHERE at <= $2), 'epoch'), count(*) FILTER (WHERE at < $3)
			FROM medic_drill_writes WHERE drill = $1`, drillID, at, at.Add(-bound)).Scan(&last, &old)
		return last, old, err
	}
	pLast, pOld, err := q(primary)
	if err != nil {
		return 0, 0, "", fmt.Errorf("on the primary: %w", err)
	}
	rLast, rOld, err := q(restored)
	if err != nil {
		return 0, 0, "", fmt.Errorf("on the restore: %w", err)
	}
	if pLast.Unix() <= 0 {
		return 0, 0, "", fmt.Errorf("the primary holds no write of drill %d before the target: no load to measure with", drillID)
	}
	if rLast.Unix() <= 0 {
		return pLast.Sub(at.Add(-time.Hour)), pOld - rOld, "never", nil
	}
	return max(0, pLast.Sub(rLast)), max(0, pOld-rOld), rLast.Format("15:04:05.000"), nil
}

func hasBackups(c *config.Config) bool {
	for _, d := range c.Databases {
		if d != nil && d.Backup != nil {
			return true
		}
	}
	return false
}

// backupSignals turns the backup states into signals for conditions (a
// condition on backup_archive_lag_seconds above 5m pages). The archive's
// lag is the primary's only: a replica archives nothing.
func backupSignals(now time.Time, states []backup.State) []signal.Sample {
	var out []signal.Sample
	for _, st := range states {
		l := signal.Labels{signal.LabelDatabase: st.Database}
		add := func(name string, v float64) { out = append(out, signal.Sample{Name: name, Labels: l, T: now, V: v}) }
		add(signal.BackupFailuresTotal, float64(st.Failures))
		add(signal.BackupRepositoryFreeBytes, float64(st.RepositoryFreeBytes))
		if st.Last != nil {
			add(signal.BackupLastSuccessAgeSeconds, now.Sub(st.Last.Stop).Seconds())
		}
		if a := st.Archive; a != nil && st.Primary {
			add(signal.BackupArchiveLagSeconds, a.Seconds)
			add(signal.BackupArchiveLagSegments, float64(a.Segments))
			add(signal.BackupArchiveFailedCount, float64(st.ArchiveFailures))
		}
	}
	return out
}

// BootstrapDoc answers medic db bootstrap --from-backup.
type BootstrapDoc struct {
	Database string `json:"database"`
	Primary  string `json:"primary"`
	// Target is where the recovery stopped: "latest" or the time asked for.
	Target         string  `json:"target"`
	RestoreSeconds float64 `json:"restore_seconds"`
	RecoverSeconds float64 `json:"recover_seconds"`
	Seconds        float64 `json:"seconds"` // from the request to the new primary
}

// bootstrap makes this agent's member the new primary of a cluster that
// lost every member, from the repository: the newest backup and the whole
// archive are restored into its empty data directory (its loop does
// nothing meanwhile), the agent starts it, and a forced failover (the
// operator's) promotes it; the other members clone from it. Refused while
// the cluster has a primary or this member's data directory holds anything.
func (h *dbAPI) bootstrap(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Database string `json:"database"`
		// To is an RFC 3339 time, or "latest" (default): the end of the archive.
		To string `json:"to,omitempty"`
	}
	if err := api.DecodeBody(r, &body); err != nil {
		api.WriteError(w, http.StatusBadRequest, "%v", err)
		return
	}
	target, err := parseTarget(body.To)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, "to: %v", err)
		return
	}
	d, err := h.pick(body.Database)
	if err != nil {
		api.WriteError(w, http.StatusNotFound, "%v", err)
		return
	}
	if d.backup == nil {
		api.WriteError(w, http.StatusConflict, "database %s has no backup section in the config", d.name)
		return
	}
	st := d.agent.Status(r.Context())
	if !st.Etcd {
		api.WriteError(w, http.StatusConflict, "this agent cannot reach etcd: it cannot tell whether the cluster has a primary")
		return
	}
	if st.Leader != nil {
		api.WriteError(w, http.StatusConflict, "database %s has a primary (%s): bootstrap from backup is for a cluster that lost every member", d.name, st.Leader.Member)
		return
	}
	actor := api.ActorOf(r)
	start := time.Now()
	h.record(r.Context(), medic.Event{Kind: medic.EventAPIAction, Target: "db/" + d.name, Actor: actor,
		Reason: fmt.Sprintf("bootstrap of %s from backup to %s on %s started", d.name, target, d.agent.Name())})
	var s *backup.Scratch
	err = d.agent.Exclusive(r.Context(), "restore", func(ctx context.Context) error {
		port, err := ports.Free(1)
		if err != nil {
			return err
		}
		s, err = d.backup.Manager().RestoreMember(ctx, port, target)
		return err
	})
	var primary string
	if err == nil {
		// The agent starts the restored data read-only; promote it once it
		// runs. Its own loop may win an election first (it is the only
		// member and nothing is behind it): that is the same end.
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		for {
			primary, err = d.agent.Failover(ctx, d.agent.Name(), actor)
			if errors.Is(err, pgha.ErrAlreadyPrimary) {
				primary, err = d.agent.Name(), nil
			}
			if err == nil || !errors.Is(err, pgha.ErrRefused) || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		cancel()
	}
	reason := fmt.Sprintf("bootstrap of %s from backup to %s: %s is the primary", d.name, target, primary)
	if err != nil {
		reason = fmt.Sprintf("bootstrap of %s from backup to %s failed: %v", d.name, target, err)
	}
	h.record(r.Context(), medic.Event{Kind: medic.EventAPIAction, Target: "db/" + d.name, Actor: actor, Reason: reason})
	if err != nil {
		api.WriteError(w, dbErrStatus(err), "%v", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, BootstrapDoc{Database: d.name, Primary: primary, Target: target.String(), RestoreSeconds: s.Restore.Seconds(),
		RecoverSeconds: s.Recover.Seconds(), Seconds: time.Since(start).Seconds()})
}
