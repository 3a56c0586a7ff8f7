package etcd

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
)

// ErrCut is the dial error while a Cut is in force.
var ErrCut = errors.New("etcd: connection cut by a drill")

// Cut carries a client's connections to etcd and can partition them from
// etcd, the way a drill needs: the agent's requests fail and its lease stops
// being renewed. Two kinds of partition:
//
//   - Cut closes every open connection and refuses new ones (a firewall
//     that rejects: errors come at once);
//   - Blackhole keeps the connections open but lets nothing through either
//     way, and new connections hang until their dial timeout (a network that
//     drops packets: only timeouts tell).
//
// Restore ends either. The zero value is ready to use.
type Cut struct {
	mu    sync.Mutex
	cut   bool
	hole  chan struct{} // non-nil while blackholed; closed by Restore
	conns map[*trackedConn]struct{}
}

// Cut closes every connection and refuses new ones.
func (c *Cut) Cut() {
	c.mu.Lock()
	c.cut = true
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	for conn := range conns {
		conn.Close()
	}
}

// Blackhole stalls every connection, open or new, until Restore.
func (c *Cut) Blackhole() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hole == nil {
		c.hole = make(chan struct{})
	}
}

// Restore lets connections through again; stalled ones resume.
func (c *Cut) Restore() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = false
	if c.hole != nil {
		close(c.hole)
		c.hole = nil
	}
}

// Active reports whether a cut or a blackhole is in force.
func (c *Cut) Active() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut || c.hole != nil
}

// stall returns the channel Restore closes while blackholed, else nil.
func (c *Cut) stall() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hole
}

func (c *Cut) dial(ctx context.Context, addr string) (net.Conn, error) {
	c.mu.Lock()
	cut, hole := c.cut, c.hole
	c.mu.Unlock()
	if cut {
		return nil, ErrCut
	}
	if hole != nil { // a SYN into the void: wait for the dial timeout
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-hole:
		}
	}
	network := "tcp"
	if a, ok := strings.CutPrefix(addr, "unix://"); ok {
		network, addr = "unix", a
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		conn.Close()
		return nil, ErrCut
	}
	if c.conns == nil {
		c.conns = map[*trackedConn]struct{}{}
	}
	tc := &trackedConn{Conn: conn, c: c, closed: make(chan struct{})}
	c.conns[tc] = struct{}{}
	return tc, nil
}

// trackedConn forgets itself when closed, and stalls while blackholed: a
// read that got bytes during the blackhole holds them until Restore, a write
// waits for it.
type trackedConn struct {
	net.Conn
	c      *Cut
	once   sync.Once
	closed chan struct{}
}

// wait blocks while the cut is blackholed; false when the conn was closed.
func (t *trackedConn) wait() bool {
	for {
		hole := t.c.stall()
		if hole == nil {
			return true
		}
		select {
		case <-hole:
		case <-t.closed:
			return false
		}
	}
}

func (t *trackedConn) Read(b []byte) (int, error) {
	if !t.wait() {
		return 0, net.ErrClosed
	}
	n, err := t.Conn.Read(b)
	if !t.wait() {
		return 0, net.ErrClosed
	}
	return n, err
}

func (t *trackedConn) Write(b []byte) (int, error) {
	if !t.wait() {
		return 0, net.ErrClosed
	}
	return t.Conn.Write(b)
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		close(t.closed)
		t.c.mu.Lock()
		delete(t.c.conns, t)
		t.c.mu.Unlock()
	})
	return t.Conn.Close()
}
