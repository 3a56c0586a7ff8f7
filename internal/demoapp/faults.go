package demoapp

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// State is the set of active faults, as GET /fault and every fault endpoint
// except crash and hang report it.
type State struct {
	Hung        bool    `json:"hung"`
	Unready     bool    `json:"unready"`
	SlowMS      int     `json:"slow_ms"`
	ErrorRate   float64 `json:"error_rate"`
	LeakMBPerS  float64 `json:"leak_mb_per_s"`
	LeakedBytes int64   `json:"leaked_bytes"`
}

// faults holds the injected faults. Hang is a separate atomic because every
// request reads it, and it is never cleared.
type faults struct {
	hung atomic.Bool

	mu        sync.Mutex
	unready   bool
	slowMS    int
	errorRate float64
	leakRate  float64  // MiB per second; 0 = not leaking
	leakGen   uint64   // bumped by reset, so a step allocated across a reset is dropped
	leaked    [][]byte // the leak itself: referenced, touched, never read
	leakedN   int64

	kick chan struct{} // capacity 1: wakes the leak loop when a leak starts
}

func (f *faults) state() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return State{
		Hung:        f.hung.Load(),
		Unready:     f.unready,
		SlowMS:      f.slowMS,
		ErrorRate:   f.errorRate,
		LeakMBPerS:  f.leakRate,
		LeakedBytes: f.leakedN,
	}
}

func (f *faults) update(fn func(f *faults)) State {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
	return f.state()
}

func (f *faults) startLeak(mbPerS float64) State {
	s := f.update(func(f *faults) { f.leakRate = mbPerS })
	select {
	case f.kick <- struct{}{}:
	default: // a kick is already pending
	}
	return s
}

// reset clears every fault but hang, and returns leaked memory to the OS so
// that RSS drops at once (a drill verifying "reset" sees it).
func (f *faults) reset() State {
	f.mu.Lock()
	f.unready, f.slowMS, f.errorRate = false, 0, 0
	hadLeak := f.dropLeakLocked()
	f.mu.Unlock()
	if hadLeak {
		debug.FreeOSMemory()
	}
	return f.state()
}

func (f *faults) freeLeak() {
	f.mu.Lock()
	hadLeak := f.dropLeakLocked()
	f.mu.Unlock()
	if hadLeak {
		debug.FreeOSMemory()
	}
}

func (f *faults) dropLeakLocked() bool {
	had := f.leakedN > 0
	f.leakRate, f.leaked, f.leakedN = 0, nil, 0
	f.leakGen++
	return had
}
