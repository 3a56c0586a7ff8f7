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

// Cut carries a client's connections to etcd and can cut them: Cut closes
// every open connection and refuses new ones until Restore, which is what a
// network partition between the agent and etcd looks like from the agent
// (its requests fail, its lease stops being renewed). The zero value is
// ready to use.
type Cut struct {
	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
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

// Restore lets connections through again.
func (c *Cut) Restore() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = false
}

// Active reports whether the cut is in force.
func (c *Cut) Active() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut
}

func (c *Cut) dial(ctx context.Context, addr string) (net.Conn, error) {
	c.mu.Lock()
	cut := c.cut
	c.mu.Unlock()
	if cut {
		return nil, ErrCut
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
		c.conns = map[net.Conn]struct{}{}
	}
	tc := &trackedConn{Conn: conn, c: c}
	c.conns[tc] = struct{}{}
	return tc, nil
}

// trackedConn forgets itself when closed.
type trackedConn struct {
	net.Conn
	c    *Cut
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.c.mu.Lock()
		delete(t.c.conns, t)
		t.c.mu.Unlock()
	})
	return t.Conn.Close()
}
