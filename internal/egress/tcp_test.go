package egress_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/egress"
)

func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// TestTCPDependency: connections are spliced to the dependency; the
// connection bulkhead sheds one over max_concurrent; an injected outage
// opens the breaker and later connections are closed at once.
func TestTCPDependency(t *testing.T) {
	d := &config.Dependency{Kind: config.DependencyDatabase, Address: echoServer(t),
		Bulkhead: config.DependencyBulkhead{MaxConcurrent: 1, MaxQueue: ptr(0)},
		Breaker:  config.DependencyBreaker{Failures: 2, Window: config.Duration(10 * time.Second), OpenFor: config.Duration(time.Minute)}}
	set, addr, tr := startSet(t, d)

	c1, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c1.Write([]byte("ping\n"))
	c1.SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, err := bufio.NewReader(c1).ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo through the listener: %q %v", line, err)
	}
	// A second connection while the first holds the only slot is closed at once.
	if !closedAtOnce(t, addr) {
		t.Fatal("a connection over the bulkhead was not shed")
	}
	c1.Close()
	waitFor(t, func() bool { return set.Stats()[0].InFlight == 0 }, "the first connection to end")

	set.Inject("app", "dep", egress.Fault{Down: true})
	for range 2 {
		if !closedAtOnce(t, addr) {
			t.Fatal("a connection to a down dependency was not closed")
		}
	}
	waitFor(t, func() bool { return set.Stats()[0].State == "open" }, "the breaker to open")
	set.Inject("app", "dep", egress.Fault{})
	if !closedAtOnce(t, addr) {
		t.Fatal("an open breaker let a connection through")
	}
	st := set.Stats()[0]
	if st.Calls["ok"] != 1 || st.Calls["shed"] != 1 || st.Calls["error"] != 2 || st.Calls["open"] != 1 {
		t.Fatalf("calls %v", st.Calls)
	}
	waitFor(t, func() bool { return len(tr.list()) == 1 }, "the open transition")
}

// closedAtOnce reports whether a new connection is closed by medic without an answer.
func closedAtOnce(t *testing.T, addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err = c.Read(make([]byte, 1))
	return err == io.EOF
}
