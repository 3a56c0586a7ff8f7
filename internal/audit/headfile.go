package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// HeadFile is the name of the file, next to the database, that holds a copy
// of the head outside SQLite. Someone who deletes the last records and fixes
// the audit_head table with plain SQL still leaves this file ahead of the log.
//
// Format: one line, "v1 <seq> <64 hex digits>\n". It is replaced atomically
// (write a temporary file, fsync, rename, fsync the directory) after each
// commit, so after a crash it is at most one record behind, never ahead.
const HeadFile = "audit.head"

const headTempPattern = HeadFile + ".*.tmp"

// errNoHeadFile reports that the head file does not exist.
var errNoHeadFile = errors.New("no head file")

func readHeadFile(dir string) (Head, error) {
	b, err := os.ReadFile(filepath.Join(dir, HeadFile))
	if errors.Is(err, os.ErrNotExist) {
		return Head{}, errNoHeadFile
	}
	if err != nil {
		return Head{}, fmt.Errorf("read %s: %w", HeadFile, err)
	}
	h, err := parseHeadLine(string(b))
	if err != nil {
		return Head{}, fmt.Errorf("read %s: %w", HeadFile, err)
	}
	return h, nil
}

func parseHeadLine(s string) (Head, error) {
	line, ok := strings.CutSuffix(s, "\n")
	parts := strings.Split(line, " ")
	if !ok || len(parts) != 3 || parts[0] != "v1" {
		return Head{}, fmt.Errorf("malformed head %q", s)
	}
	seq, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || seq < 1 {
		return Head{}, fmt.Errorf("malformed head seq %q", parts[1])
	}
	hash, err := ParseHash(parts[2])
	if err != nil {
		return Head{}, err
	}
	return Head{Seq: seq, Hash: hash}, nil
}

func writeHeadFile(dir string, h Head) (err error) {
	f, err := os.CreateTemp(dir, headTempPattern) // mode 0600
	if err != nil {
		return fmt.Errorf("write %s: %w", HeadFile, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := fmt.Fprintf(f, "v1 %d %s\n", h.Seq, h.Hash); err != nil {
		return fmt.Errorf("write %s: %w", HeadFile, err)
	}
	// The data must be on disk before the rename is: otherwise a crash could
	// leave an empty head file under the real name.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", HeadFile, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", HeadFile, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, HeadFile)); err != nil {
		return fmt.Errorf("replace %s: %w", HeadFile, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory of %s: %w", HeadFile, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory of %s: %w", HeadFile, err)
	}
	return nil
}

// removeStaleHeadTemps removes temporary head files left by a crash in the
// middle of writeHeadFile. Best effort: a leftover only wastes a few bytes.
func removeStaleHeadTemps(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, headTempPattern))
	for _, n := range names {
		os.Remove(n)
	}
}
