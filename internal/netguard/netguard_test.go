package netguard

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/clock/clocktest"
)

func listen(t *testing.T, o Options) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Wrap(ln, o)
	t.Cleanup(func() { l.Close() })
	return l
}

// acceptor accepts into a channel until the listener closes.
func acceptor(l *Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 64)
	go func() {
		defer close(ch)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	return ch
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reports whether the server closed c (reading the refusal, if any).
func refused(t *testing.T, c net.Conn) (bool, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false, string(b)
	}
	return true, string(b)
}

// At the cap the listener stops accepting: the next client waits in the
// kernel's queue (neither refused nor closed) and gets in when a place frees.
func TestCapPausesBeyondMaxConns(t *testing.T) {
	l := listen(t, Options{Name: "t", Limits: Limits{MaxConns: 2}, Refusal: HTTP503})
	acc := acceptor(l)
	c1, c2 := dial(t, l.Addr().String()), dial(t, l.Addr().String())
	s1, s2 := <-acc, <-acc
	_ = c1
	c3 := dial(t, l.Addr().String())
	if ok, body := refused(t, c3); ok {
		t.Fatalf("third connection closed (%q); want it left waiting in the queue", body)
	}
	if got := l.Stats(); got.Open != 2 || got.Refused[RefusedCap] != 0 || got.Paused[RefusedCap] == 0 {
		t.Fatalf("stats %+v; want 2 open, paused at the cap, nothing refused", got)
	}
	if ok, _ := refused(t, c2); ok {
		t.Fatal("an admitted connection was closed")
	}
	s1.Close() // a place frees up: the client that waited gets it
	select {
	case s3 := <-acc:
		if got, want := s3.RemoteAddr().String(), c3.LocalAddr().String(); got != want {
			t.Fatalf("admitted %s; want the client that waited, %s", got, want)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the waiting client was not admitted when a place freed")
	}
	s2.Close()
	c4 := dial(t, l.Addr().String())
	select {
	case <-acc:
	case <-time.After(2 * time.Second):
		t.Fatal("a connection below the cap was not admitted")
	}
	_ = c4
	if got := l.Stats(); got.Open != 2 {
		t.Fatalf("open %d after two closes and two admits; want 2", got.Open)
	}
}

func TestPerSourceCap(t *testing.T) {
	l := listen(t, Options{Limits: Limits{MaxPerSource: 1}})
	acc := acceptor(l)
	dial(t, l.Addr().String())
	<-acc
	c2 := dial(t, l.Addr().String())
	if ok, _ := refused(t, c2); !ok {
		t.Fatal("second connection from one source was admitted")
	}
	// Another source (127.0.0.2 is loopback too) still gets in.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c3, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Skipf("cannot bind 127.0.0.2: %v", err)
	}
	defer c3.Close()
	select {
	case <-acc:
	case <-time.After(2 * time.Second):
		t.Fatal("a connection from another source was refused")
	}
	if got := l.Stats(); got.Refused[RefusedPerSource] != 1 {
		t.Fatalf("stats %+v", got)
	}
}

// At the cap, an HTTP server's never-used and idle connections are closed,
// oldest first, so that a flood of idle connections cannot lock a client out.
func TestHTTPEvictsIdleAtCap(t *testing.T) {
	clk := clocktest.New(time.Now())
	l := listen(t, Options{Limits: Limits{MaxConns: 8, MaxPerSource: 8}, Refusal: HTTP503, Clock: clk})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ConnState: l.ConnState}
	go srv.Serve(l)
	defer srv.Close()
	var flood []net.Conn
	for range 8 {
		flood = append(flood, dial(t, l.Addr().String()))
	}
	waitOpen(t, l, 8)
	waitIdle(t, l, 8)
	clk.Advance(EvictIdleAfter) // the flood's connections are old enough to give their places
	for i := range 20 {         // each request on a new connection
		tr := &http.Transport{DisableKeepAlives: true}
		resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get("http://" + l.Addr().String())
		if err != nil {
			t.Fatalf("request %d during the flood: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	if s := l.Stats(); s.Evicted == 0 || s.Open > 8 {
		t.Fatalf("stats %+v; want evictions and never more than 8 open", s)
	}
	// The oldest idle connection was the first to go.
	if ok, _ := refused(t, flood[0]); !ok {
		t.Fatal("the oldest idle connection is still open")
	}
}

// An active request is never evicted: at the cap with only active
// connections, the newcomer is not admitted (the listener is full: it
// pauses, or refuses a newcomer it was already accepting).
func TestHTTPNeverEvictsActive(t *testing.T) {
	l := listen(t, Options{Limits: Limits{MaxConns: 1}, Refusal: HTTP503})
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "done")
	}), ConnState: l.ConnState}
	go srv.Serve(l)
	defer srv.Close()
	c := dial(t, l.Addr().String())
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	c2 := dial(t, l.Addr().String())
	if ok, body := refused(t, c2); ok && !strings.Contains(body, "503") {
		t.Fatalf("newcomer closed without the refusal: %q", body)
	}
	if s := l.Stats(); s.Evicted != 0 || s.Open != 1 {
		t.Fatalf("stats %+v; want the active connection alone, never evicted", s)
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the active request was cut: %v", err)
	}
}

