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
