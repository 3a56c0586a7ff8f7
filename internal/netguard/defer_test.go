package netguard_test

import (
	"net"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/netguard"
)

// TestDeferAcceptHoldsSilentConnections: on a listener wrapped with
// ClientSpeaksFirst (DeferAccept), a client that
// connects and says nothing is not handed to Accept (the kernel keeps it),
// while one that sends its request is handed over at once.
func TestDeferAcceptHoldsSilentConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	gl := netguard.Wrap(ln, netguard.Options{Name: "test", ClientSpeaksFirst: true}) // DeferAccept, DeferAcceptFor
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := gl.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	select {
	case c := <-accepted:
		c.Close()
		t.Fatal("a connection that sent nothing was accepted")
	case <-time.After(500 * time.Millisecond):
	}
	talker, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer talker.Close()
	if _, err := talker.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-accepted:
		defer c.Close()
		if c.RemoteAddr().String() != talker.LocalAddr().String() {
			t.Fatalf("accepted %v; want the client that spoke (%v)", c.RemoteAddr(), talker.LocalAddr())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a connection that sent its request was not accepted within 5s")
	}
}
