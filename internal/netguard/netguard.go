// Package netguard bounds what clients can hold of a listener: a cap on open
// connections, a cap per source address, and the process's file-descriptor
// reserve (FDs). It wraps whatever net.Listener a server is given, so every
// server (net/http, the TCP proxy, a faster data plane, a handed-over
// listener) keeps its own accept loop.
//
// A connection beyond its source's cap is refused: the guard writes the
// listener's Refusal (an HTTP 503 for HTTP listeners) and closes it, and
// Accept goes on to the next one; the server never sees it. A listener that
// is full whatever the source (its cap, its share of the descriptors, the
// reserve) stops accepting until a place frees (Accept pauses): new clients
// wait in the kernel's accept queue instead of being refused, so a flood
// cannot make medic spin on accepting and refusing. An HTTP server that
// reports its connections' states (ConnState) lets the guard close the oldest
// idle or never-used connection instead, once it has been idle for
// EvictIdleAfter, so that a flood of idle connections cannot lock a real
// client out. A TCP listener refuses a connection over a cap with bare
// system calls, before Go builds anything for it (rawaccept.go).
package netguard

import (
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/clock"
)

// Limits bound one listener. Zero fields mean "no cap" here; the config
// package documents and applies the defaults of each listener.
type Limits struct {
	// MaxConns caps the connections open at once.
	MaxConns int
	// MaxPerSource caps the connections open at once from one IP address.
	MaxPerSource int
}

// Reason names why a connection was refused.
type Reason string

const (
	RefusedCap       Reason = "max_connections"
	RefusedPerSource Reason = "max_per_source"
	RefusedFDs       Reason = "fd_reserve"
)

// Options configure a Listener.
type Options struct {
	// Name names the listener in logs ("api", "proxy web").
	Name string
	Limits
	// FDs is the process budget; nil admits without it.
	FDs *FDs
	// Cost is the descriptors one connection holds (1; 2 when each client
	// connection opens one to a backend, as the TCP proxy does). 0 means 1.
	Cost int
	// Priority lets the listener go halfway into the reserve and exempts it
	// from the fair share (the operator's API: `medic status` must answer).
	Priority bool
	// Refusal is written to a refused connection before it is closed (nil: close only).
	Refusal []byte
	// ClientSpeaksFirst: the protocol has the client send first (HTTP), so
	// Wrap has the kernel hold a silent connection for DeferAcceptFor
	// before handing it over (DeferAccept). Not for protocols in which the
	// server may speak first.
	ClientSpeaksFirst bool
	// DeadlineJitter moves every read deadline set on a connection by that
	// connection's own offset, drawn once within ±DeadlineJitter: the
	// connections of a flood, accepted within a second, then reach the
	// server's header or idle timeout spread over 2×DeadlineJitter instead
	// of in one instant (when thousands close together, their places are
	// refilled in one burst that takes the cores from the clients). 0: none.
	DeadlineJitter time.Duration
	// Logger receives one warning per reason per LogEvery while refusing; nil discards.
	Logger *slog.Logger
	// Clock for the warning's rate; nil means the wall clock.
	Clock clock.Clock
}

// LogEvery bounds the refusal warnings: at most one per reason per listener per LogEvery.
const LogEvery = 10 * time.Second

// HTTP503 is the Refusal of HTTP listeners.
var HTTP503 = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 42\r\n\r\nmedic: too many connections, retry later.\n")

// Listener is a guarded net.Listener. Close the connections it returns as usual.
type Listener struct {
	net.Listener
	o   Options
	raw *rawAcceptor // TCP: accept4 on a duplicate of the socket (rawaccept.go); nil: ln's Accept

	mu      sync.Mutex
	open    int
	sources map[netip.Addr]*source
	idle    idleList // oldest first: evictable (HTTP: new or idle)

	refused [3]atomic.Uint64 // by reason index
	paused  [3]atomic.Uint64 // times Accept paused, by reason index
	// checkGone counts down the accepts after a pause whose client is
	// checked first (they may have waited in the queue); gone counts the
	// ones dropped because their client had left.
	checkGone atomic.Int32
	gone      atomic.Uint64

	freed     chan struct{} // a place of this listener freed (1-buffered, never blocks the sender)
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	blocks   blockList // sources whose SYNs the kernel drops (synblock.go); under mu
	blockOff bool      // the filter could not be attached: refuse one by one; under mu

	fmu          sync.Mutex  // serializes syncFilter; guards the fields below
	installed    uint64      // blocks.gen of the filter attached
	attached     bool        // a filter of this listener's is on the socket
	blockTimer   clock.Timer // the next block's end
	lastBlockLog time.Time
	lastForeign  atomic.Int64 // unix nanoseconds of the last look for a filter not of this listener's

	evicted      atomic.Uint64
	lastLog      [3]atomic.Int64 // unix nanoseconds of the last refusal warning, by reason
	lastPauseLog [3]time.Time
	lastEvictLog time.Time
}

