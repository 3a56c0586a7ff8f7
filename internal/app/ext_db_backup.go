package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/backup"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/ports"
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
	return &backup.Options{Cluster: name, Config: b, Repository: repo, Data: cfg.Postgres.Data, Port: port,
		Superuser: cfg.Postgres.Superuser, BinDir: cfg.Postgres.BinDir, StateDir: cfg.Postgres.Data + ".backup",
		Clock: m.Clock, Logger: m.Logger.With("component", "backup", "db", name)}, nil
}

// startBackup makes the member's backup loop once its postgres manager exists.
func startBackup(m *Main, o *backup.Options, agent *pgha.Agent, mets *backup.Metrics) (*backup.Loop, error) {
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
	return backup.NewLoop(backup.LoopOptions{Manager: mgr, Metrics: mets,
		Primary: func() bool {
			_, writable, _, _ := pg.State()
			return writable
		},
		Record: func(ctx context.Context, kind, reason string, fields map[string]string) {
			m.Record(ctx, medic.Event{Time: m.Clock.Now(), Kind: medic.EventKind(kind), Actor: "db:" + agent.Name(),
				Target: "db/" + name, Reason: reason, Fields: fields})
		}})
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
func parseTarget(s string) (time.Time, error) {
	if s == "" || s == "latest" {
		return backup.Latest, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want latest or an RFC 3339 time such as 2026-03-01T10:00:00Z", s)
	}
	return t, nil
}

// runRestore restores into dir and starts the scratch postgres; without
// keep it stops it and removes dir once it accepted writes.
func runRestore(ctx context.Context, mgr *backup.Manager, dir string, target time.Time, keep bool) (RestoreDoc, error) {
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
	doc.Target = "latest"
	if !target.IsZero() {
		doc.Target = target.UTC().Format(time.RFC3339Nano)
	}
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
