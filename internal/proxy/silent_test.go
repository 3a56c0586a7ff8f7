package proxy_test

import (
	"bufio"
	"github.com/medic-dev/medic/internal/testutil/tcptest"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// countingServer accepts connections, sends greet first when it is not
// empty (a server-first protocol), then echoes. accepted receives each
// connection as it is accepted.
type countingServer struct {
	addr     string
	accepted chan net.Conn
}

func newCountingServer(t *testing.T, greet string) *countingServer {
	t.Helper()
	s := &countingServer{accepted: make(chan net.Conn, 1024)}
	s.addr = tcptest.Serve(t, func(c net.Conn) {
		s.accepted <- c
		if greet != "" {
			if _, err := io.WriteString(c, greet); err != nil {
				return
			}
		}
		_, _ = io.Copy(c, c) // then closed: the client's end ends the connection, as a server's would
	})
	return s
}

// accepts counts the connections accepted within d.
func (s *countingServer) accepts(d time.Duration) int {
	n := 0
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-s.accepted:
			n++
		case <-t.C:
			return n
		}
	}
}

func dialAll(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	cs := make([]net.Conn, n)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs[i] = c
	}
	return cs
}

// A flood of connections that send nothing holds at most max_silent of the
// instance's connections; a client that speaks is connected at once whatever
// the flood, and one that stays silent is closed after header_timeout.
// Before max_silent every one of the 40 was connected to the instance.
func TestTCPSilentFloodHoldsAtMostMaxSilent(t *testing.T) {
	cfg := tcpConfig()
	cfg.MaxSilent = 4
	cfg.Limits.HeaderTimeout = config.Duration(600 * time.Millisecond)
	h := mustStart(t, cfg, nil)
	srv := newCountingServer(t, "")
	h.p.SetBackend("db/0", srv.addr, true)

	flood := dialAll(t, h.p.Addr().String(), 40)
	if n := srv.accepts(300 * time.Millisecond); n != 4 {
		t.Fatalf("40 silent clients: the instance accepted %d connections, want max_silent = 4", n)
	}
	if st := h.p.Stats().Silent; st == nil || st.Open != 4 || st.Waiting != 36 {
		t.Fatalf("Stats.Silent = %+v, want open 4, waiting 36", st)
	}

	// A client that speaks gets through at once, ahead of the waiting flood.
	c := dialAll(t, h.p.Addr().String(), 1)[0]
	br := bufio.NewReader(c)
	start := time.Now()
	if got, err := roundTrip(c, br, "ping"); err != nil || got != "ping\n" {
		t.Fatalf("a speaking client behind 36 waiting silent ones: %q, %v", got, err)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("a speaking client waited %v behind the silent ones", d)
	}
	if n := srv.accepts(50 * time.Millisecond); n != 1 {
		t.Errorf("the speaking client: %d connections accepted, want 1", n)
	}

	// The waiting ones are closed after header_timeout (±10 %), the 4 connected ones are not.
	for end := time.Now().Add(3 * time.Second); h.p.Stats().Silent.Closed < 36 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	if st := h.p.Stats().Silent; st.Closed != 36 || st.Open != 4 || st.Waiting != 0 {
		t.Errorf("after header_timeout: Stats.Silent = %+v, want closed 36, open 4, waiting 0", st)
	}
	closed := 0
	for _, fc := range flood {
		fc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := fc.Read(make([]byte, 1)); err == io.EOF {
			closed++
		} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("a silent client's read: %v", err)
		}
	}
	if closed != 36 {
		t.Errorf("%d silent waiting clients saw their connection closed, want 36", closed)
	}
	if !strings.Contains(h.logs.String(), "max_silent") {
		t.Errorf("no warning about the closed silent connections in the log:\n%s", h.logs.String())
	}
}

// A protocol in which the server speaks first (MySQL, SMTP) still gets every
// connection: beyond max_silent each waits until one before it is greeted,
// then connects.
func TestTCPSilentServerFirstConnectsInTurn(t *testing.T) {
	cfg := tcpConfig()
	cfg.MaxSilent = 2
	h := mustStart(t, cfg, nil)
	srv := newCountingServer(t, "hello\n")
	h.p.SetBackend("db/0", srv.addr, true)

	cs := dialAll(t, h.p.Addr().String(), 10)
	for i, c := range cs {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "hello\n" {
			t.Fatalf("client %d of 10 (max_silent 2): greeting %q, %v", i, line, err)
		}
	}
	if st := h.p.Stats().Silent; st.Open != 0 || st.Waiting != 0 || st.Closed != 0 {
		t.Errorf("after every greeting: Stats.Silent = %+v, want all zero", st)
	}
}

// A connection that waits for a place when the proxy stops is closed at once,
// not after its header_timeout.
func TestTCPSilentWaitingClosedOnStop(t *testing.T) {
	cfg := tcpConfig()
	cfg.MaxSilent = 1
	cfg.Limits.HeaderTimeout = config.Duration(time.Minute)
	h := mustStart(t, cfg, nil)
	srv := newCountingServer(t, "")
	h.p.SetBackend("db/0", srv.addr, true)
	cs := dialAll(t, h.p.Addr().String(), 2)
	if n := srv.accepts(200 * time.Millisecond); n != 1 {
		t.Fatalf("accepted %d, want 1", n)
	}
	start := time.Now()
	h.stop()
	cs[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := cs[1].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the waiting client after the stop: %v, want EOF", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stop took %v with a waiting silent connection", d)
	}
}

// On a handover (medic upgrade) the old medic keeps a connection that waits
// for a place, as it keeps established ones: once its client speaks it is
// connected and piped, not cut by the upgrade.
func TestTCPSilentWaitingSurvivesHandover(t *testing.T) {
	cfg := tcpConfig()
	cfg.MaxSilent = 1
	cfg.Limits.HeaderTimeout = config.Duration(time.Minute)
	cfg.HandoverDrain = dur(5 * time.Second)
	h := mustStart(t, cfg, nil)
	srv := newCountingServer(t, "")
	h.p.SetBackend("db/0", srv.addr, true)
	cs := dialAll(t, h.p.Addr().String(), 2)
	if n := srv.accepts(200 * time.Millisecond); n != 1 {
		t.Fatalf("accepted %d, want 1", n)
	}
	h.p.HandOver()
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	for end := time.Now().Add(5 * time.Second); ; { // the stop has begun: the listener is closed
		c, err := net.Dial("tcp", h.p.Addr().String())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(end) {
			t.Fatal("the listener still accepts 5s after the stop began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Give a wrong stop time to close the waiting connection (a plain stop
	// closes it at once, TestTCPSilentWaitingClosedOnStop).
	time.Sleep(200 * time.Millisecond)
	br := bufio.NewReader(cs[1])
	if got, err := roundTrip(cs[1], br, "after the handover"); err != nil || got != "after the handover\n" {
		t.Fatalf("the waiting client after a handover: %q, %v; want its line echoed", got, err)
	}
	cs[0].Close()
	cs[1].Close()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the handed-over proxy did not stop once its connections ended")
	}
}
