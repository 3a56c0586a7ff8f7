package drill

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
)

// maxUsage is the fullest the disk fault ever makes a file system: the host
// must keep working while the drill runs.
const maxUsage = 0.99

// allowedDir checks that dir is one of drills.disk_paths or under one,
// after resolving symbolic links.
func allowedDir(cfg *config.Config, dir string) (string, error) {
	var allowed []string
	if cfg != nil && cfg.Drills != nil {
		allowed = cfg.Drills.DiskPaths
	}
	if len(allowed) == 0 {
		return "", fmt.Errorf("fault disk: no directory is allowed (set drills.disk_paths)")
	}
	if dir == "" {
		dir = allowed[0]
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("fault disk: directory %s: %w", dir, err)
	}
	for _, a := range allowed {
		ra, err := filepath.EvalSymlinks(a)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(ra, real); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return real, nil
		}
	}
	return "", fmt.Errorf("fault disk: %s is not under drills.disk_paths %v", dir, allowed)
}

// fillBytes returns how many bytes bring the file system of dir to usage
// (used / (used + available), as df computes it), never past maxUsage.
func fillBytes(dir string, usage float64) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := uint64(st.Bsize)
	used, avail := (st.Blocks-st.Bfree)*bs, st.Bavail*bs
	size := float64(used + avail)
	n := min(usage, maxUsage)*size - float64(used)
	return max(int64(n), 0), nil
}

// injectDisk writes a file into an allowed directory (drills.disk_paths):
// params dir (default the first allowed), usage (a fraction of the file
// system to reach, at most 0.99) or bytes (a size), name (default
// medic-drill-ID.fill) and age (the file's modification time is set this far
// back, so cleanups that keep recent files take it). Restore removes the file
// unless a cleanup already did.
func injectDisk(ctx context.Context, t *Target) (Restore, error) {
	dir, err := allowedDir(t.Config, t.param("dir", ""))
	if err != nil {
		return nil, err
	}
	var n int64
	switch {
	case t.param("bytes", "") != "":
		var b config.ByteSize
		if err := b.UnmarshalText([]byte(t.param("bytes", ""))); err != nil {
			return nil, fmt.Errorf("fault disk: bytes: %w", err)
		}
		n = int64(b)
	default:
		u, err := strconv.ParseFloat(t.param("usage", "0.95"), 64)
		if err != nil || u <= 0 || u > maxUsage {
			return nil, fmt.Errorf("fault disk: usage %q: want a fraction above 0 and at most %v", t.param("usage", ""), maxUsage)
		}
		if n, err = fillBytes(dir, u); err != nil {
			return nil, fmt.Errorf("fault disk: %w", err)
		}
	}
	name := t.param("name", fmt.Sprintf("medic-drill-%d.fill", t.Drill))
	if name == "." || name == ".." || filepath.Base(name) != name {
		return nil, fmt.Errorf("fault disk: name %q: want a plain file name", name)
	}
	path := filepath.Join(dir, name)
	if err := writeFill(path, n); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("fault disk: %w", err)
	}
	if v := t.param("age", ""); v != "" {
		age, err := time.ParseDuration(v)
		if err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("fault disk: age %q: %w", v, err)
		}
		old := time.Now().Add(-age) // file times are wall-clock times whatever the drill's clock
		if err := os.Chtimes(path, old, old); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("fault disk: date %s back: %w", path, err)
		}
	}
	t.Note("wrote %d bytes to %s", n, path)
	return func(ctx context.Context) error {
		err := os.Remove(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			t.Note("%s was already removed (by a cleanup)", path)
			return nil
		case err != nil:
			return fmt.Errorf("remove %s: %w", path, err)
		}
		t.Note("removed %s", path)
		return nil
	}, nil
}

// writeFill creates path holding n bytes that really take disk space:
// fallocate where the file system has it, else zeros written in 1MiB chunks.
func writeFill(path string, n int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer f.Close()
	if n == 0 {
		return nil
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, n); err == nil {
		return nil
	}
	buf := make([]byte, 1<<20)
	for left := n; left > 0; {
		k := min(left, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			return fmt.Errorf("fill %s: %w", path, err)
		}
		left -= k
	}
	return f.Sync()
}

// injectStopDependency stops every instance of the dependency (through the
// supervisor, so it stays stopped); Restore starts them again.
func injectStopDependency(ctx context.Context, t *Target) (Restore, error) {
	st, ok := t.service(t.Dependency)
	if !ok {
		return nil, fmt.Errorf("fault stop-dependency: unknown service %q", t.Dependency)
	}
	var stopped []medic.InstanceID
	restore := func(ctx context.Context) error {
		var errs []error
		for _, id := range stopped {
			if err := t.Sup.StartInstance(ctx, id, t.Actor(), "drill over: start the dependency again"); err != nil {
				errs = append(errs, fmt.Errorf("start %s: %w", id, err))
				continue
			}
			t.Note("started %s", id)
		}
		return errors.Join(errs...)
	}
	for _, is := range st.Instances {
		id := medic.InstanceID{Service: t.Dependency, Index: is.Index}
		if err := t.Sup.StopInstance(ctx, id, t.Actor(), "drill: dependency down"); err != nil {
			return nil, errors.Join(fmt.Errorf("stop %s: %w", id, err), restore(context.WithoutCancel(ctx)))
		}
		stopped = append(stopped, id)
		t.Note("stopped %s", id)
	}
	return restore, nil
}
