package action

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DeleteFiles removes regular files under an allowed root that match a glob
// and are older than a minimum age, and reports the bytes freed.
//
// Safety: the root must be an absolute directory other than /; the glob is
// relative and may not contain ..; every access goes through os.Root, so no
// path — through .. or a symlink, even one swapped in during the walk — can
// reach outside the root. Symlinks are never followed and never deleted,
// directories are never removed. A glob without / matches file names at any
// depth (like find -name); with /, it matches the path relative to root.
type DeleteFiles struct {
	// Now is the reference time for ages. Default time.Now.
	Now func() time.Time
}

// Do cleans in.Root.
func (a DeleteFiles) Do(ctx context.Context, in Input) (Output, error) {
	root, glob, err := checkCleanup(in.Root, in.Glob)
	if err != nil {
		return Output{Summary: "refused: " + err.Error()}, fmt.Errorf("delete_files: %w", err)
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	cutoff := now().Add(-in.OlderThan)
	r, err := os.OpenRoot(root)
	if err != nil {
		return Output{Summary: "cannot open " + root}, fmt.Errorf("delete_files: open root: %w", err)
	}
	defer r.Close()
	var freed int64
	var deleted, skipped int
	var failures []string
	walkErr := fs.WalkDir(r.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if err != nil {
			failures = append(failures, err.Error())
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || rel == "." {
			return nil
		}
		if !d.Type().IsRegular() { // symlinks, sockets, devices
			skipped++
			return nil
		}
		target := rel
		if !strings.Contains(glob, "/") {
			target = path.Base(rel)
		}
		if ok, _ := path.Match(glob, target); !ok {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			failures = append(failures, err.Error())
			return nil
		}
		if info.ModTime().After(cutoff) {
			return nil
		}
		if err := r.Remove(rel); err != nil {
			failures = append(failures, err.Error())
			return nil
		}
		deleted++
		freed += info.Size()
		return nil
	})
	out := Output{Changed: deleted > 0, Targets: []string{root},
		Summary: fmt.Sprintf("deleted %d files (%s) matching %q older than %v under %s", deleted, humanBytes(freed), glob, in.OlderThan, root),
		Fields: map[string]string{"freed_bytes": strconv.FormatInt(freed, 10), "deleted": strconv.Itoa(deleted),
			"skipped": strconv.Itoa(skipped)}}
	if len(failures) > 0 {
		out.Detail = strings.Join(failures, "\n")
		if len(out.Detail) > MaxOutput {
			out.Detail = out.Detail[:MaxOutput]
		}
	}
	if walkErr != nil {
		return out, fmt.Errorf("delete_files under %s: %w", root, walkErr)
	}
	if len(failures) > 0 && deleted == 0 {
		return out, fmt.Errorf("delete_files under %s: %s", root, failures[0])
	}
	return out, nil
}

// checkCleanup validates root and glob before anything is opened.
func checkCleanup(root, glob string) (string, string, error) {
	if !filepath.IsAbs(root) {
		return "", "", fmt.Errorf("root %q is not an absolute path", root)
	}
	root = filepath.Clean(root)
	if root == "/" {
		return "", "", errors.New("root / is not allowed")
	}
	if glob == "" {
		glob = "*"
	}
	if strings.HasPrefix(glob, "/") || strings.HasPrefix(glob, "\\") || slices.Contains(strings.Split(glob, "/"), "..") {
		return "", "", fmt.Errorf("glob %q escapes the root: use a pattern relative to it without ..", glob)
	}
	if _, err := path.Match(glob, "x"); err != nil {
		return "", "", fmt.Errorf("glob %q: %w", glob, err)
	}
	return root, glob, nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