// PauseRecheck bounds how long a paused Accept waits before it asks again
// whether the listener is still full: a place of its own wakes it at once,
// but the process-wide reserve is freed by other listeners and medic's own
// work.
const PauseRecheck = 100 * time.Millisecond

// EvictIdleAfter is how long a connection must have been idle (never used,
// or an idle keep-alive) before a newcomer may take its place. Younger
// connections are not evicted: at a cap the newcomer is refused instead
// (503). Without it a flood of
// few sources turned its own connections over as fast as it could dial
// (each admitted connection evicted the one admitted tens of milliseconds
// before it, and each evicted one dialled again): in the API phase of
// bench/flood.sh 1 000–5 000 evictions a second, each a whole accept, a
// server goroutine and a close. With it evictions from one source are at
// most its cap per EvictIdleAfter (the API: 64 every 2 s), and the rest of the flood is refused on
// sight (rawaccept.go), which costs a few system calls.
const EvictIdleAfter = 2 * time.Second

// CheckAfterPause is how many connections accepted after a pause are first
// checked for a client that has already left (a FIN or a reset with
// nothing sent): at most as many can have waited in the kernel's accept
// queue meanwhile (somaxconn, 4096 by default on Linux).
const CheckAfterPause = 4096

type source struct {
	open int
	idle idleList // kind onSource
}

// Wrap guards ln.
func Wrap(ln net.Listener, o Options) *Listener {
	if o.Cost <= 0 {
		o.Cost = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Clock = clock.Or(o.Clock)
	if o.ClientSpeaksFirst {
		if err := DeferAccept(ln, DeferAcceptFor); err != nil {
			o.Logger.Warn("cannot defer accept until the client speaks (TCP_DEFER_ACCEPT)", "listener", o.Name, "err", err)
		}
	}
	l := &Listener{Listener: ln, o: o, raw: newRawAcceptor(ln), sources: map[netip.Addr]*source{},
		freed: make(chan struct{}, 1), done: make(chan struct{})}
	if l.raw != nil {
		// A socket handed over by an upgrade keeps the filter of the
		// process before; this one starts with nothing blocked.
		if err := setFilter(l.raw.rc, nil); err != nil {
			l.blockOff = true
			o.Logger.Warn("cannot drop a flooding source's connections in the kernel (SO_DETACH_FILTER; an MPTCP socket takes no filter); refusing them one by one",
				"listener", o.Name, "err", err)
		}
	}
	return l
}

// Stats are a listener's counts.
type Stats struct {
	Open    int
	Refused map[Reason]uint64
	Paused  map[Reason]uint64 // times Accept stopped accepting because the listener was full
	Evicted uint64            // idle connections closed to admit new ones
	Gone    uint64            // connections that waited through a pause and whose client had left: closed, never handed over
	// Blocked: sources whose new connections the kernel drops now
	// (synblock.go); BlockedTotal: sources blocked since the start.
	Blocked      int
	BlockedTotal uint64
}

var reasons = [3]Reason{RefusedCap, RefusedPerSource, RefusedFDs}

// Stats returns the listener's counts.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	s := Stats{Open: l.open, Refused: map[Reason]uint64{}, Paused: map[Reason]uint64{}, Evicted: l.evicted.Load(), Gone: l.gone.Load(),
		Blocked: len(l.blocks.until), BlockedTotal: l.blocks.total}
	l.mu.Unlock()
	for i, r := range reasons {
		s.Refused[r] = l.refused[i].Load()
		s.Paused[r] = l.paused[i].Load()
	}
	return s
}

// Accept returns the next admitted connection. Refused connections are
// closed here and never returned. While the listener is full whatever the
// source (full), Accept does not accept at all: it waits until a place of
// this listener frees, asking again every PauseRecheck, and the kernel
// queues new connections meanwhile (its accept queue, then dropped SYNs
// that the client retransmits). When the process is out of descriptors
// (EMFILE, ENFILE) Accept returns the error, as the server's loop expects,
// after counting it as a refusal for the reserve.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		if why := l.full(); why >= 0 {
			if err := l.pause(why); err != nil {
				return nil, err
			}
			continue
		}
		var (
			c   net.Conn
			src netip.Addr
			err error
		)
		if l.raw != nil {
			l.detachForeign()
			c, src, err = l.acceptRaw()
		} else if c, err = l.Listener.Accept(); err == nil {
			src = sourceOf(c)
		}
		if err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				l.refuse(nil, 2)
			}
			return nil, err
		}
		if c == nil {
			continue // a batch refused on sight: is the listener full now?
		}
		if l.checkGone.Load() > 0 && l.checkGone.Add(-1) >= 0 && clientGone(c) {
			l.gone.Add(1)
			_ = c.Close()
			continue
		}
		if gc, ok := l.admit(c, src); ok {
			return gc, nil
		}
	}
}

