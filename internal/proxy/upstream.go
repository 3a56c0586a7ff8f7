package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http/httputil"
	"sync"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/rawconn"
)

// upstreams are the fast data plane's keep-alive connections, one idle
// stack per instance address. A try takes a connection, writes the request
// and reads the response on the calling goroutine: no goroutine per
// connection or per request, unlike net/http's Transport (a read and a
// write loop per connection, and a hand-off through channels per request).
type upstreams struct {
	dialer  *net.Dialer
	maxIdle int           // idle connections kept per address
	idleFor time.Duration // an idle connection older than this is closed, not reused

	mu     sync.Mutex
	byAddr map[string]*idleConns
	closed bool
}

// Bounds of the fast data plane's upstream side.
const (
	// upstreamMaxIdle matches the net/http path's MaxIdleConnsPerHost.
	upstreamMaxIdle = 256
	// upstreamIdleFor is shorter than the usual keep-alive timeouts of
	// servers (Go's net/http: none; nginx 75 s; Node 5 s is the exception,
	// covered by the one fresh retry of a stale connection), like net/http's 90 s.
	upstreamIdleFor = 90 * time.Second
	// upstreamBufSize bounds the response header an instance may send, and
	// is the read and write buffer of each connection (HAProxy's bufsize is 16 KiB).
	upstreamBufSize = 32 << 10
)

type idleConns struct {
	conns []*upConn
}

// upConn is one keep-alive connection to an instance.
type upConn struct {
	net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	addr   string
}

func newUpstreams(d *net.Dialer) *upstreams {
	return &upstreams{dialer: d, maxIdle: upstreamMaxIdle, idleFor: upstreamIdleFor, byAddr: map[string]*idleConns{}}
}

// get returns an idle connection to addr (reused) or dials a new one. With
// check, one idle for checkIdleAfter or longer is checked first (alive); a
// request that may be sent again on a fresh connection when the reused one
// turns out closed (idempotent: fastExchangeOnce) is not worth the syscall.
func (u *upstreams) get(ctx context.Context, addr string, now time.Time, check bool) (c *upConn, reused bool, err error) {
	u.mu.Lock()
	if ic := u.byAddr[addr]; ic != nil {
		for n := len(ic.conns); n > 0; n = len(ic.conns) {
			c = ic.conns[n-1]
			ic.conns[n-1] = nil
			ic.conns = ic.conns[:n-1]
			idle := now.Sub(c.idleAt)
			if idle < u.idleFor && (!check || idle < checkIdleAfter || alive(c)) {
				u.mu.Unlock()
				return c, true, nil
			}
			_ = c.Close()
		}
	}
	u.mu.Unlock()
	c, err = u.dial(ctx, addr)
	return c, false, err
}

// checkIdleAfter: a connection idle this long is checked before it is
// reused (one non-blocking peek): an instance that restarted has closed it,
// and a request written to it would fail after it may have been sent, which
// a POST cannot retry. net/http's Transport learns the same from the read
// loop it keeps on every idle connection. Below this, the connection was in
// use an instant ago and the check would cost a syscall per request. An
// idempotent request skips the check: on a closed connection it fails before
// any answer and is sent once more on a fresh one (errStale), which is not a
// failed try.
const checkIdleAfter = time.Millisecond

// alive reports whether an idle connection is still open: nothing to read
// (EAGAIN) is alive; EOF, an error or unexpected bytes are not.
func alive(c *upConn) bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.SetReadDeadline(time.Time{}) != nil { // the last try's deadline (put keeps it) would fail the check
		return false
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var b [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true
	})
	return ok
}

func (u *upstreams) dial(ctx context.Context, addr string) (*upConn, error) {
	nc, err := u.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	nc = rawconn.Wrap(nc, nc) // raw reads and writes: no P hand-off per request (internal/rawconn)
	return &upConn{Conn: nc, br: bufio.NewReaderSize(nc, upstreamBufSize), bw: bufio.NewWriterSize(nc, upstreamBufSize), addr: addr}, nil
}

