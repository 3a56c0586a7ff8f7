package logfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBufferedBatchesLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	r, err := Open(path, 1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBuffered(r, 64, 50*time.Millisecond)
	read := func() string { s, _ := os.ReadFile(path); return string(s) }
	b.Write([]byte("one\n"))
	b.Write([]byte("two\n"))
	if got := read(); got != "" {
		t.Fatalf("written before a flush: %q", got)
	}
	// Within FlushEvery the lines reach the file.
	deadline := time.Now().Add(5 * time.Second)
	for read() != "one\ntwo\n" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := read(); got != "one\ntwo\n" {
		t.Fatalf("after FlushEvery: %q", got)
	}
	// A line that would overflow the buffer flushes what is there first;
	// one longer than the buffer is written at once, in order.
	b.Write([]byte(strings.Repeat("a", 40) + "\n"))
	b.Write([]byte(strings.Repeat("b", 40) + "\n"))
	if got := read(); got != "one\ntwo\n"+strings.Repeat("a", 40)+"\n" {
		t.Fatalf("after an overflow: %q", got)
	}
	long := strings.Repeat("c", 100) + "\n"
	b.Write([]byte(long))
	if got := read(); !strings.HasSuffix(got, strings.Repeat("b", 40)+"\n"+long) {
		t.Fatalf("a line longer than the buffer: %q", got)
	}
	b.Write([]byte("last\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(); !strings.HasSuffix(got, "last\n") {
		t.Fatalf("Close did not flush: %q", got)
	}
}
