package netguard

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// A full listener stops accepting instead of accepting and refusing: the
// next client waits in the kernel's queue, is neither refused nor closed,
// and is the one admitted once a place frees. (It replaces
// TestFullListenerRefusesRaw: refusing at once fed a flooder's redial spin.)
func TestFullListenerPausesAccept(t *testing.T) {
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
	// The kernel completes c2's handshake into the accept queue; medic does not take it.
	c2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().Paused[RefusedCap] < 2 { // paused, and paused again after a recheck: c2 was not taken
		if time.Now().After(deadline) {
			t.Fatalf("the full listener never paused: %+v", l.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if s := l.Stats(); s.Refused[RefusedCap] != 0 {
		t.Fatalf("stats %+v; want nothing refused at the cap (paused instead)", s)
	}
	select {
	case a := <-acc:
		t.Fatalf("accepted %v (%v) while full", a.c, a.err)
	default:
	}
	// A place frees: the client that waited is admitted and carries data.
	s1.c.Close()
	select {
	case s2 := <-acc:
		if s2.err != nil {
			t.Fatal(s2.err)
		}
		if got, want := s2.c.RemoteAddr().String(), c2.LocalAddr().String(); got != want {
			t.Fatalf("admitted %s; want the client that waited, %s", got, want)
		}
		if _, err := s2.c.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2)
		c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c2, buf); err != nil || string(buf) != "hi" {
			t.Fatalf("admitted connection does not carry data: %q %v", buf, err)
		}
		s2.c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the client that waited was not admitted after a place freed")
	}
	if s := l.Stats(); s.Open != 0 || s.Refused[RefusedCap] != 0 {
		t.Fatalf("stats %+v; want 0 open, 0 refused", s)
	}
	// A client that left while it waited in the queue is dropped, never
	// handed over: the next one is admitted.
	c4, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	s4 := <-acc
	if s4.err != nil {
		t.Fatal(s4.err)
	}
	c5, err := net.Dial("tcp", l.Addr().String()) // queued behind the full listener
	if err != nil {
		t.Fatal(err)
	}
	c5.Close()
	s4.c.Close()
	c6, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c6.Close()
	select {
	case s6 := <-acc:
		if s6.err != nil {
			t.Fatal(s6.err)
		}
		if got, want := s6.c.RemoteAddr().String(), c6.LocalAddr().String(); got != want {
			t.Fatalf("admitted %s; want %s (the client before it had left)", got, want)
		}
		s6.c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no client admitted after a place freed")
	}
	if s := l.Stats(); s.Gone != 1 {
		t.Fatalf("stats %+v; want 1 connection dropped because its client had left", s)
	}
	// Close ends an Accept paused at the cap.
	c3, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	s3 := <-acc
	if s3.err != nil {
		t.Fatal(s3.err)
	}
	defer s3.c.Close()
	for l.Stats().Paused[RefusedCap] < 3 {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("did not pause again: %+v", l.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	l.Close()
	select {
	case a := <-acc:
		if a.err == nil || !errors.Is(a.err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v; want net.ErrClosed", a.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a paused Accept")
	}
}
