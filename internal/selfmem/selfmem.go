// Package selfmem gives back the pages of medic's own executable that only
// its start touched.
//
// A Go binary's code, type data and function tables are file-backed,
// read-only mappings: a page is resident once touched, and stays mapped.
// Start-up touches much that is never used again (package initialisation of
// every linked library, config parsing and validation, building every
// subsystem), and the kernel maps the 64 KiB around each faulted page
// (fault-around). Measured with 50 instances (docs/benchmarks.md): 29 MiB of
// the agent's 45 MiB were pages of the binary, of which 17 MiB come back
// within seconds once dropped: the rest was touched at start only.
//
// Trim drops the process's page-table entries of those mappings
// (madvise MADV_DONTNEED). Nothing is lost: the pages stay in the page cache
// (clean, reclaimable like any file cache) and the next touch maps them back
// with a minor fault. Writable mappings (package variables) are never
// touched: DONTNEED would throw their contents away.
package selfmem

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Result is what Trim advised.
type Result struct {
	Mappings int    // read-only mappings of the executable
	Bytes    uint64 // their size (not all of it was resident)
}

// Trim drops the page-table entries of the read-only mappings of the
// running executable.
func Trim() (Result, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return Result{}, fmt.Errorf("trim executable pages: stat /proc/self/exe: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return Result{}, fmt.Errorf("trim executable pages: %w", err)
	}
	ranges, err := readOnlyMappings(f, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	f.Close()
	if err != nil {
		return Result{}, fmt.Errorf("trim executable pages: /proc/self/maps: %w", err)
	}
	var r Result
	for _, m := range ranges {
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); e != 0 {
			return r, fmt.Errorf("trim executable pages: madvise %#x-%#x: %w", m.start, m.end, e)
		}
		r.Mappings++
		r.Bytes += uint64(m.end - m.start)
	}
	return r, nil
}

type mapping struct{ start, end uintptr }

// readOnlyMappings returns the mappings of maps (the format of
// /proc/PID/maps) that map the file (major:minor, inode) without write
// permission.
func readOnlyMappings(maps io.Reader, major, minor uint32, ino uint64) ([]mapping, error) {
	var out []mapping
	sc := bufio.NewScanner(maps)
	line := 0
	for sc.Scan() {
		line++
		// 00400000-015db000 r-xp 00000000 fd:01 1234 /usr/bin/medic
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 5", line, len(f))
		}
		if n, err := strconv.ParseUint(f[4], 10, 64); err != nil {
			return nil, fmt.Errorf("line %d: inode %q: %w", line, f[4], err)
		} else if n != ino || n == 0 {
			continue
		}
		maj, mnr, ok := strings.Cut(f[3], ":")
		ma, err1 := strconv.ParseUint(maj, 16, 32)
		mi, err2 := strconv.ParseUint(mnr, 16, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("line %d: device %q is not major:minor", line, f[3])
		}
		if uint32(ma) != major || uint32(mi) != minor || strings.Contains(f[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		s, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || e <= s {
			return nil, fmt.Errorf("line %d: address range %q", line, f[0])
		}
		out = append(out, mapping{uintptr(s), uintptr(e)})
	}
	return out, sc.Err()
}
