package supervise

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Instance logs are 0640 (or the configured mode), even a log an older
// medic left world-readable: the API guards them, so the file must too.
func TestInstanceLogMode(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.log")
	os.WriteFile(old, []byte("before\n"), 0o644)
	for _, c := range []struct {
		path string
		mode os.FileMode
		want os.FileMode
	}{
		{filepath.Join(dir, "new.log"), 0, 0o640},
		{old, 0, 0o640},
		{filepath.Join(dir, "private.log"), 0o600, 0o600},
	} {
		p, err := startProcess([]string{"true"}, nil, dir, nil, nil, 0, c.path, c.mode, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		<-p.exited
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != c.want {
			t.Errorf("%s: mode %04o; want %04o", filepath.Base(c.path), got, c.want)
		}
	}
}
