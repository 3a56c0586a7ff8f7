package proxy

import (
	"bytes"
	"io"
	"net"
	"sync"

	"github.com/valyala/fasthttp"
)

// Handoff is the net/http plane's listener when the fast plane serves the
// proxy's socket: it yields the connections the fast plane hands over
// (Give). The dependency listeners of internal/egress use it the same way.
type Handoff struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewHandoff makes the listener of the connections handed over from a
// fasthttp server listening on addr.
func NewHandoff(addr net.Addr) *Handoff {
	return &Handoff{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept yields the next connection handed over.
func (h *Handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; a connection being handed over is then closed by fasthttp.
func (h *Handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

// Addr is the fasthttp server's address.
func (h *Handoff) Addr() net.Addr { return h.addr }

// handOff gives the connection of a request the fast plane does not take
// to the net/http plane (Give).
func (p *Proxy) handOff(ctx *fasthttp.RequestCtx) { p.handoff.Give(ctx) }

// Give hands the connection of ctx's request to the net/http server
// serving h, which reads the request again from its header
// (rebuilt from what fasthttp parsed) and serves the connection until it
// closes. The body has not been read: a body of known length comes from
// fasthttp's request stream (bytes it read ahead, then the socket), a
// chunked one straight from the socket.
func (hf *Handoff) Give(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	var head bytes.Buffer
	head.Write(h.Method())
	head.WriteByte(' ')
	head.Write(h.RequestURI())
	head.WriteByte(' ')
	head.Write(h.Protocol())
	head.WriteString("\r\n")
	for k, v := range h.AllInOrder() {
		if equalFold(k, strExpect) { // this hop already answered 100 Continue
			continue
		}
		head.Write(k)
		head.WriteString(": ")
		head.Write(v)
		head.WriteString("\r\n")
	}
	head.WriteString("\r\n")
	var body io.Reader = bytes.NewReader(nil)
	if h.ContentLength() > 0 {
		body = ctx.RequestBodyStream()
	}
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		closed := make(chan struct{})
		hc := &handedConn{Conn: c, r: io.MultiReader(&head, body, c), closed: closed}
		select {
		case hf.conns <- hc:
		case <-hf.done:
			return
		}
		// The request stream (and fasthttp's context behind it) must live
		// until the net/http plane is done with the connection, and no read
		// may still be running when fasthttp releases the context.
		<-closed
		hc.mu.Lock()
		hc.done = true
		hc.mu.Unlock()
	})
}

// handedConn is a connection handed to the net/http plane: it reads the
// rebuilt request first, and tells the fast plane when it is closed.
type handedConn struct {
	net.Conn
	r      io.Reader
	closed chan struct{}
	once   sync.Once

	mu   sync.RWMutex // held for reading by each Read
	done bool         // the fast plane's request stream is gone
}

func (c *handedConn) Read(b []byte) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.done {
		return 0, net.ErrClosed
	}
	return c.r.Read(b)
}

func (c *handedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}
