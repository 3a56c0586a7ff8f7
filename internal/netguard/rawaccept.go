package netguard

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// A TCP listener accepts with accept4(2) itself, on a duplicate of the
// listening socket registered with Go's poller, so that it knows a
// connection's source before Go builds anything for it. A connection over
// its source's cap with nothing to evict is refused with bare system calls
// (the refusal written, then close(2)) — no net.Conn, no epoll registration,
// no socket options, no goroutine, no allocation. Under a flood of few
// sources that is most of the flood's dials: Go's accept path, the
// server's goroutine and its buffers were most of medic's CPU per dial
// (bench/flood.sh, the API phase). An admitted connection becomes a
// *net.TCPConn (net.FileConn) with the options Go's own accept sets.

// rawAcceptor accepts from a duplicate of a TCP listener's socket.
type rawAcceptor struct {
	f  *os.File // the duplicate, non-blocking, in Go's poller
	rc syscall.RawConn
}

// rawBatch bounds the connections one wake-up refuses before Accept looks
// again at whether the listener is full (and may pause).
const rawBatch = 64

// keepAlive is what Go's accept sets on a TCP connection (net.ListenConfig's
// default), kept for the connections the raw path admits.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 9}

// newRawAcceptor duplicates ln's socket; nil when ln is not a TCP listener
// or the duplicate fails (Accept then uses ln's own Accept).
func newRawAcceptor(ln net.Listener) *rawAcceptor {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil
	}
	sc, err := tl.SyscallConn()
	if err != nil {
		return nil
	}
	nfd := -1
	if cerr := sc.Control(func(fd uintptr) {
		nfd, err = dupCloexec(int(fd))
	}); cerr != nil || err != nil {
		return nil
	}
	// The duplicate shares the socket and its O_NONBLOCK (set by Go on the
	// original), so os.NewFile puts it in the poller.
	f := os.NewFile(uintptr(nfd), "listener")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	return &rawAcceptor{f: f, rc: rc}
}

func dupCloexec(fd int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// accept4 accepts one connection from the listening socket fd, blocking
// (the poller owns non-blocking descriptors, and net.FileConn sets it), and
// returns its source address; nothing is allocated.
func accept4(fd int) (int, netip.Addr, error) {
	var rsa syscall.RawSockaddrAny
	n := uint32(syscall.SizeofSockaddrAny)
	r, _, e := syscall.Syscall6(syscall.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)), syscall.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.Addr{}, e
	}
	var src netip.Addr
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		src = netip.AddrFrom4(p.Addr)
	case syscall.AF_INET6:
		p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		src = netip.AddrFrom16(p.Addr).Unmap()
	}
	return int(r), src, nil
}

// acceptRaw returns the next connection not refused on sight (nil, nil when
// rawBatch were refused: the caller looks again at whether to pause).
func (l *Listener) acceptRaw() (net.Conn, netip.Addr, error) {
	var (
		nfd    = -1
		src    netip.Addr
		aerr   error
		served int
	)
	err := l.raw.rc.Read(func(fd uintptr) bool {
		for served < rawBatch {
			c, a, err := accept4(int(fd))
			switch {
			case err == syscall.EAGAIN:
				return false // wait in the poller for the next
			case err == syscall.EINTR || err == syscall.ECONNABORTED:
				continue
			case err != nil:
				aerr = os.NewSyscallError("accept4", err)
				return true
			}
			if l.refuseOnSight(c, a) {
				served++
				continue
			}
			nfd, src = c, a
			return true
		}
		return true
	})
	if err != nil {
		// Closing the duplicate fails a waiting Read with "use of closed
		// file" (not os.ErrClosed): callers expect Go's net.ErrClosed.
		if l.closed() || errors.Is(err, os.ErrClosed) {
			err = net.ErrClosed
		}
		return nil, src, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: err}
	}
	if aerr != nil {
		return nil, src, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: aerr}
	}
	if nfd < 0 {
		return nil, src, nil
	}
	f := os.NewFile(uintptr(nfd), "") // blocking: not in the poller, FileConn's duplicate is
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, src, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: err}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true) // as Go's accept
		_ = tc.SetKeepAliveConfig(keepAlive)
	}
	return c, src, nil
}

// refuseOnSight refuses fd, a connection from src, when src is at its cap
// with no connection of its own old enough to give the place, or the
// listener is at its cap with none of any source: the refusal written
// without waiting, then closed. The rest is decided by admit.
func (l *Listener) refuseOnSight(fd int, src netip.Addr) bool {
	if l.o.MaxPerSource <= 0 && l.o.MaxConns <= 0 {
		return false
	}
	now := l.o.Clock.Now()
	why := -1
	block := false
	l.mu.Lock()
	if s := l.sources[src]; s != nil && (l.o.MaxPerSource > 0 && s.open >= l.o.MaxPerSource || l.heavyAtReserveLocked(s)) && !l.evictable(&s.idle, now) {
		why = 1
		block = l.noteRefusedLocked(src, now)
	} else if l.o.MaxConns > 0 && l.open >= l.o.MaxConns && !l.evictable(&l.idle, now) {
		why = 0
	}
	l.mu.Unlock()
	if why < 0 {
		return false
	}
	if block {
		l.syncFilter() // first: once the client sees its refusal, its next SYN is dropped
	}
	l.refuse(nil, why) // counted before the client can see its refusal
	if len(l.o.Refusal) > 0 {
		_, _, _ = syscall.Syscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&l.o.Refusal[0])), uintptr(len(l.o.Refusal)),
			syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL, 0, 0)
	}
	_ = syscall.Close(fd)
	return true
}