// clientGone reports whether c's client has closed or reset it without
// sending anything (one non-blocking MSG_PEEK). A connection that waited in
// the queue through a pause is often one a flooder has given up on; a
// TCP-mode proxy would dial an instance for each, in one burst when the
// flood lets go, and those dials must not look like the instance failing.
// (A client that half-closes before sending anything is dropped too; only
// right after a pause.)
func clientGone(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	_ = rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = n == 0 && err == nil || err == syscall.ECONNRESET
	})
	return gone
}

// pause waits, without accepting, until a place of this listener frees or
// PauseRecheck passes; net.ErrClosed once the listener is closed.
//
// Why not accept and refuse: a flooder refused at once dials again at once,
// and each round costs medic an accept, a write and a close (58 % of its
// CPU in the TCP-proxy flood of bench/flood.sh, about 7 000 refusals a
// second) while the CPU is what the clients already in need. Paused, the
// listener costs nothing: the kernel's queue fills, then the flooder's SYNs
// are dropped and its connect waits for their retransmission, as HAProxy
// does at maxconn. A legitimate newcomer waits in the same queue and gets in
// when a place frees, instead of being told to retry.
func (l *Listener) pause(why int) error {
	l.paused[why].Add(1)
	l.checkGone.Store(CheckAfterPause)
	now := l.o.Clock.Now()
	l.mu.Lock()
	log := now.Sub(l.lastPauseLog[why]) >= LogEvery
	if log {
		l.lastPauseLog[why] = now
	}
	open := l.open
	l.mu.Unlock()
	if log {
		l.o.Logger.Warn("not accepting client connections until a place frees", "listener", l.o.Name, "reason", string(reasons[why]),
			"open", open, "max_connections", l.o.MaxConns, "paused_total", l.paused[why].Load())
	}
	t := time.NewTimer(PauseRecheck)
	defer t.Stop()
	select {
	case <-l.done:
		return &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
	case <-l.freed:
	case <-t.C:
	}
	return nil
}

// full reports why the listener would refuse any connection now, whatever
// its source (a reason index), or -1: at its cap or its share of the
// descriptors with no idle connection of its own to give the place, or at
// the reserve with no idle connection of any listener.
func (l *Listener) full() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.idle.Len() > 0 {
		// A newcomer would take an idle connection's place, or be refused
		// at once while they are younger than EvictIdleAfter: pausing
		// would also stop refusing a few sources' flood, whose
		// connections would then fill the kernel's queue ahead of
		// everyone else's.
		return -1
	}
	if l.o.MaxConns > 0 && l.open >= l.o.MaxConns {
		return 0
	}
	switch l.o.FDs.peek(l.open*l.o.Cost, l.o.Cost, l.o.Priority) {
	case overShare, atReserve:
		return 2
	}
	return -1
}

// closed reports whether Close was called.
func (l *Listener) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Close closes the listener and ends a paused Accept.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.fmu.Lock()
		if l.blockTimer != nil {
			l.blockTimer.Stop()
		}
		if l.attached {
			// The socket may outlive this listener: an upgrade hands it
			// to the next medic, which knows nothing of this listener's
			// blocks and would drop their SYNs for ever.
			_ = setFilter(l.raw.rc, nil)
			l.attached = false
		}
		l.fmu.Unlock()
		if l.raw != nil {
			_ = l.raw.f.Close() // ends a waiting acceptRaw
		}
	})
	return l.Listener.Close()
}

