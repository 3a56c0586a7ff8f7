package proxy_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/proxy"
)

// A connection being opened to an instance when its connections are cut
// (database fencing) must not escape the cut: it goes to another instance.
func TestTCPCutWhileDialingIsNotSpliced(t *testing.T) {
	h := mustStart(t, tcpConfig(), nil)
	old := echoServer(t, "a")
	h.p.SetBackend("db/0", old, true)
	h.p.SetFault("db/0", proxy.Fault{Latency: dur(400 * time.Millisecond)}) // the dial waits here

	c, err := net.Dial("tcp", h.p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for h.p.Stats().Inflight == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the proxy never started connecting")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Fencing as the database router does it: the old instance leaves
	// rotation, its connections are cut, the new one is ready.
	h.p.SetBackend("db/1", echoServer(t, "b"), true)
	h.p.SetBackend("db/0", old, false)
	h.p.CloseConnections("db/0")

	got, err := roundTrip(c, bufio.NewReader(c), "hello")
	if err != nil {
		t.Fatalf("exchange after the cut: %v", err)
	}
	if got != "b: hello\n" {
		t.Fatalf("got %q: the connection dialed across the cut reached the old instance", got)
	}
}
