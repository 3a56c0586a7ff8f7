package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// The database tests' PostgreSQL binaries: pgtest.BinDir, but with an
// initdb that copies one cluster made once per test process. initdb took
// 4 s of every bootstrap on the 2-core CI machine (more under load), and
// what the tests exercise is what medic does around it (claim the
// initialize key, start read-write, campaign), not initdb's own output.
// Every other program is a symlink to the real one, so medic runs exactly
// what it runs in production: it calls <bin_dir>/initdb with its own
// arguments. Called with any other arguments, the stand-in runs the real
// initdb.
var (
	pgBinOnce sync.Once
	pgBinDir  string // the stand-in directory ("" until made)
	pgBinRoot string // holds it and the template cluster; removed by TestMain
	pgBinErr  error
)

// medicInitdbArgs are the arguments medic's pgha.(*Postgres).InitDB passes
// after "-D <data>" for the default superuser; the template is made with
// them.
const medicInitdbArgs = "-U postgres --auth=trust -E UTF8 --locale=C --no-instructions"

// prepareTestPGBinDir makes the stand-in bin_dir (TestMain starts it
// beside the build of medic) when PostgreSQL is installed.
func prepareTestPGBinDir() {
	if _, err := os.Stat(filepath.Join(pgtest.BinDir, "initdb")); err == nil {
		pgBinOnce.Do(func() { pgBinDir, pgBinErr = makePGBinDir() })
	}
}

// testPGBinDir returns the stand-in bin_dir, making it on first use (or
// waiting for TestMain's).
func testPGBinDir(t *testing.T) string {
	t.Helper()
	pgBinOnce.Do(func() { pgBinDir, pgBinErr = makePGBinDir() })
	if pgBinErr != nil {
		t.Fatalf("cached initdb: %v", pgBinErr)
	}
	return pgBinDir
}

func makePGBinDir() (string, error) {
	root, err := os.MkdirTemp("", "medic-e2e-pgbin-")
	if err != nil {
		return "", err
	}
	pgBinRoot = root
	// The postgres user (medic drops to it to run initdb) reads the
	// template and runs the script.
	if err := os.Chmod(root, 0o755); err != nil {
		return "", err
	}
	bin, tmpl := filepath.Join(root, "bin"), filepath.Join(root, "template")
	if err := os.Mkdir(bin, 0o755); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(pgtest.BinDir)
	if err != nil {
		return "", fmt.Errorf("list %s: %w", pgtest.BinDir, err)
	}
	for _, e := range entries {
		if e.Name() == "initdb" {
			continue
		}
		if err := os.Symlink(filepath.Join(pgtest.BinDir, e.Name()), filepath.Join(bin, e.Name())); err != nil {
			return "", err
		}
	}
	realInitdb := filepath.Join(pgtest.BinDir, "initdb")
	args := append([]string{"-D", tmpl}, strings.Fields(medicInitdbArgs)...)
	cmd := exec.Command(realInitdb, args...)
	if os.Getuid() == 0 {
		// initdb refuses root; medic runs it as the postgres user.
		u, err := user.Lookup("postgres")
		if err != nil {
			return "", fmt.Errorf("look up the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		if err := os.Chown(root, uid, gid); err != nil {
			return "", err
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", realInitdb, strings.Join(args, " "), err, out)
	}
	// medic empties (and creates, mode 0700) the data directory before it
	// calls initdb; the copy goes into it.
	script := fmt.Sprintf(`#!/bin/sh
# medic e2e: a cached initdb (e2e/pgbin_test.go).
if [ $# -eq 9 ] && [ "$1" = -D ] && [ "$3 $4 $5 $6 $7 $8 $9" = %q ]; then
  mkdir -p -m 0700 "$2" && cp -a %q/. "$2"/ && echo "initdb: copied the e2e template cluster" && exit 0
  exit 1
fi
exec %q "$@"
`, medicInitdbArgs, tmpl, realInitdb)
	if err := os.WriteFile(filepath.Join(bin, "initdb"), []byte(script), 0o755); err != nil {
		return "", err
	}
	return bin, nil
}

// removePGBinDir removes the stand-in and its template (TestMain, after
// the tests).
func removePGBinDir() {
	pgBinOnce.Do(func() {}) // waits for a making still under way, or stops one from starting
	if pgBinRoot != "" {
		os.RemoveAll(pgBinRoot)
	}
}