func TestFDReserve(t *testing.T) {
	clk := clocktest.New(time.Unix(0, 0))
	f := NewFDs(100, 10, clk)
	open := 85
	f.count = func() (int, error) { return open, nil }
	for i := range 5 {
		if !(f.take(0, 1, false) == taken) {
			t.Fatalf("take %d refused with %d open of 100 (reserve 10)", i, f.Open())
		}
	}
	if f.take(0, 1, false) == taken {
		t.Fatal("took a descriptor from the reserve")
	}
	f.give(1)
	if !(f.take(0, 1, false) == taken) {
		t.Fatal("a given-back descriptor was not available")
	}
	// A new sample replaces the estimate.
	open = 50
	clk.Advance(sampleEvery)
	if got := f.Open(); got != 50 {
		t.Fatalf("open after a sample %d; want 50", got)
	}
	if f := NewFDs(200, 0, nil); f.Reserve() != 50 {
		t.Fatalf("default reserve of a 200 limit %d; want 50", f.Reserve())
	}
	if f := NewFDs(1<<20, 0, nil); f.Reserve() != DefaultReserve {
		t.Fatalf("default reserve %d; want %d", f.Reserve(), DefaultReserve)
	}
}

// At the reserve, the listener takes no new clients (it stops accepting);
// the process keeps its descriptors.
func TestListenerPausesAtReserve(t *testing.T) {
	f := NewFDs(100, 10, nil)
	var held atomic.Int64                                               // what the test's listener holds, as /proc/self/fd would count it
	f.count = func() (int, error) { return 89 + int(held.Load()), nil } // one left before the reserve
	l := listen(t, Options{FDs: f})
	acc := acceptor(l)
	dial(t, l.Addr().String())
	<-acc
	held.Store(1)
	dial(t, l.Addr().String())
	select {
	case <-acc:
		t.Fatal("admitted a client into the reserve")
	case <-time.After(3 * PauseRecheck): // rechecked (and still full) at least twice
	}
	if s := l.Stats(); s.Paused[RefusedFDs] < 2 || s.Open != 1 {
		t.Fatalf("stats %+v; want paused for the reserve, 1 open", s)
	}
}

func TestRaise(t *testing.T) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	if r.Max < 64 {
		t.Skipf("hard limit %d too small to test", r.Max)
	}
	low := r
	low.Cur = 64
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	soft, hard, err := Raise()
	if err != nil || soft != r.Max || hard != r.Max {
		t.Fatalf("Raise() = %d, %d, %v; want %d, %d", soft, hard, err, r.Max, r.Max)
	}
}

// waitIdle waits until n connections are on l's idle list (their StateNew seen).
func waitIdle(t *testing.T, l *Listener, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		l.mu.Lock()
		got := l.idle.Len()
		l.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle; want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitOpen(t *testing.T, l *Listener, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for l.Stats().Open != n {
		if time.Now().After(deadline) {
			t.Fatalf("open %d; want %d", l.Stats().Open, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOwnShortage(t *testing.T) {
	_, err := net.Dial("tcp", "127.0.0.1:1")
	if OwnShortage(err) {
		t.Fatalf("%v is the peer's answer, not medic's shortage", err)
	}
	wrapped := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "socket", Err: syscall.EMFILE}}
	if !OwnShortage(wrapped) || !OwnShortage(errors.New("rpc error: code = Unavailable desc = dial: socket: too many open files")) {
		t.Fatal("EMFILE not recognised")
	}
}

// Under pressure, a listener that holds half of the budget gets no more; the
// operator's API may go halfway into the reserve.
func TestFairShareAndPriority(t *testing.T) {
	clk := clocktest.New(time.Unix(0, 0))
	f := NewFDs(200, 40, clk) // budget 160
	open := 130
	f.count = func() (int, error) { return open, nil }
	if got := f.take(90, 1, false); got != overShare {
		t.Fatalf("a listener holding 90 of 160 at 130 open: %d; want refused for its share", got)
	}
	if got := f.take(10, 1, false); got != taken {
		t.Fatalf("a listener holding 10: %d; want admitted", got)
	}
	open = 170 // beyond the budget, inside the reserve
	clk.Advance(sampleEvery)
	if got := f.take(0, 1, false); got != atReserve {
		t.Fatalf("inside the reserve: %d; want refused", got)
	}
	if got := f.take(0, 1, true); got != taken {
		t.Fatalf("the priority listener inside the first half of the reserve: %d; want admitted", got)
	}
}

// The count of open descriptors (listing /proc/self/fd: 20–170 ms at 18 000
// descriptors) runs outside the lock every listener and every HTTP request's
// state change take: while one caller counts, the others go on with the
// estimate. Before, each of them waited for the count.
func TestSampleDoesNotHoldTheLock(t *testing.T) {
	f := NewFDs(1000, 100, nil)
	counting, release := make(chan struct{}), make(chan struct{})
	f.count = func() (int, error) { close(counting); <-release; return 10, nil }
	done := make(chan int, 1)
	go func() { done <- f.take(0, 1, false) }()
	<-counting
	others := make(chan struct{})
	go func() {
		defer close(others)
		f.take(0, 1, false)
		f.give(1)
		f.setIdle(&Conn{}, true)
		f.Open()
	}()
	select {
	case <-others:
	case <-time.After(5 * time.Second):
		t.Fatal("admissions and state changes waited for the descriptor count")
	}
	close(release)
	if v := <-done; v != taken {
		t.Fatalf("take during the count: %d", v)
	}
	if got := f.Open(); got < 10 || got > 12 {
		t.Fatalf("open after the sample %d; want the sample (10) plus what was admitted meanwhile", got)
	}
}
