package pgtest

import (
	"crypto/sha256"
	"errors"
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
)

// InitdbArgs are the arguments pgha.(*Postgres).InitDB passes after
// "-D <data>" for the default superuser. The cached initdb copies its
// template only when called with exactly these.
const InitdbArgs = "-U postgres --auth=trust -E UTF8 --locale=C --no-instructions"

// CachedBinDir returns a directory that stands in for BinDir in tests:
// every PostgreSQL program in it is a symlink to the real one, except
// initdb, a script that copies a cluster the real initdb made once with
// InitdbArgs. initdb took 4 s of every bootstrap on the 2-core CI machine
// (more under load); what the tests exercise is what medic does around it,
// not initdb's own output. medic still runs <bin_dir>/initdb with its own
// arguments; called with any others, or with the template gone, the
// script runs the real initdb.
//
// The directory is a cache shared by every test process of the same user
// and PostgreSQL build: os.TempDir()/medic-pgtest-initdb-<key> (about
// 40 MB), made once (in a temporary directory renamed into place, so that
// concurrent packages never see half of it) and left for the next run; the
// key changes with the initdb binary (size, modification time) and the
// arguments. A directory at that path that is not this user's, or is
// writable by others, is not used: the tests then run the real BinDir.
func CachedBinDir(tb testing.TB) string {
	tb.Helper()
	dir, err := PrepareCachedBinDir()
	if err != nil {
		tb.Logf("cached initdb unavailable, using %s: %v", BinDir, err)
		return BinDir
	}
	return dir
}

var (
	cacheOnce sync.Once
	cacheDir  string
	cacheErr  error
)

// PrepareCachedBinDir makes (once per process) or finds the cache of
// CachedBinDir and returns its bin directory. A TestMain may call it
// early, beside other set-up work.
func PrepareCachedBinDir() (string, error) {
	cacheOnce.Do(func() { cacheDir, cacheErr = prepareCache() })
	return cacheDir, cacheErr
}

func prepareCache() (string, error) {
	realInitdb := filepath.Join(BinDir, "initdb")
	fi, err := os.Stat(realInitdb)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%d %d %d %s", os.Getuid(), fi.Size(), fi.ModTime().UnixNano(), InitdbArgs))
	final := filepath.Join(os.TempDir(), fmt.Sprintf("medic-pgtest-initdb-%x", sum[:6]))
	if err := checkCache(final); err == nil {
		return filepath.Join(final, "bin"), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "medic-pgtest-initdb-tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := fillCache(tmp, final, realInitdb); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another test process got there first: use its copy.
		if cerr := checkCache(final); cerr != nil {
			return "", fmt.Errorf("put the initdb cache in place: %w (and %v)", err, cerr)
		}
	}
	return filepath.Join(final, "bin"), nil
}

// checkCache reports whether dir is a usable cache: this user's, not
// writable by others, with its script in place.
func checkCache(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is not a directory of uid %d writable only by it", dir, os.Getuid())
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", "initdb")); err != nil {
		return fmt.Errorf("%s: incomplete cache: %w", dir, err)
	}
	return nil
}

// fillCache makes the template and the bin directory in dir, which will
// be renamed to final (the script names the template there).
func fillCache(dir, final, realInitdb string) error {
	if err := os.Chmod(dir, 0o755); err != nil { // the postgres user reaches the template
		return err
	}
	bin, tmpl := filepath.Join(dir, "bin"), filepath.Join(dir, "template")
	if err := os.Mkdir(bin, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(BinDir)
	if err != nil {
		return fmt.Errorf("list %s: %w", BinDir, err)
	}
	for _, e := range entries {
		if e.Name() == "initdb" {
			continue
		}
		if err := os.Symlink(filepath.Join(BinDir, e.Name()), filepath.Join(bin, e.Name())); err != nil {
			return err
		}
	}
	args := append([]string{"-D", tmpl}, strings.Fields(InitdbArgs)...)
	cmd := exec.Command(realInitdb, args...)
	if os.Getuid() == 0 {
		// initdb refuses root; medic runs it as the postgres user, who
		// then copies the template. initdb fills an empty directory it owns.
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("look up the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Mkdir(tmpl, 0o700); err != nil {
			return err
		}
		if err := os.Chown(tmpl, uid, gid); err != nil {
			return err
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", realInitdb, strings.Join(args, " "), err, out)
	}
	// medic empties (and creates, mode 0700) the data directory before it
	// calls initdb; the copy goes into it.
	script := fmt.Sprintf(`#!/bin/sh
# medic tests: a cached initdb (internal/pgha/pgtest/initdb.go).
t=%q
if [ $# -eq 9 ] && [ "$1" = -D ] && [ "$3 $4 $5 $6 $7 $8 $9" = %q ] && [ -f "$t/PG_VERSION" ]; then
  mkdir -p -m 0700 "$2" && cp -a "$t"/. "$2"/ && echo "initdb: copied the test template $t" && exit 0
  exit 1
fi
exec %q "$@"
`, filepath.Join(final, "template"), InitdbArgs, realInitdb)
	return os.WriteFile(filepath.Join(bin, "initdb"), []byte(script), 0o755)
}
