package selfmem

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestReadOnlyMappings(t *testing.T) {
	maps := `00400000-015db000 r-xp 00000000 fd:01 77 /usr/bin/medic
015db000-028f7000 r--p 011db000 fd:01 77 /usr/bin/medic
028f7000-02a00000 rw-p 024f7000 fd:01 77 /usr/bin/medic
02a00000-02b00000 r--p 00000000 fd:02 77 /other/device/same/inode
c000000000-c004000000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 fd:01 78 /usr/lib/other.so
`
	got, err := readOnlyMappings(strings.NewReader(maps), 0xfd, 1, 77)
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{{0x400000, 0x15db000}, {0x15db000, 0x28f7000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %x, want %x (the writable mapping, other devices and other files left out)", got, want)
	}
	if _, err := readOnlyMappings(strings.NewReader("00400000-015db000 r-xp 0 fd:01 zz /x\n"), 0xfd, 1, 77); err == nil ||
		!strings.Contains(err.Error(), "line 1") {
		t.Fatalf("a bad inode: %v; want an error naming line 1", err)
	}
}

// fileRSS is the resident size of the mappings of the test binary, in kB.
func fileRSS(t *testing.T) int {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	kb, ours := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 5 && strings.Contains(fs[0], "-") {
			ours = len(fs) >= 6 && fs[5] == exe && !strings.Contains(fs[1], "w")
			continue
		}
		if ours && len(fs) >= 2 && fs[0] == "Rss:" {
			n, _ := strconv.Atoi(fs[1])
			kb += n
		}
	}
	return kb
}

// Trim really gives back resident pages of the executable; the test runs on
// (code faults back in).
func TestTrimDropsExecutablePages(t *testing.T) {
	before := fileRSS(t)
	r, err := Trim()
	if err != nil {
		t.Fatal(err)
	}
	after := fileRSS(t)
	t.Logf("%d mappings, %d MiB advised; resident read-only executable pages %d → %d kB", r.Mappings, r.Bytes>>20, before, after)
	if r.Mappings < 2 {
		t.Fatalf("%d read-only mappings of the executable trimmed; want code and read-only data", r.Mappings)
	}
	// Reading smaps faults some code back in at once (with the 64 KiB
	// around each page): fewer resident pages is what can be asked.
	if before == 0 || after >= before {
		t.Fatalf("resident executable pages %d → %d kB; want fewer", before, after)
	}
}
