package action_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/action"
)

func write(t *testing.T, path string, size int, age time.Duration) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Repeat("x", size)), 0o644); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-age)
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func TestDeleteFiles(t *testing.T) {
	base := t.TempDir()
	root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
	write(t, filepath.Join(root, "old.tmp"), 100, 2*time.Hour)
	write(t, filepath.Join(root, "sub", "old2.tmp"), 50, 3*time.Hour)
	write(t, filepath.Join(root, "new.tmp"), 10, time.Minute)
	write(t, filepath.Join(root, "keep.log"), 10, 5*time.Hour)
	write(t, filepath.Join(outside, "victim.tmp"), 1000, 5*time.Hour)
	// A symlinked file and a symlinked directory pointing out of the root.
	if err := os.Symlink(filepath.Join(outside, "victim.tmp"), filepath.Join(root, "link.tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "linkdir")); err != nil {
		t.Fatal(err)
	}

	out, err := action.DeleteFiles{}.Do(context.Background(), action.Input{Root: root, Glob: "*.tmp", OlderThan: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"root/old.tmp": false, "root/sub/old2.tmp": false, // matched and old: deleted
		"root/new.tmp": true, "root/keep.log": true, // too young, other pattern
		"root/link.tmp": true, "outside/victim.tmp": true, // symlinks neither followed nor deleted
	} {
		if got := exists(filepath.Join(base, path)); got != want {
			t.Errorf("%s exists = %v, want %v", path, got, want)
		}
	}
	if out.Fields["freed_bytes"] != "150" || out.Fields["deleted"] != "2" || !out.Changed {
		t.Errorf("output %+v, want 150 bytes freed from 2 files", out)
	}

	// A glob with a slash matches the relative path.
	write(t, filepath.Join(root, "a", "x.tmp"), 1, 2*time.Hour)
	write(t, filepath.Join(root, "b", "x.tmp"), 1, 2*time.Hour)
	if _, err := (action.DeleteFiles{}).Do(context.Background(), action.Input{Root: root, Glob: "a/*.tmp"}); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(root, "a", "x.tmp")) || !exists(filepath.Join(root, "b", "x.tmp")) {
		t.Error("glob a/*.tmp: want only a/x.tmp deleted")
	}
}

func TestDeleteFilesRefusesEscapes(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	write(t, filepath.Join(base, "victim.tmp"), 10, 5*time.Hour)
	write(t, filepath.Join(root, "x"), 1, 0)
	for _, in := range []action.Input{
		{Root: "relative/dir", Glob: "*"},
		{Root: "/", Glob: "*.tmp"},
		{Root: root, Glob: "../*.tmp"},
		{Root: root, Glob: "sub/../../*.tmp"},
		{Root: root, Glob: "/*.tmp"},
		{Root: root, Glob: "[*.tmp"},
	} {
		out, err := (action.DeleteFiles{}).Do(context.Background(), in)
		if err == nil || !strings.HasPrefix(out.Summary, "refused") {
			t.Errorf("root %q glob %q: err %v summary %q, want refused", in.Root, in.Glob, err, out.Summary)
		}
	}
	if !exists(filepath.Join(base, "victim.tmp")) {
		t.Fatal("a file outside the root was deleted")
	}
}
