// Package logfile writes size-rotated log files: instance output and the
// proxy's access log.
package logfile

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

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
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
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
