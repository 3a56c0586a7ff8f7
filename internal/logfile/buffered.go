package logfile

import (
	"io"
	"sync"
	"time"
)

// Buffered batches the lines written to w into one write every FlushEvery
// or every size bytes, whichever comes first, as nginx's `access_log …
// buffer= flush=`: the proxy's access log wrote one line per request with
// its own write(2). With the caller lookup dropped too (proxy.logAccess), a
// line costs 1.3 µs instead of 3.0 (BenchmarkAccessLine, median of 6). What
// the buffer holds when medic dies is lost: at most size bytes, written
// within FlushEvery. Close flushes.
type Buffered struct {
	mu        sync.Mutex
	w         io.WriteCloser
	buf       []byte
	size      int
	every     time.Duration
	timer     *time.Timer
	scheduled bool
	closed    bool
}

// NewBuffered buffers writes to w, up to size bytes or every.
func NewBuffered(w io.WriteCloser, size int, every time.Duration) *Buffered {
	return &Buffered{w: w, buf: make([]byte, 0, size), size: size, every: every}
}

// Write keeps p (a whole line, as slog's handlers write) for the next flush;
// it writes at once what would not fit, and after Close.
func (b *Buffered) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p)
	}
	if len(b.buf)+len(p) > b.size {
		b.flushLocked()
	}
	if len(p) >= b.size {
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	if !b.scheduled {
		b.scheduled = true
		if b.timer == nil {
			b.timer = time.AfterFunc(b.every, b.Flush)
		} else {
			b.timer.Reset(b.every)
		}
	}
	return len(p), nil
}

// Flush writes what the buffer holds.
func (b *Buffered) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.scheduled = false
	b.flushLocked()
}

func (b *Buffered) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	_, _ = b.w.Write(b.buf) // the writer counts its own failures (Rotating)
	b.buf = b.buf[:0]
}

// Close flushes and closes w.
func (b *Buffered) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.closed = true
	if b.timer != nil {
		b.timer.Stop()
	}
	return b.w.Close()
}
