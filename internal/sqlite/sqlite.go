// Package sqlite is medic's embedded store: one SQLite database in the data
// directory, opened through modernc.org/sqlite (pure Go, no cgo) so that medic
// stays a single static binary and `medic demo` needs nothing installed.
//
// Every connection runs in WAL mode with synchronous=FULL, so a committed
// transaction has been fsynced to the write-ahead log before Commit returns:
// callers such as the audit log may treat "committed" as "durable".
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the name of the database file inside the data directory.
const FileName = "medic.db"

// BusyTimeout is how long a statement waits for a lock held by another
// connection (or process, e.g. `medic audit verify` next to `medic run`)
// before failing with SQLITE_BUSY. Writes are short single-row transactions,
// so seconds of waiting already means something is wrong.
const BusyTimeout = 5 * time.Second

// DB is an open store. Its methods are safe for concurrent use.
type DB struct {
	dir  string
	path string
	db   *sql.DB
}

// Open opens dir/medic.db, creating dir (0700) and the file (0600) when they
// do not exist, and applies the pending schema migrations. It refuses a
// database whose schema is newer than this binary knows, rather than run old
// code against new tables.
func Open(dir string) (*DB, error) {
	if dir == "" {
		return nil, errors.New("sqlite: open: empty data directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create data directory: %w", err)
	}
	path := filepath.Join(abs, FileName)
	// Create the file ourselves so it starts private: SQLite would create it
	// 0644 (minus umask), and gives the -wal and -shm files the mode of the
	// database file.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: create %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: create %s: %w", path, err)
	}

	sqldb, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db := &DB{dir: abs, path: path, db: sqldb}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.checkPragmas(ctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate(ctx, sqldb, migrations); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// Bounds of the write-ahead log.
const (
	// WALCheckpointPages: the WAL is copied into the database once it holds
	// this many pages (128, 512 KiB with 4 KiB pages; SQLite's default is 1 000).
	WALCheckpointPages = 128
	// WALSizeLimit: after a checkpoint the WAL file is truncated to at most
	// this many bytes (1 MiB; SQLite's default leaves it at its largest).
	WALSizeLimit = 1 << 20
)

// dsn builds the connection string. The pragmas are per connection, so they
// go into the DSN, which the driver applies to every connection in the pool.
// _txlock=immediate makes read-write transactions take the write lock at
// BEGIN: a deferred transaction that reads and then writes can fail with
// SQLITE_BUSY at its first write without busy_timeout helping. Read-only
// transactions (sql.TxOptions{ReadOnly: true}) stay deferred.
func dsn(path string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	// The WAL is the store's hidden disk use: every commit appends whole
	// pages (about 12 KiB per audit record), and by default it is copied
	// back only past 1 000 pages (4 MiB) and never shrinks. On a small or
	// nearly full data_dir it was the WAL that filled the disk, and after
	// space was freed the held audit records filled it again (issue 12). So
	// checkpoint past WALCheckpointPages and cut the file back to
	// WALSizeLimit after each checkpoint.
	q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", WALCheckpointPages))
	q.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", WALSizeLimit))
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	return u.String()
}

// checkPragmas confirms the settings durability depends on took effect:
// journal_mode=WAL silently stays "delete" on file systems without shared
// memory support, and a typo in a pragma is otherwise ignored.
func (db *DB) checkPragmas(ctx context.Context) error {
	conn, err := db.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal_mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("journal_mode is %q, want wal", mode)
	}
	var sync int
	if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return fmt.Errorf("read synchronous: %w", err)
	}
	if sync != 2 { // FULL
		return fmt.Errorf("synchronous is %d, want 2 (FULL)", sync)
	}
	return nil
}

// Close closes every connection. SQLite checkpoints the WAL into the main
// file when the last connection closes.
func (db *DB) Close() error {
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("sqlite: close %s: %w", db.path, err)
	}
	return nil
}

// SQL returns the underlying pool for packages that own their queries (audit).
// Read-write transactions begun on it are BEGIN IMMEDIATE.
func (db *DB) SQL() *sql.DB { return db.db }

// Dir returns the absolute data directory the database lives in; packages
// keep sidecar files (audit.head) next to it.
func (db *DB) Dir() string { return db.dir }

// Path returns the absolute path of the database file.
func (db *DB) Path() string { return db.path }

// WithTx runs fn in a read-write (BEGIN IMMEDIATE) transaction and commits
// when fn returns nil; otherwise it rolls back and returns fn's error. When
// WithTx returns nil the transaction is durable (synchronous=FULL).
func (db *DB) WithTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the error from fn is the one worth reporting
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// SchemaVersion returns the database's user_version: the number of
// migrations applied.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := db.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlite: read user_version: %w", err)
	}
	return v, nil
}
