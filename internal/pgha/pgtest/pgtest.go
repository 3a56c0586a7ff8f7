// Package pgtest holds what tests against a real PostgreSQL 15 share: the
// check that it is installed, and connections to a member by address.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/medic-dev/medic/internal/etcd/etcdtest"
)

// BinDir is where Debian's postgresql-15 package installs the server.
const BinDir = "/usr/lib/postgresql/15/bin"

// Require skips the test without PostgreSQL 15 or etcd, naming the missing
// package, and fails it instead under MEDIC_REQUIRE_INTEGRATION=1.
func Require(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat(filepath.Join(BinDir, "postgres")); err != nil {
		msg := BinDir + "/postgres not found (install the Debian package postgresql-15)"
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	etcdtest.Require(tb, "etcd", "etcd-server")
}

func dsn(addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable", host, port)
}

// Connect opens a connection to the postgres at addr as user postgres,
// closed when the test ends.
func Connect(tb testing.TB, addr string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn(addr))
	if err != nil {
		tb.Fatalf("connect to %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// Writable reports whether the postgres at addr answers, within 200ms, as a
// primary (not in recovery).
func Writable(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn(addr))
	if err != nil {
		return false
	}
	defer c.Close(ctx)
	var rec bool
	return c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec) == nil && !rec
}
