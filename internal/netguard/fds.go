package netguard

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/clock"
)

// DefaultReserve is the number of file descriptors held back for medic's
// own work (probes, restarts and their pipes, the audit store, log files,
// connections to etcd and PostgreSQL) when the process limit allows it; on a
// small limit the reserve is a quarter of it (see NewFDs).
const DefaultReserve = 1024

// sampleEvery bounds how stale the count of open descriptors may be. Between
// two samples, the connections the listeners admitted and closed are added
// and taken off, so a burst of accepts is counted at once.
const sampleEvery = 250 * time.Millisecond

// sampleCostShare bounds the CPU the samples take: the next sample waits at
// least sampleCostShare times as long as the last one took. Listing
// /proc/self/fd costs about 1 µs per open descriptor (18 ms of CPU at 18 000,
// measured): at 4 samples a second that was 7 % of a core during a flood.
const sampleCostShare = 50

// FDs is the process's file-descriptor budget. There is one per process (the
// limit is the process's), shared by every Listener; client connections are
// admitted only while the open descriptors stay below Limit − Reserve, so
// medic's own work always finds descriptors. medic's own work never asks.
type FDs struct {
	limit, reserve int
	clock          clock.Clock
	count          func() (int, error) // open descriptors; nil when the platform cannot tell

	mu       sync.Mutex
	sampled  int           // descriptors open at the last sample
	at       time.Time     // of the last sample
	every    time.Duration // until the next sample: sampleEvery, or more when samples are costly
	sampling bool          // a sample is being taken (outside mu)
	sinceNet int           // descriptors listeners admitted (+) and released (−) since
	idle     idleList      // kind onFDs: over every listener, oldest first: evictable at the reserve
}

// Raise raises the soft RLIMIT_NOFILE to the hard limit and returns both. A
// failure leaves the limit as it was (the error says why).
func Raise() (soft, hard uint64, err error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if r.Cur < r.Max {
		want := r
		want.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return r.Cur, r.Max, fmt.Errorf("raise RLIMIT_NOFILE from %d to %d: %w", r.Cur, r.Max, err)
		}
		r = want
	}
	return r.Cur, r.Max, nil
}

// NewFDs builds the budget for a process whose soft descriptor limit is
// limit. reserve ≤ 0 means min(DefaultReserve, limit/4). clk nil means the
// wall clock.
func NewFDs(limit, reserve int, clk clock.Clock) *FDs {
	if reserve <= 0 {
		reserve = min(DefaultReserve, limit/4)
	}
	f := &FDs{limit: limit, reserve: reserve, clock: clock.Or(clk), idle: idleList{kind: onFDs}}
	if runtime.GOOS == "linux" {
		f.count = countOpen
	}
	return f
}

// Process builds the budget of this process: it raises the soft limit to
// the hard one first. The error, if any, is the raise's; the budget is
// usable either way.
func Process(reserve int, clk clock.Clock) (*FDs, error) {
	soft, _, err := Raise()
	if soft == 0 {
		soft = 1024
	}
	return NewFDs(int(min(soft, 1<<30)), reserve, clk), err
}

// Limit and Reserve as the budget was built.
func (f *FDs) Limit() int   { return f.limit }
func (f *FDs) Reserve() int { return f.reserve }

// Open is the current estimate of open descriptors.
func (f *FDs) Open() int {
	f.refresh()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.openLocked()
}

func (f *FDs) openLocked() int { return f.sampled + f.sinceNet }

// refresh samples the open descriptors when the last sample is due. The
// count runs outside mu: it took 20–170 ms at 18 000 descriptors on a loaded
// machine, and every listener's admission and every HTTP request's state
// change (ConnState → setIdle) waited for it under the lock — the legitimate
// client's p99 during a flood. One caller samples; the others go on with the
// estimate. Connections admitted and closed while it counts stay counted.
func (f *FDs) refresh() {
	if f == nil || f.count == nil {
		return
	}
	now := f.clock.Now()
	f.mu.Lock()
	if f.sampling || !f.at.IsZero() && now.Sub(f.at) < max(f.every, sampleEvery) {
		f.mu.Unlock()
		return
	}
	f.sampling = true
	base := f.sinceNet
	f.mu.Unlock()
	t0 := time.Now() // the cost, in real time whatever the clock
	n, err := f.count()
	took := time.Since(t0)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sampling = false
	if err != nil {
		return
	}
	f.sampled, f.at, f.every = n, now, took*sampleCostShare
	f.sinceNet -= base // what changed while counting may or may not be in n: counted once more, the safe side
}

// verdicts of take.
const (
	taken     = iota
	atReserve // the line: only an idle connection's place can be given
	overShare // under pressure, this listener already holds half of the budget
)

// take admits n descriptors for a client connection of a listener that
// holds held, and counts them until give. The budget is Limit − Reserve;
// a priority listener (the operator's API) may go halfway into the reserve.
// Once three quarters of the budget are open, a listener holding half of it
// gets no more: one flooded listener cannot starve the others.
func (f *FDs) take(held, n int, priority bool) int {
	if f == nil {
		return taken
	}
	f.refresh()
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.judgeLocked(held, n, priority)
	if v == taken {
		f.sinceNet += n
	}
	return v
}

// peek is take's verdict for a listener that holds held without counting
// anything, on the current estimate (no sample), and atReserve only when no
// idle connection of any listener could give its place.
func (f *FDs) peek(held, n int, priority bool) int {
	if f == nil {
		return taken
	}
	f.refresh() // a full listener refuses without take: the sample must go on
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.judgeLocked(held, n, priority)
	if v == atReserve && f.idle.Len() > 0 {
		return taken
	}
	return v
}

// judgeLocked is the rule take and peek share (f.mu held).
func (f *FDs) judgeLocked(held, n int, priority bool) int {
	budget := f.limit - f.reserve
	line := budget
	if priority {
		line += f.reserve / 2
	}
	open := f.openLocked()
	switch {
	case open+n > line:
		return atReserve
	case !priority && open+n > budget*3/4 && held+n > budget/2:
		return overShare
	}
	return taken
}

// popIdle takes the oldest evictable connection of any listener off the list, or nil.
func (f *FDs) popIdle() *Conn {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.idle.Front()
	if c == nil {
		return nil
	}
	f.idle.Remove(c)
	return c
}

func (f *FDs) setIdle(c *Conn, idle bool) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.idle.Remove(c)
	if idle {
		f.idle.PushBack(c)
	}
}

// force counts n descriptors without asking (a connection that replaces an evicted one).
func (f *FDs) force(n int) {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.sinceNet += n
	f.mu.Unlock()
}

func (f *FDs) give(n int) {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.sinceNet -= n
	f.mu.Unlock()
}

// countOpen counts this process's open descriptors (Linux: /proc/self/fd;
// the directory's own descriptor is not counted).
func countOpen() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	n := 0
	for {
		names, err := d.Readdirnames(4096)
		n += len(names)
		if err != nil || len(names) == 0 {
			break
		}
	}
	return n - 1, nil
}
