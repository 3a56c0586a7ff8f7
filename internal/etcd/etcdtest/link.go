package etcdtest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Link is a TCP relay from a loopback port to a target. Cut closes every
// relayed connection and refuses new ones (an agent partitioned from etcd);
// Restore lets connections through again.
type Link struct {
	Addr   string // host:port clients connect to
	target string
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewLink relays connections from a new loopback port to target until the test ends.
func NewLink(tb testing.TB, target string) *Link {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l := &Link{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.accept()
	tb.Cleanup(l.Close)
	return l
}

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.cut {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.conns[c] = struct{}{}
		l.mu.Unlock()
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.relay(c)
		}()
	}
}

func (l *Link) relay(c net.Conn) {
	defer l.forget(c)
	up, err := net.Dial("tcp", l.target)
	if err != nil {
		return
	}
	l.mu.Lock()
	if l.cut {
		l.mu.Unlock()
		up.Close()
		return
	}
	l.conns[up] = struct{}{}
	l.mu.Unlock()
	defer l.forget(up)
	done := make(chan struct{})
	go func() { io.Copy(up, c); up.Close(); c.Close(); close(done) }()
	io.Copy(c, up)
	c.Close()
	up.Close()
	<-done
}

func (l *Link) forget(c net.Conn) {
	c.Close()
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// Cut closes every relayed connection and refuses new ones until Restore.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	for c := range l.conns {
		c.Close()
	}
}

// Restore lets connections through again.
func (l *Link) Restore() {
	l.mu.Lock()
	l.cut = false
	l.mu.Unlock()
}

// Close stops the relay and waits for its goroutines.
func (l *Link) Close() {
	l.ln.Close()
	l.Cut()
	l.wg.Wait()
}
