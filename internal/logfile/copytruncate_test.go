package logfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/logfile"
)

// An instance appends to its log itself (O_APPEND); medic rotates it by
// copy-truncate and the instance's next line lands in the emptied file.
func TestCopyTruncateUnderAnAppendingWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web-0.log")
	w, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.WriteString(strings.Repeat("a", 100) + "\n")
	if rotated, err := logfile.CopyTruncate(path, 1000, 2); err != nil || rotated {
		t.Fatalf("rotated a small file: %v %v", rotated, err)
	}
	w.WriteString(strings.Repeat("b", 1000) + "\n")
	if rotated, err := logfile.CopyTruncate(path, 1000, 2); err != nil || !rotated {
		t.Fatalf("did not rotate a large file: %v %v", rotated, err)
	}
	w.WriteString("after\n")
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if string(cur) != "after\n" {
		t.Fatalf("current log = %q, want only the line written after the rotation", cur)
	}
	if len(old) != 1102 {
		t.Fatalf("rotated log has %d bytes, want 1102", len(old))
	}
	if got := logfile.Tail(path+".1", 5); got != "bbbb\n" {
		t.Fatalf("tail = %q", got)
	}
}
