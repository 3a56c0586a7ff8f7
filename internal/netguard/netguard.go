// Package netguard bounds what clients can hold of a listener: a cap on open
// connections, a cap per source address, and the process's file-descriptor
// reserve (FDs). It wraps whatever net.Listener a server is given, so every
// server (net/http, the TCP proxy, a faster data plane, a handed-over
// listener) keeps its own accept loop.
//
// A connection beyond a cap is refused: the guard writes the listener's
// Refusal (an HTTP 503 for HTTP listeners) and closes it, and Accept goes on
// to the next one; the server never sees it. An HTTP server that reports its
// connections' states (ConnState) lets the guard close the oldest idle or
// never-used connection instead, so that a flood of idle connections cannot
// lock a real client out.
package netguard

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
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
	o Options

	mu      sync.Mutex
	open    int
	sources map[netip.Addr]*source
	idle    idleList // oldest first: evictable (HTTP: new or idle)

	refused    [3]atomic.Uint64 // by reason index
	rawRefused atomic.Uint64    // of those, refused by refuseRaw (the listener was full)

	rawMu        sync.Mutex
	raw          *os.File // a duplicate of the listening socket for refuseRaw; nil until needed
	closed       bool
	evicted      atomic.Uint64
	lastLog      [3]time.Time
	lastEvictLog time.Time
}

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
	return &Listener{Listener: ln, o: o, sources: map[netip.Addr]*source{}}
}

// Stats are a listener's counts.
type Stats struct {
	Open    int
	Refused map[Reason]uint64
	Evicted uint64 // idle connections closed to admit new ones
}

var reasons = [3]Reason{RefusedCap, RefusedPerSource, RefusedFDs}

// Stats returns the listener's counts.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	s := Stats{Open: l.open, Refused: map[Reason]uint64{}, Evicted: l.evicted.Load()}
	l.mu.Unlock()
	for i, r := range reasons {
		s.Refused[r] = l.refused[i].Load()
	}
	return s
}

// Accept returns the next admitted connection. Refused connections are
// closed here and never returned. When the process is out of descriptors
// (EMFILE, ENFILE) Accept returns the error, as the server's loop expects,
// after counting it as a refusal for the reserve.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		if why := l.full(); why >= 0 {
			if tl, ok := l.Listener.(*net.TCPListener); ok {
				c, err := l.refuseRaw(tl, why)
				if err != nil {
					return nil, err
				}
				if c == nil {
					continue // refused
				}
				if gc, ok := l.admit(c); ok {
					return gc, nil
				}
				continue
			}
		}
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				l.refuse(nil, 2)
			}
			return nil, err
		}
		if gc, ok := l.admit(c); ok {
			return gc, nil
		}
	}
}

// full reports why the listener would refuse any connection now, whatever
// its source (a reason index), or -1: at its cap or its share of the
// descriptors with no idle connection of its own to give the place, or at
// the reserve with no idle connection of any listener.
func (l *Listener) full() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.idle.Len() > 0 {
		return -1 // a newcomer would take an idle connection's place
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

// refuseRaw accepts the next connection of a full listener with accept4(2)
// and, while the listener is still full, writes the refusal and closes it
// with plain system calls: none of what net's Accept does for a connection
// it hands over (TCP_NODELAY, keep-alive options, epoll registration, a
// finalizer) and no write deadline, which made up half of medic's CPU per
// refused connection under a flood of a TCP proxy at its share (bench/flood.sh).
// It returns the connection when a place freed while it waited (nil when it
// refused it), or the accept's error.
func (l *Listener) refuseRaw(tl *net.TCPListener, why int) (net.Conn, error) {
	rc, err := l.rawConn(tl)
	if err != nil {
		return nil, &net.OpError{Op: "accept", Net: tl.Addr().Network(), Addr: tl.Addr(), Err: err}
	}
	nfd := -1
	var aerr error
	if err := rc.Read(func(fd uintptr) bool {
		for {
			nfd, _, aerr = syscall.Accept4(int(fd), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
			switch aerr {
			case syscall.EAGAIN:
				return false // wait until a connection is ready
			case syscall.EINTR, syscall.ECONNABORTED:
				continue
			}
			return true
		}
	}); err != nil {
		l.rawMu.Lock()
		if l.closed { // the duplicate closed under the wait: "use of closed file"
			err = net.ErrClosed
		}
		l.rawMu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: tl.Addr().Network(), Addr: tl.Addr(), Err: err}
	}
	if aerr != nil {
		if aerr == syscall.EMFILE || aerr == syscall.ENFILE {
			l.refuse(nil, 2)
		}
		return nil, &net.OpError{Op: "accept", Net: tl.Addr().Network(), Addr: tl.Addr(), Err: os.NewSyscallError("accept4", aerr)}
	}
	if now := l.full(); now >= 0 {
		l.refuse(nil, now) // counted before the client can see the close
		l.rawRefused.Add(1)
		if len(l.o.Refusal) > 0 {
			_, _ = syscall.Write(nfd, l.o.Refusal) // a fresh socket's send buffer holds it; never blocks (non-blocking)
		}
		// An orderly close, not a reset (SO_LINGER 0): a reset can reach the
		// client before its connect(2) returns, which then fails with
		// ECONNRESET instead of reading a refusal or an end of stream.
		_ = syscall.Close(nfd)
		return nil, nil
	}
	// A place freed while it waited: hand the connection over as net's Accept would.
	f := os.NewFile(uintptr(nfd), "")
	c, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return nil, nil // gone meanwhile (reset): as an aborted connection
	}
	return c, nil
}

