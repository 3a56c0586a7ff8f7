package netguard

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/clock/clocktest"
)

// A source at its cap whose connections are younger than EvictIdleAfter:
// the newcomer is refused on sight (the 503 written by the raw path, never
// handed to the server); once the oldest has been idle that long, the next
// newcomer takes its place.
func TestYoungIdleIsNotEvicted(t *testing.T) {
	clk := clocktest.New(time.Now())
	l := listen(t, Options{Limits: Limits{MaxPerSource: 2}, Refusal: HTTP503, Clock: clk})
	if l.raw == nil {
		t.Fatal("a TCP listener does not accept with accept4 itself")
	}
	served := make(chan string, 16)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served <- r.RemoteAddr; io.WriteString(w, "ok") }),
		ConnState: l.ConnState}
	go srv.Serve(l)
	defer srv.Close()
	old := []net.Conn{dial(t, l.Addr().String()), dial(t, l.Addr().String())}
	waitIdle(t, l, 2)
	c := dial(t, l.Addr().String())
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if ok, body := refused(t, c); !ok || !strings.HasPrefix(body, "HTTP/1.1 503 ") {
		t.Fatalf("newcomer while the source's connections are young: closed=%v %q; want a 503", ok, body)
	}
	if s := l.Stats(); s.Refused[RefusedPerSource] != 1 || s.Evicted != 0 || s.Open != 2 {
		t.Fatalf("stats %+v; want 1 refused on sight, nothing evicted, 2 open", s)
	}
	select {
	case a := <-served:
		t.Fatalf("the refused connection %s reached the server", a)
	default:
	}
	clk.Advance(EvictIdleAfter)
	c2 := dial(t, l.Addr().String())
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case a := <-served:
		if a != c2.LocalAddr().String() {
			t.Fatalf("served %s; want the newcomer %s", a, c2.LocalAddr())
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("the newcomer was not admitted once the oldest idle connection was old enough: %+v", l.Stats())
	}
	if ok, _ := refused(t, old[0]); !ok {
		t.Fatal("the oldest idle connection was not the one evicted")
	}
	if s := l.Stats(); s.Evicted != 1 {
		t.Fatalf("stats %+v; want 1 eviction", s)
	}
}

// Refusing on sight allocates nothing.
func TestRefuseOnSightAllocatesNothing(t *testing.T) {
	l := listen(t, Options{Limits: Limits{MaxPerSource: 1}, Refusal: HTTP503, Clock: clocktest.New(time.Now())})
	acc := acceptor(l)
	dial(t, l.Addr().String())
	<-acc
	src := netipLoopback()
	allocs := testing.AllocsPerRun(100, func() {
		fd, err := socketPair()
		if err != nil {
			t.Fatal(err)
		}
		if !l.refuseOnSight(fd, src) {
			t.Fatal("not refused")
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per refusal; want 0", allocs)
	}
}

func netipLoopback() netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, 1}) }

// socketPair returns one end of a fresh unix socket pair (the other closed):
// something refuseOnSight can write to and close.
func socketPair() (int, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	syscall.Close(fds[1])
	return fds[0], nil
}

// Accept on a closed TCP listener, whether it was waiting or called after
// Close, fails with net.ErrClosed as Go's own Accept does: the callers'
// loops (proxy tcp mode, egress, fasthttp's "closed" check) end on it
// rather than retrying or logging a permanent error.
func TestRawAcceptClosedIsErrClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Wrap(ln, Options{Limits: Limits{MaxConns: 4}})
	if l.raw == nil {
		t.Fatal("a TCP listener does not accept with accept4 itself")
	}
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }()
	l.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept ended by Close: %v; want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still waiting 10 s after Close")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v; want net.ErrClosed", err)
	}
}
