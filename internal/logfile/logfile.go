// Package logfile writes size-rotated log files: instance output and the
// proxy's access log.
package logfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// DefaultMode is the mode of log files: readable by the owner's group (for
// a log shipper), not by others, since the API guards them too.
const DefaultMode = 0o640

// Rotating is an io.Writer appending to path and rotating it to path.1 …
// path.N when it reaches maxSize. Writes are serialised; a failed write is
// counted, never fatal to the instance (a full disk must not kill the service).
type Rotating struct {
	mu       sync.Mutex
	path     string
	maxSize  int64
	maxFiles int
	f        *os.File
	size     int64
	failures int
}

// Open appends to path, rotating to path.1 … path.maxFiles at maxSize bytes.
func Open(path string, maxSize int64, maxFiles int) (*Rotating, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	r := &Rotating{path: path, maxSize: maxSize, maxFiles: maxFiles}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Rotating) open() error {
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, DefaultMode)
	if err != nil {
		return fmt.Errorf("open log %s: %w", r.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat log %s: %w", r.path, err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Write appends p; it never fails the writer (a full disk must not kill the service) and counts failures.
func (r *Rotating) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		r.failures++
		return len(p), nil
	}
	if r.maxSize > 0 && r.size+int64(len(p)) > r.maxSize && r.size > 0 {
		r.rotate()
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	if err != nil {
		r.failures++
	}
	return len(p), nil // never block or fail the child's pipe because of our log
}

func (r *Rotating) rotate() {
	r.f.Close()
	r.f = nil
	for i := r.maxFiles - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", r.path, i), fmt.Sprintf("%s.%d", r.path, i+1))
	}
	if r.maxFiles > 0 {
		os.Rename(r.path, r.path+".1")
	} else {
		os.Remove(r.path)
	}
	if err := r.open(); err != nil {
		r.failures++
	}
}

// Close closes the current file.
func (r *Rotating) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// Failures returns how many writes or rotations failed.
func (r *Rotating) Failures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failures
}

// CopyTruncate rotates a log file that another process writes with O_APPEND
// (an instance's output, written straight by the instance so that it survives
// medic): when path is larger than maxSize it shifts path.1 … path.N-1 up,
// copies path to path.1 and truncates path to zero; the writer's next append
// lands at the start of the empty file. Lines written between the copy and
// the truncation are lost (logrotate's copytruncate has the same window); the
// copy of a file of maxSize bytes takes milliseconds. With maxFiles 0 the file
// is only truncated. It reports whether it rotated.
func CopyTruncate(path string, maxSize int64, maxFiles int) (bool, error) {
	st, err := os.Stat(path)
	if err != nil || maxSize <= 0 || st.Size() <= maxSize {
		return false, nil
	}
	for i := maxFiles - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1))
	}
	if maxFiles > 0 {
		if err := copyFile(path, path+".1"); err != nil {
			return false, fmt.Errorf("rotate %s: %w", path, err)
		}
	}
	if err := os.Truncate(path, 0); err != nil {
		return false, fmt.Errorf("rotate %s: truncate: %w", path, err)
	}
	return true, nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	var mode os.FileMode = DefaultMode
	if st, err := src.Stat(); err == nil {
		mode = st.Mode().Perm() // a rotated file is as private as the log it came from
	}
	dst, err := os.OpenFile(to+".tmp", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		os.Remove(to + ".tmp")
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return os.Rename(to+".tmp", to)
}

// Tail returns the last n bytes of path ("" when it cannot be read).
func Tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	return string(b)
}
