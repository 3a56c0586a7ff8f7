package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations is the schema history. Entry i brings the schema from version i
// to i+1 and PRAGMA user_version records how many have run. Rules:
// append only; never edit or reorder an entry that has shipped (databases in
// the field have already run it); one entry may hold several statements.
var migrations = []string{
	// 1: the audit log (internal/audit). Rows are written only by
	// audit.Log.Append and never updated or deleted; the triggers make an
	// accidental UPDATE or DELETE in code fail loudly. They do not stop
	// someone with the file and a sqlite shell (they can drop the triggers):
	// the hash chain and the head are what detect that.
	`
CREATE TABLE audit (
	seq         INTEGER PRIMARY KEY,  -- 1, 2, 3 … without gaps
	time_ns     INTEGER NOT NULL,     -- UTC, Unix nanoseconds
	actor       TEXT    NOT NULL,
	kind        TEXT    NOT NULL,
	target      TEXT    NOT NULL,
	reason      TEXT    NOT NULL,
	correlation TEXT    NOT NULL,
	fields      TEXT    NOT NULL,     -- JSON object, keys sorted
	prev        TEXT    NOT NULL,     -- hex SHA-256
	hash        TEXT    NOT NULL      -- hex SHA-256
) STRICT;
CREATE INDEX audit_time   ON audit (time_ns);
CREATE INDEX audit_target ON audit (target, seq);
CREATE INDEX audit_actor  ON audit (actor, seq);
CREATE INDEX audit_kind   ON audit (kind, seq);
CREATE TABLE audit_head (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	seq  INTEGER NOT NULL,
	hash TEXT    NOT NULL
) STRICT;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
`,
	// 2: the remediation engine's memory (internal/remedy): each runbook's
	// trust level and record, approvals, incidents and the pause/dry-run
	// switches. Approvals and incidents are JSON documents with the columns
	// the engine queries by; rows are updated in place (the audit log, not
	// these tables, is the history).
	`
CREATE TABLE remedy_runbooks (
	name        TEXT    PRIMARY KEY,
	level       TEXT    NOT NULL,     -- observe | propose | act | silent
	configured  TEXT    NOT NULL,     -- the starting level of the config the record began with
	consecutive INTEGER NOT NULL,     -- verified successes since the last failure or promotion
	runs        INTEGER NOT NULL,
	successes   INTEGER NOT NULL,
	failures    INTEGER NOT NULL,
	last_run_ns INTEGER NOT NULL,     -- UTC Unix nanoseconds, 0 = never
	ttrs        TEXT    NOT NULL      -- JSON array of recent recovery times, nanoseconds
) STRICT;
CREATE TABLE remedy_approvals (
	id          TEXT    PRIMARY KEY,
	state       TEXT    NOT NULL,     -- pending | approved | denied | expired | aborted
	created_ns  INTEGER NOT NULL,
	doc         TEXT    NOT NULL      -- JSON remedy.Approval
) STRICT;
CREATE INDEX remedy_approvals_state ON remedy_approvals (state, created_ns);
CREATE TABLE remedy_incidents (
	id          TEXT    PRIMARY KEY,
	target      TEXT    NOT NULL,
	state       TEXT    NOT NULL,     -- open | closed
	opened_ns   INTEGER NOT NULL,
	doc         TEXT    NOT NULL      -- JSON remedy.Incident
) STRICT;
CREATE INDEX remedy_incidents_state ON remedy_incidents (state, opened_ns);
CREATE TABLE remedy_settings (
	key         TEXT    PRIMARY KEY,  -- paused, dry_run
	value       TEXT    NOT NULL
) STRICT;
`,
	// 3: the dashboard's metrics history (internal/ui): one row per series
	// per sample, every 10 s, deleted after an hour. Rows are rewritten in
	// place; the audit log, not this table, is the record.
	`
CREATE TABLE ui_history (
	series      TEXT    NOT NULL,     -- service/web/rps, instance/web/0/rss_bytes …
	t           INTEGER NOT NULL,     -- UTC Unix seconds of the sample
	value       REAL    NOT NULL,
	PRIMARY KEY (series, t)
) STRICT, WITHOUT ROWID;
CREATE INDEX ui_history_t ON ui_history (t);
`,
	// 4: drill results (internal/drill): one row per finished drill, the
	// columns `medic drills` and `medic status` query by, and the whole
	// result as JSON for the reports. A row is written once, when the drill
	// ends; the drill.* audit records are the history.
	`
CREATE TABLE drills (
	id            INTEGER PRIMARY KEY,
	scenario      TEXT    NOT NULL,
	failure_mode  TEXT    NOT NULL,
	service       TEXT    NOT NULL,
	target        TEXT    NOT NULL,     -- web/1, or the service
	state         TEXT    NOT NULL,     -- passed | failed | aborted
	passed        INTEGER NOT NULL,
	started_ns    INTEGER NOT NULL,     -- UTC Unix nanoseconds
	ended_ns      INTEGER NOT NULL,
	ttd_seconds   REAL,                 -- NULL: not detected
	ttr_seconds   REAL,                 -- NULL: not recovered
	client_errors INTEGER NOT NULL,
	requests      INTEGER NOT NULL,
	summary       TEXT    NOT NULL,
	result        TEXT    NOT NULL      -- JSON drill.Result
) STRICT;
CREATE INDEX drills_mode ON drills (failure_mode, started_ns);
`,
	// 5: releases (internal/release): each version of a service's spec that
	// medic ran, with who deployed it, how and its outcome. A row is written
	// when the release starts and its outcome columns once, when it ends;
	// rows past a service's history length are deleted oldest first.
	`
CREATE TABLE releases (
	seq           INTEGER PRIMARY KEY,
	service       TEXT    NOT NULL,
	version       TEXT    NOT NULL,
	source        TEXT    NOT NULL,     -- config | deploy | rollback
	base          TEXT    NOT NULL,     -- hash of the config file's spec it was made from
	spec          TEXT    NOT NULL,     -- JSON config.Service
	actor         TEXT    NOT NULL,
	reason        TEXT    NOT NULL,
	created_ns    INTEGER NOT NULL,     -- UTC Unix nanoseconds
	outcome       TEXT    NOT NULL,     -- rolling-out | live | failed | superseded
	ended_ns      INTEGER,              -- NULL: under way
	duration_s    REAL,
	requests      INTEGER,              -- through the proxy while it rolled out; NULL: not measured
	client_errors INTEGER,
	detail        TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX releases_service ON releases (service, seq);
`,
}

// migrate applies list[v:] where v is the database's user_version, all in
// one transaction with the version bump, so a failed migration leaves the
// schema as it was.
func migrate(ctx context.Context, db *sql.DB, list []string) error {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: two processes opening at once serialise here
	if err != nil {
		return fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("migrate: read user_version: %w", err)
	}
	if v > len(list) {
		return fmt.Errorf("migrate: schema version %d is newer than this binary knows (%d); refusing to use it", v, len(list))
	}
	if v == len(list) {
		return nil
	}
	for i := v; i < len(list); i++ {
		if _, err := tx.ExecContext(ctx, list[i]); err != nil {
			return fmt.Errorf("migrate: to version %d: %w", i+1, err)
		}
	}
	// PRAGMA takes no bind parameters; len(list) is an int we own.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(list))); err != nil {
		return fmt.Errorf("migrate: set user_version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}