// rawConn is a duplicate of the listening socket (a listener's own
// SyscallConn cannot wait for a connection), made once and closed with the
// listener.
func (l *Listener) rawConn(tl *net.TCPListener) (syscall.RawConn, error) {
	l.rawMu.Lock()
	defer l.rawMu.Unlock()
	if l.closed {
		return nil, net.ErrClosed
	}
	if l.raw == nil {
		f, err := tl.File() // non-blocking and registered with the poller, as the listener
		if err != nil {
			return nil, err
		}
		l.raw = f
	}
	return l.raw.SyscallConn()
}

// Close closes the listener (and its duplicate, if refuseRaw made one).
func (l *Listener) Close() error {
	l.rawMu.Lock()
	l.closed = true
	raw := l.raw
	l.rawMu.Unlock()
	if raw != nil {
		_ = raw.Close()
	}
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
func (l *Listener) admit(c net.Conn) (*Conn, bool) {
	src := sourceOf(c)
	var victims []*Conn
	l.mu.Lock()
	s := l.sources[src]
	if s == nil {
		s = &source{idle: idleList{kind: onSource}}
		l.sources[src] = s
	}
	why := -1
	if l.o.MaxPerSource > 0 && s.open >= l.o.MaxPerSource {
		if v := l.evictLocked(&s.idle); v != nil {
			victims = append(victims, v)
		} else {
			why = 1
		}
	}
	if why < 0 && l.o.MaxConns > 0 && l.open >= l.o.MaxConns {
		if v := l.evictLocked(&l.idle); v != nil {
			victims = append(victims, v)
		} else {
			why = 0
		}
	}
	fd := taken
	if why < 0 {
		if fd = l.o.FDs.take(l.open*l.o.Cost, l.o.Cost, l.o.Priority); fd == overShare {
			// This listener holds its share: it may only replace its own idle connections.
			if v := l.evictLocked(&l.idle); v != nil {
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
	} else if s.open == 0 {
		delete(l.sources, src)
	}
	l.mu.Unlock()
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

// evictLocked takes the oldest evictable connection off the lists, or nil.
func (l *Listener) evictLocked(from *idleList) *Conn {
	v := from.Front()
	if v == nil {
		return nil
	}
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
	now := l.o.Clock.Now()
	l.mu.Lock()
	log := now.Sub(l.lastLog[why]) >= LogEvery
	if log {
		l.lastLog[why] = now
	}
	l.mu.Unlock()
	if log {
		l.o.Logger.Warn("refusing client connections", "listener", l.o.Name, "reason", string(reasons[why]),
			"open", l.Stats().Open, "max_connections", l.o.MaxConns, "max_per_source", l.o.MaxPerSource,
			"refused_total", l.refused[why].Load())
	}
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
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unidleLocked(c)
	if c.released {
		return
	}
	switch st {
	case http.StateNew, http.StateIdle:
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
	l   *Listener
	src netip.Addr

	// under l.mu
	released, evicted bool
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