func sourceOf(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// admit decides for one accepted connection. At a cap it first closes the
// oldest evictable connection (of the same source for the per-source cap).
func (l *Listener) admit(c net.Conn, src netip.Addr) (*Conn, bool) {
	var victims []*Conn
	now := l.o.Clock.Now()
	l.mu.Lock()
	s := l.sources[src]
	if s == nil {
		s = &source{idle: idleList{kind: onSource}}
		l.sources[src] = s
	}
	why := -1
	block := false
	// At its cap, or treated as at it while the listener is into the
	// light-source reserve and s is not light.
	if l.o.MaxPerSource > 0 && s.open >= l.o.MaxPerSource || l.heavyAtReserveLocked(s) {
		if v := l.evictLocked(&s.idle, now); v != nil {
			victims = append(victims, v)
		} else {
			why = 1
		}
		// A dial at its cap, refused or in place of one of its own idle
		// connections: a flood churning its own connections costs an
		// accept, a server goroutine and a close per dial all the same.
		block = l.noteRefusedLocked(src, now)
	}
	if why < 0 && l.o.MaxConns > 0 && l.open >= l.o.MaxConns {
		if v := l.evictLocked(&l.idle, now); v != nil {
			victims = append(victims, v)
		} else {
			why = 0
		}
	}
	fd := taken
	if why < 0 {
		if fd = l.o.FDs.take(l.open*l.o.Cost, l.o.Cost, l.o.Priority); fd == overShare {
			// This listener holds its share: it may only replace its own idle connections.
			if v := l.evictLocked(&l.idle, now); v != nil {
				victims = append(victims, v)
				l.o.FDs.force(l.o.Cost) // the victim's descriptors go to the newcomer
				fd = taken
			} else {
				why = 2
			}
		}
	}
	var gc *Conn
	if why < 0 {
		l.open++
		s.open++
		gc = &Conn{Conn: c, l: l, src: src}
		if j := l.o.DeadlineJitter; j > 0 {
			gc.jitter = rand.N(2*j+1) - j
		}
	} else if s.open == 0 {
		delete(l.sources, src)
	}
	l.mu.Unlock()
	if block {
		l.syncFilter() // first: once the client sees its refusal, its next SYN is dropped
	}
	for _, v := range victims {
		l.evicted.Add(1)
		_ = v.Conn.Close() // the server sees a read error and calls Close, which releases it
	}
	if len(victims) > 0 {
		l.noteEviction()
	}
	if why < 0 && fd == atReserve {
		// At the reserve: only the oldest idle connection of any listener can give its place.
		if v := l.o.FDs.popIdle(); v != nil && v.l.evict(v) {
			l.o.FDs.force(l.o.Cost)
		} else {
			l.mu.Lock()
			gc.released = true // never counted in FDs
			l.open--
			s.open--
			if s.open <= 0 && s.idle.Len() == 0 {
				delete(l.sources, src)
			}
			l.mu.Unlock()
			why = 2
		}
	}
	if why >= 0 {
		l.refuse(c, why)
		return nil, false
	}
	return gc, true
}

// evict closes c, taken off the process's idle list, to give its place;
// false when it was released meanwhile.
func (l *Listener) evict(c *Conn) bool {
	l.mu.Lock()
	if c.released {
		l.mu.Unlock()
		return false
	}
	l.unidleLocked(c)
	c.evicted = true
	l.releaseLocked(c)
	l.mu.Unlock()
	l.evicted.Add(1)
	_ = c.Conn.Close()
	l.noteEviction()
	return true
}

// noteEviction logs, at most once per LogEvery, that idle connections are
// being closed to admit new ones.
func (l *Listener) noteEviction() {
	now := l.o.Clock.Now()
	l.mu.Lock()
	log := now.Sub(l.lastEvictLog) >= LogEvery
	if log {
		l.lastEvictLog = now
	}
	l.mu.Unlock()
	if log {
		l.o.Logger.Warn("closing idle client connections to admit new ones", "listener", l.o.Name,
			"open", l.Stats().Open, "max_connections", l.o.MaxConns, "max_per_source", l.o.MaxPerSource, "evicted_total", l.evicted.Load())
	}
}

// ReserveShare is the share of a listener's places (max_connections / 8)
// kept for sources that hold fewer than max_per_source / 8 connections
// (at least 1): once the listener holds all but that reserve, a source
// with more is refused as at its own cap. A flood of a few sources, each
// at its cap, then cannot take the last places from everyone else (the
// operator's `medic status` over TCP, a new client). Not applied when
// max_per_source is over half of max_connections (one big source is
// expected there, such as a load balancer in front) or either cap is off.
const ReserveShare = 8

// heavyAtReserveLocked reports whether a newcomer of s is refused because
// the listener is into its light-source reserve and s is not light (l.mu held).
func (l *Listener) heavyAtReserveLocked(s *source) bool {
	r := l.o.MaxConns / ReserveShare
	if r == 0 || l.o.MaxPerSource <= 0 || l.o.MaxPerSource > l.o.MaxConns/2 || s == nil {
		return false
	}
	return l.open >= l.o.MaxConns-r && s.open >= max(1, l.o.MaxPerSource/ReserveShare)
}

// evictable reports whether the oldest connection on from has been idle for
// EvictIdleAfter (l.mu held).
func (l *Listener) evictable(from *idleList, now time.Time) bool {
	v := from.Front()
	return v != nil && now.Sub(v.idleSince) >= EvictIdleAfter
}

// evictLocked takes the oldest evictable connection off the lists, or nil.
func (l *Listener) evictLocked(from *idleList, now time.Time) *Conn {
	if !l.evictable(from, now) {
		return nil
	}
	v := from.Front()
	l.unidleLocked(v)
	v.evicted = true
	l.releaseLocked(v)
	return v
}

func (l *Listener) refuse(c net.Conn, why int) {
	l.refused[why].Add(1)
	if c != nil {
		if len(l.o.Refusal) > 0 {
			_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			_, _ = c.Write(l.o.Refusal)
		}
		_ = c.Close()
	}
	// One atomic load per refusal; the warning at most once per LogEvery.
	now := l.o.Clock.Now().UnixNano()
	last := l.lastLog[why].Load()
	if last != 0 && now-last < int64(LogEvery) || !l.lastLog[why].CompareAndSwap(last, now) {
		return
	}
	l.o.Logger.Warn("refusing client connections", "listener", l.o.Name, "reason", string(reasons[why]),
		"open", l.Stats().Open, "max_connections", l.o.MaxConns, "max_per_source", l.o.MaxPerSource,
		"refused_total", l.refused[why].Load())
}

// releaseLocked gives back what an admitted connection held; once.
func (l *Listener) releaseLocked(c *Conn) {
	if c.released {
		return
	}
	c.released = true
	l.open--
	if s := l.sources[c.src]; s != nil {
		s.open--
		if s.open <= 0 && s.idle.Len() == 0 {
			delete(l.sources, c.src)
		}
	}
	l.o.FDs.give(l.o.Cost)
	select { // wake a paused Accept
	case l.freed <- struct{}{}:
	default:
	}
}

func (l *Listener) unidleLocked(c *Conn) {
	l.o.FDs.setIdle(c, false)
	l.idle.Remove(c)
	if c.links[onSource].in {
		if s := l.sources[c.src]; s != nil {
			s.idle.Remove(c)
		} else {
			c.links[onSource] = link{}
		}
	}
}

// ConnState is an http.Server's ConnState hook: new and idle connections can
// be evicted (oldest first) to admit new ones at a cap; active ones never.
// Chain it when the server needs its own hook.
func (l *Listener) ConnState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*Conn)
	if !ok || c.l != l {
		return
	}
	var now time.Time
	if st == http.StateNew || st == http.StateIdle {
		now = l.o.Clock.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unidleLocked(c)
	if c.released {
		return
	}
	switch st {
	case http.StateNew, http.StateIdle:
		c.idleSince = now
		l.idle.PushBack(c)
		if s := l.sources[c.src]; s != nil {
			s.idle.PushBack(c)
		}
		l.o.FDs.setIdle(c, true)
	case http.StateClosed, http.StateHijacked:
		if st == http.StateClosed {
			l.releaseLocked(c)
		}
	}
}

