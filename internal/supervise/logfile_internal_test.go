package supervise

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRotatingFileKeepsMaxFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web-0.log")
	r, err := openRotating(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 39) + "\n" // 40 bytes: two fit in 100, the third rotates
	for i := 0; i < 10; i++ {
		r.Write([]byte(line))
	}
	r.Close()
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if st.Size() > 100 {
			t.Fatalf("%s is %d bytes, over max_size 100", p, st.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Fatalf("%s.3 exists: max_files is 2", path)
	}
}

func TestTailKeepsLastBytes(t *testing.T) {
	tl := newTail(8)
	tl.Write([]byte("hello "))
	tl.Write([]byte("world!"))
	if got := tl.String(); len(got) != 8 || !strings.HasSuffix(got, "world!") {
		t.Fatalf("tail = %q, want the last 8 bytes", got)
	}
}

func TestParseNotify(t *testing.T) {
	m := parseNotify("READY=1\nSTATUS=serving 3 clients\nWATCHDOG=1")
	if m["READY"] != "1" || m["WATCHDOG"] != "1" || m["STATUS"] != "serving 3 clients" {
		t.Fatalf("parsed %v", m)
	}
}
