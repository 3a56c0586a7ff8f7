package proxy

import (
	"container/list"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/netguard"
)

// silentGate bounds the tcp-mode connections to instances on which neither
// side has sent a byte yet (proxy.max_silent). Connecting at once is what a
// TCP proxy must do for protocols in which the server speaks first (MySQL,
// SMTP), but a flood of connections that never send anything then holds one
// of the instance's connection slots each (PostgreSQL's max_connections),
// and — since the flood's connections arrive together — they reach the
// instance's own timeout together, and the proxy reopens thousands at once
// when the flooder redials (bench/flood.sh's TCP phase: two bursts 10 s apart,
// the only phase in which medic's clients saw a tail HAProxy's did not).
//
// Beyond the cap a connection waits, holding only its own descriptor and a
// goroutine parked in the poller, for the first of: its client's first byte
// (a client-first protocol: connect now, no place needed), a place freed by a
// silent connection that spoke or ended (first come, first served: a
// server-first protocol in a burst of legitimate connections gets each
// connection opened in turn, as the ones before it are greeted), or its
// silence deadline (closed; counted and logged).
type silentGate struct {
	mu      sync.Mutex
	max     int
	held    int
	waiters list.List // of *silentWaiter, oldest first
}

type silentWaiter struct {
	conn    net.Conn      // the client; its read deadline wakes it when granted
	granted bool          // a place was handed to it (under mu)
	elem    *list.Element // nil when handed a place at enqueue
}

func newSilentGate(max int) *silentGate { return &silentGate{max: max} }

// tryAcquire takes a place if one is free and nobody waits for one.
func (g *silentGate) tryAcquire() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.takeFreeLocked()
}

// takeFreeLocked takes a place when one is free and nobody waits (g.mu held).
func (g *silentGate) takeFreeLocked() bool {
	if g.held < g.max && g.waiters.Len() == 0 {
		g.held++
		return true
	}
	return false
}

// enqueue puts c in line for a place, or hands it one at once when one is
// free and nobody is ahead of it: a place released between the caller's
// failed tryAcquire and this call went back to the pool, and would otherwise
// stay free while c (and everyone after it) waits for the next release.
func (g *silentGate) enqueue(c net.Conn) *silentWaiter {
	w := &silentWaiter{conn: c}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.takeFreeLocked() {
		w.granted = true
		return w
	}
	w.elem = g.waiters.PushBack(w)
	return w
}

// leave takes w out of line and reports whether it was handed a place (which
// it then holds). After leave no release touches w's connection again.
func (g *silentGate) leave(w *silentWaiter) (granted bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !w.granted {
		g.waiters.Remove(w.elem)
	}
	return w.granted
}

// release gives a place back: to the first in line if any (woken through its
// connection's read deadline), else to the pool.
func (g *silentGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e := g.waiters.Front(); e != nil {
		w := g.waiters.Remove(e).(*silentWaiter)
		w.granted = true
		// Under mu: leave cannot have returned yet, so the waiter clears this
		// deadline after it is set, never before.
		_ = w.conn.SetReadDeadline(aLongTimeAgo)
		return
	}
	g.held--
}

// counts returns the places held and the connections waiting.
func (g *silentGate) counts() (held, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held, g.waiters.Len()
}

var aLongTimeAgo = time.Unix(1, 0)

// readable waits until c has a byte or its end (EOF) to read, or an error
// (a reset, its read deadline, a close): data is true for a byte or the
// end. Nothing is consumed (MSG_PEEK), so a splice afterwards moves every
// byte and passes the end on. A connection that is not a socket (tests'
// pipes) is reported readable at once.
func readable(c net.Conn) (data bool, err error) {
	sc, ok := netguard.Unwrap(c).(syscall.Conn)
	if !ok {
		return true, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, err
	}
	var (
		b    [1]byte
		rerr error
	)
	err = rc.Read(func(fd uintptr) bool {
		for {
			_, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if rerr != syscall.EINTR {
				return rerr != syscall.EAGAIN
			}
		}
	})
	switch {
	case err != nil:
		return false, err
	case rerr != nil:
		return false, rerr
	}
	return true, nil // a byte, or 0 of them at the end
}

// waitForPlace is a connection's wait beyond max_silent: it returns nil
// when it may connect (its client spoke or ended its sending, or it was
// handed a place, which it then holds: slot=true), or an error when its
// client left or stayed silent past its read deadline. The caller sets that
// deadline before the call: a release wakes a waiter by moving the deadline
// into the past, so the waiter's own deadline must be set before it is in
// line, never after (it would overwrite the wake-up). On return the read
// deadline is cleared.
func (g *silentGate) waitForPlace(c net.Conn) (slot bool, err error) {
	w := g.enqueue(c)
	var data bool
	if w.elem != nil { // in line, not handed a free place at once (elem is set once, under mu, before)
		data, err = readable(c)
	}
	granted := g.leave(w)
	_ = c.SetReadDeadline(time.Time{})
	// data includes a half-close before the first byte (a client of a
	// server-first protocol with nothing to say) or a close: it connects, as
	// below max_silent, and the instance sees the end (copyHalf passes it on).
	switch {
	case data:
		if granted { // spoke: needs no place; pass it on
			g.release()
		}
		return false, nil
	case granted:
		return true, nil
	}
	return false, err
}