// Conn is an admitted connection; Close releases its place.
type Conn struct {
	net.Conn
	l      *Listener
	src    netip.Addr
	jitter time.Duration // added to every read deadline (Options.DeadlineJitter)

	// under l.mu
	released, evicted bool
	idleSince         time.Time // when it was last put on the idle lists
	// links on the idle lists (idleList): onListener and onSource under
	// l.mu, onFDs under l.o.FDs.mu
	links [listKinds]link
}

// Close closes the connection and releases its place (once).
func (c *Conn) Close() error {
	c.l.mu.Lock()
	c.l.unidleLocked(c)
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// SetReadDeadline sets the wrapped connection's read deadline, moved by the
// connection's jitter (Options.DeadlineJitter); a zero t clears it.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.jitter != 0 && !t.IsZero() {
		t = t.Add(c.jitter)
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets both deadlines; the read one moved as SetReadDeadline does.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.jitter == 0 || t.IsZero() {
		return c.Conn.SetDeadline(t)
	}
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetReadDeadline(t.Add(c.jitter))
}

// NetConn is the connection the guard wraps (for splice(2) in io.Copy).
func (c *Conn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes when the wrapped connection can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// ReadFrom and WriteTo keep io.Copy's zero-copy paths.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.Conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{c.Conn})
}

// Unwrap returns the connection under any number of guards.
func Unwrap(c net.Conn) net.Conn {
	for {
		g, ok := c.(*Conn)
		if !ok {
			return c
		}
		c = g.Conn
	}
}
