package netguard

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// Each connection's read deadlines move by its own offset within
// ±DeadlineJitter, so that a flood accepted together does not time out together.
func TestDeadlineJitterSpreadsTimeouts(t *testing.T) {
	const j = 200 * time.Millisecond
	l := listen(t, Options{DeadlineJitter: j})
	acc := acceptor(l)
	var conns []*Conn
	for range 20 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		gc := (<-acc).(*Conn)
		defer gc.Close()
		conns = append(conns, gc)
	}
	latest := conns[0]
	distinct := map[time.Duration]bool{}
	for _, c := range conns {
		if c.jitter < -j || c.jitter > j {
			t.Fatalf("jitter %v outside ±%v", c.jitter, j)
		}
		distinct[c.jitter] = true
		if c.jitter > latest.jitter {
			latest = c
		}
	}
	if len(distinct) < 10 {
		t.Fatalf("20 connections, %d distinct offsets", len(distinct))
	}
	start := time.Now()
	latest.SetReadDeadline(start.Add(300 * time.Millisecond))
	_, err := latest.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v; want the deadline", err)
	}
	if took := time.Since(start); took < 300*time.Millisecond+latest.jitter-10*time.Millisecond {
		t.Fatalf("a read deadline 300ms ahead on a connection with jitter %v ended after %v", latest.jitter, took)
	}
	// Cleared deadlines stay cleared; SetDeadline moves the read half too.
	if err := latest.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
}
