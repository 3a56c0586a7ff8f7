// Package rawconn reads and writes a TCP connection with raw system calls
// through Go's poller: the same non-blocking read(2) and write(2) that
// net.Conn makes, and the same waiting in the poller on EAGAIN (deadlines
// included), without the runtime's entersyscall/exitsyscall around them.
//
// Why: on loopback a write(2) runs the receiver's TCP input and wakes it, so
// it takes tens of microseconds; the runtime's monitor then takes the
// goroutine's P away as from a blocking call and wakes another thread for
// it (a futex wake, later a futex sleep), once per request at the proxy's
// rates. A non-blocking read or write never blocks, so holding the P through
// it is what an event loop (HAProxy, nginx) does. bench/proxy/results.md has
// the figures.
package rawconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a net.Conn whose Read and Write are raw system calls. Everything
// else (deadlines, Close, addresses) is the wrapped connection's.
type Conn struct {
	net.Conn
	rc syscall.RawConn

	// the call in progress: one read and one write at a time (net.Conn
	// allows concurrent calls; rmu and wmu serialise them, as the poller's
	// own locks would)
	rmu    sync.Mutex
	wmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerr   syscall.Errno
	wbuf   []byte
	wn     int
	werr   syscall.Errno
	readFn func(uintptr) bool // c.read, bound once (no closure per call)
	writeF func(uintptr) bool
}

// Wrap returns c with raw reads and writes on the descriptor of fd, which
// is c or the plain TCP connection c wraps (never under TLS: the reads and
// writes would bypass it); c itself when fd has no descriptor. c stays the
// one Close, deadlines and the rest go to.
func Wrap(c, fd net.Conn) net.Conn {
	sc, ok := fd.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	r := &Conn{Conn: c, rc: rc}
	r.readFn, r.writeF = r.read, r.write
	return r
}

// NetConn is the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerr
	c.rbuf = nil
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is one read(2); false (EAGAIN) waits in the poller and comes again.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case 0:
			c.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rerr = e
		return true
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	c.wbuf, c.wn, c.werr = p, 0, 0
	err := c.rc.Write(c.writeF)
	n, errno := c.wn, c.werr
	c.wbuf = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// write writes what is left of wbuf; false (EAGAIN) waits in the poller.
func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		rest := c.wbuf[c.wn:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			c.wn += int(n)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.werr = e
		return true
	}
	return true
}

// opError names the call as net's errors do; a RawConn's own errors
// (deadline, closed) are already *net.OpError.
func (c *Conn) opError(op string, err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.Conn.LocalAddr(), Addr: c.Conn.RemoteAddr(), Err: err}
}

// SyscallConn is the wrapped connection's.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// CloseWrite half-closes the wrapped connection when it can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
