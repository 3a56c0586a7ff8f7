package proxy

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// hookConn is a real TCP connection whose SetReadDeadline calls hooks
// around the real one: they stand in for another goroutine (a release, the
// proxy's stop) acting at exactly that point of silentPlace.
type hookConn struct {
	*net.TCPConn
	before, after func(t time.Time)
}

func (c *hookConn) SetReadDeadline(t time.Time) error {
	if c.before != nil {
		c.before(t)
	}
	err := c.TCPConn.SetReadDeadline(t)
	if c.after != nil {
		c.after(t)
	}
	return err
}

// silentProxy is a tcp-mode proxy (never served) with max_silent 1, its one
// place held, and a TCP connection pair: the proxy's side and the peer.
func silentProxy(t *testing.T, headerTimeout time.Duration) (*Proxy, *net.TCPConn, *net.TCPConn) {
	t.Helper()
	cfg := &config.Proxy{Listen: "127.0.0.1:0", Mode: config.ProxyModeTCP, MaxSilent: 1}
	cfg.Limits.HeaderTimeout = config.Duration(headerTimeout)
	p, err := New(Options{Service: "db", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if !p.silent.tryAcquire() {
		t.Fatal("the first place was not free")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return p, c.(*net.TCPConn), peer.(*net.TCPConn)
}

// The one silent place is released as a connection beyond max_silent gets
// in line (before it is in line, or before its wait's deadline is set): it
// must get the place at once, not wait out its silence (a server-first
// client would be closed; main waited the whole header_timeout, then
// connected holding a place nobody had used meanwhile).
func TestSilentReleaseWhileGettingInLineIsNotLost(t *testing.T) {
	const timeout = 3 * time.Second
	p, c, _ := silentProxy(t, timeout)
	var once sync.Once
	hc := &hookConn{TCPConn: c, before: func(dl time.Time) {
		if dl.After(time.Now()) { // the wait's own deadline: the holder speaks now
			once.Do(p.silent.release)
		}
	}}
	start := time.Now()
	slot, ok := p.silentPlace(context.Background(), hc)
	took := time.Since(start)
	if !ok || !slot {
		t.Fatalf("silentPlace = slot %v, ok %v; want the released place", slot, ok)
	}
	if took > timeout/3 {
		t.Errorf("a connection whose place was released as it got in line waited %v (header_timeout %v)", took, timeout)
	}
	if held, waiting := p.silent.counts(); held != 1 || waiting != 0 {
		t.Errorf("after: held %d, waiting %d; want 1, 0", held, waiting)
	}
}

// The proxy's stop wakes a waiting connection through a deadline in the
// past. When the stop comes just as the connection got through (its client
// spoke), that deadline must not stay: the connection would splice with a
// read deadline in the past, and the client's bytes would never reach the
// instance.
func TestSilentStopAfterWaitLeavesNoPastDeadline(t *testing.T) {
	p, c, peer := silentProxy(t, 10*time.Second)
	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	woken := make(chan struct{})
	var wokenOnce, clearOnce sync.Once
	hc := &hookConn{TCPConn: c}
	hc.after = func(dl time.Time) {
		switch {
		case !dl.IsZero() && dl.Before(time.Now()): // the stop's wake-up
			wokenOnce.Do(func() { close(woken) })
		case dl.IsZero(): // the wait's end: the proxy stops now
			clearOnce.Do(func() {
				cancel()
				select {
				case <-woken:
				case <-time.After(10 * time.Second):
					t.Error("the stop's wake-up never came")
				}
			})
		}
	}
	slot, ok := p.silentPlace(ctx, hc)
	if !ok || slot {
		t.Fatalf("silentPlace = slot %v, ok %v; want ok without a slot (the client spoke)", slot, ok)
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil || b[0] != 'x' {
		t.Fatalf("reading the client's first byte after silentPlace: %q, %v; want x (no deadline left in the past)", b, err)
	}
}

// A client that half-closes before sending anything (a server-first
// protocol's client with nothing to say) is connected, as it is below
// max_silent, not closed.
func TestSilentHalfCloseBeforeSendingConnects(t *testing.T) {
	p, c, peer := silentProxy(t, 10*time.Second)
	if err := peer.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	slot, ok := p.silentPlace(context.Background(), c)
	if !ok || slot {
		t.Fatalf("silentPlace after the client's half-close = slot %v, ok %v; want ok without a slot", slot, ok)
	}
	if held, waiting := p.silent.counts(); held != 1 || waiting != 0 {
		t.Errorf("after: held %d, waiting %d; want 1, 0", held, waiting)
	}
}
