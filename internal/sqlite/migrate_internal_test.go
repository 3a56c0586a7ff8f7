package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

func TestMigrateIsAtomicAndIncremental(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", dsn(filepath.Join(t.TempDir(), "m.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	version := func() int {
		var v int
		if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	tableExists := func(name string) bool {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = ?", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	steps := []string{"CREATE TABLE a (x INTEGER)"}
	if err := migrate(ctx, db, steps); err != nil {
		t.Fatal(err)
	}
	if version() != 1 || !tableExists("a") {
		t.Fatalf("after step 1: version %d, a exists %v", version(), tableExists("a"))
	}

	// Step 2 succeeds, step 3 fails: both roll back together.
	steps = append(steps, "CREATE TABLE b (x INTEGER)", "CREATE TABLE a (x INTEGER)")
	if err := migrate(ctx, db, steps); err == nil {
		t.Fatal("failing migration returned nil")
	}
	if version() != 1 || tableExists("b") {
		t.Fatalf("after failed migration: version %d, b exists %v; want 1, false", version(), tableExists("b"))
	}

	steps[2] = "CREATE TABLE c (x INTEGER)"
	if err := migrate(ctx, db, steps); err != nil {
		t.Fatal(err)
	}
	if version() != 3 || !tableExists("b") || !tableExists("c") {
		t.Fatalf("after fixed migration: version %d", version())
	}
	if err := migrate(ctx, db, steps); err != nil {
		t.Fatalf("re-running applied migrations: %v", err)
	}
}
