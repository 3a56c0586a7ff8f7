package logfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/logfile"
)

func TestRotatingFileKeepsMaxFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web-0.log")
	r, err := logfile.Open(path, 100, 2)
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
