package auth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// LockWait bounds how long a change to a tokens or client keys file waits
// for another change of the same file (another `medic key add`, `token add`,
// a revoke) to finish: 10 s, after which it is refused, naming the lock file.
const LockWait = 10 * time.Second

// lockPoll is how often a waiting change tries the lock again.
const lockPoll = 5 * time.Millisecond

// lockFor takes the exclusive lock that serialises changes to the file at
// path: an flock(2) on ".NAME.lock" beside it (created 0600 and left in
// place; the file itself cannot carry the lock, since each change replaces
// it by a rename). Held across the read, the check and the atomic write, it
// makes concurrent adds and revokes of one file — from one process or from
// several — each see the others' result, so none is lost. The lock is
// advisory: an editor writing the file by hand does not take it.
func lockFor(path string) (unlock func(), err error) {
	lp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".lock")
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	deadline := time.Now().Add(LockWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: flock %s: %w", path, lp, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: another change of it still holds %s after %v; try again", path, lp, LockWait)
		}
		time.Sleep(lockPoll)
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
