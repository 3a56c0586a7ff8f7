package netguard

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// A full listener refuses with accept4 and close, none of net's per-connection
// set-up; the refusal still reaches the client, and once a place frees the
// connection that was waited for is admitted (handed over as a net.Conn).
func TestFullListenerRefusesRaw(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Wrap(ln, Options{Limits: Limits{MaxConns: 1}, Refusal: HTTP503})
	defer l.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	acc := make(chan accepted, 4)
	go func() {
		for {
			c, err := l.Accept()
			acc <- accepted{c, err}
			if err != nil {
				return
			}
		}
	}()
	c1, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	s1 := <-acc
	if s1.err != nil {
		t.Fatal(s1.err)
	}
	c2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c2)
	if !strings.Contains(string(b), "503") {
		t.Fatalf("refused connection read %q; want the 503", b)
	}
	if n := l.rawRefused.Load(); n != 1 {
		t.Fatalf("%d refused without net's set-up; want 1 (the listener was full)", n)
	}
	// The accept loop now waits in refuseRaw; a place frees before the next client.
	s1.c.Close()
	c3, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	select {
	case s3 := <-acc:
		if s3.err != nil {
			t.Fatal(s3.err)
		}
		if got, want := s3.c.RemoteAddr().String(), c3.LocalAddr().String(); got != want {
			t.Fatalf("admitted %s; want the third client %s", got, want)
		}
		if _, err := s3.c.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2)
		c3.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c3, buf); err != nil || string(buf) != "hi" {
			t.Fatalf("admitted connection does not carry data: %q %v", buf, err)
		}
		s3.c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a client that came after a place freed was not admitted")
	}
	if s := l.Stats(); s.Open != 0 || s.Refused[RefusedCap] != 1 {
		t.Fatalf("stats %+v; want 0 open, 1 refused at the cap", s)
	}
	l.Close()
	if a := <-acc; a.err == nil || !errors.Is(a.err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v; want net.ErrClosed", a.err)
	}
}
