package dbproxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/medic-dev/medic/internal/dbproxy"
)

// A listener with no primary to route to answers the startup with 57P03,
// whether or not the client asks for SSL first (pgx's default prefer does).
func TestNoPrimaryAnswers57P03(t *testing.T) {
	r := newRouter(t)
	r.Route(nil, nil)
	for _, ssl := range []string{"disable", "prefer"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app@%s/app?sslmode=%s", r.PrimaryAddr(), ssl))
		cancel()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != dbproxy.CannotConnectNow {
			t.Fatalf("sslmode=%s: got %v, want SQLSTATE 57P03", ssl, err)
		}
	}
}

// libpq moves to the next host of a multi-host connection string on 57P03
// (on a bare close it gave up: issue 14). Two listeners without a primary:
// psql must report both hosts' refusals.
func TestLibpqTriesTheNextHost(t *testing.T) {
	psql := ""
	for _, p := range []string{"/usr/lib/postgresql/15/bin/psql", "/usr/bin/psql"} {
		if _, err := os.Stat(p); err == nil {
			psql = p
			break
		}
	}
	if psql == "" {
		msg := "psql not found (install the Debian package postgresql-client-15)"
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	a, b := newRouter(t), newRouter(t)
	a.Route(nil, nil)
	b.Route(nil, nil)
	_, pa, _ := net.SplitHostPort(a.PrimaryAddr().String())
	_, pb, _ := net.SplitHostPort(b.PrimaryAddr().String())
	cmd := exec.Command(psql, fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%s,%s user=app dbname=app connect_timeout=2", pa, pb), "-c", "SELECT 1")
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=2")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("psql connected through listeners with no primary: %s", out)
	}
	if !strings.Contains(string(out), "port "+pb) {
		t.Fatalf("psql did not try the second host after the first refused:\n%s", out)
	}
	if !strings.Contains(string(out), "cannot connect now") {
		t.Fatalf("psql did not see the 57P03 refusal:\n%s", out)
	}
}