// put returns a connection whose last exchange ended cleanly.
func (u *upstreams) put(c *upConn, now time.Time) {
	if c.br.Buffered() > 0 { // bytes past the response: the instance broke framing
		_ = c.Close()
		return
	}
	// The try's deadline stays: the next try sets its own before using c
	// (one timer update instead of a removal and an insertion per request),
	// and alive clears it before its check.
	c.idleAt = now
	u.mu.Lock()
	defer u.mu.Unlock()
	ic := u.byAddr[c.addr]
	if ic == nil {
		ic = &idleConns{}
		u.byAddr[c.addr] = ic
	}
	if u.closed || len(ic.conns) >= u.maxIdle {
		_ = c.Close()
		return
	}
	ic.conns = append(ic.conns, c)
}

// closeIdle closes every idle connection; with stop, later puts close theirs.
func (u *upstreams) closeIdle(stop bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = u.closed || stop
	for addr, ic := range u.byAddr {
		for _, c := range ic.conns {
			_ = c.Close()
		}
		delete(u.byAddr, addr)
	}
}

// Errors of the fast data plane's tries.
var (
	errStale         = errors.New("proxy: reused connection closed by the instance before answering")
	errUpstreamFrame = errors.New("proxy: the instance's response is not valid HTTP/1.1")
)

// bodyReader streams a response body that was not buffered, then hands its
// connection back (when the body ended cleanly) or closes it, and ends the
// try's outstanding count. fasthttp's server closes it after writing the body.
type bodyReader struct {
	r       io.Reader
	c       *upConn
	chunked bool
	eof     bool
	release func(c *upConn, clean bool)
	once    sync.Once
}

func newBodyReader(c *upConn, contentLength int, release func(*upConn, bool)) *bodyReader {
	br := &bodyReader{c: c, release: release}
	switch {
	case contentLength >= 0:
		br.r = io.LimitReader(c.br, int64(contentLength))
	case contentLength == -1: // chunked
		br.r, br.chunked = httputil.NewChunkedReader(c.br), true
	default: // -2: until the instance closes the connection
		br.r = c.br
	}
	return br
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close ends the body. A chunked body's trailer section is read and
// dropped (the fast path does not forward trailers; the net/http path does).
func (b *bodyReader) Close() error {
	b.once.Do(func() {
		clean := b.eof
		if clean && b.chunked {
			clean = skipTrailers(b.c.br) == nil
		}
		if _, ok := b.r.(*bufio.Reader); ok {
			clean = false // delimited by the connection's end: it cannot be reused
		}
		b.release(b.c, clean)
	})
	return nil
}

// skipTrailers reads a chunked body's trailer section up to its empty line.
func skipTrailers(br *bufio.Reader) error {
	for range 64 {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			return nil
		}
	}
	return errUpstreamFrame
}

// HopHeaders are the connection's own headers, never forwarded (RFC 9110
// §7.6.1, as net/http's ReverseProxy).
var HopHeaders = [][]byte{
	[]byte("Connection"), []byte("Proxy-Connection"), []byte("Keep-Alive"), []byte("Proxy-Authenticate"),
	[]byte("Proxy-Authorization"), []byte("Te"), []byte("Trailer"), []byte("Transfer-Encoding"), []byte("Upgrade"),
}

func isHop(key []byte) bool {
	for _, h := range HopHeaders {
		if equalFold(key, h) {
			return true
		}
	}
	return false
}

// equalFold compares ASCII header names without allocating.
func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// connectionListed reports whether key is named by a Connection header value v.
func connectionListed(v, key []byte) bool {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		tok := trimOWS(v[:i])
		if equalFold(tok, key) {
			return true
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return false
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// noBodyStatus reports statuses that never carry a body.
func noBodyStatus(s int) bool { return s < 200 || s == 204 || s == 304 }
