package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"github.com/medic-dev/medic/internal/testutil/tcptest"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
)

// echoServer accepts connections and answers each line with name: line. It
// is stopped by t.Cleanup and waits for its connections.
func echoServer(t testing.TB, name string) string {
	t.Helper()
	return tcptest.Serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s: %s", name, line)
		}
	})
}

func tcpConfig() config.Proxy {
	cfg := baseConfig()
	cfg.Mode = config.ProxyModeTCP
	cfg.DrainTimeout = dur(time.Second)
	return cfg
}

// roundTrip sends one line and reads one answer.
func roundTrip(c net.Conn, br *bufio.Reader, msg string) (string, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		return "", err
	}
	return br.ReadString('\n')
}

func TestTCPSpliceAndFailover(t *testing.T) {
	cfg := tcpConfig()
	cfg.Outlier.ConsecutiveErrors = 1000 // keep the dead instance in rotation: every connection may meet it
	cfg.Outlier.ErrorRate = floatp(0)
	h := mustStart(t, cfg, nil)
	h.p.SetBackend("db/0", deadAddr(t), true)
	h.p.SetBackend("db/1", echoServer(t, "b"), true)
	for i := range 10 {
		c, err := net.Dial("tcp", h.p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		for _, msg := range []string{"ping", "again"} {
			got, err := roundTrip(c, br, msg)
			if err != nil || got != "b: "+msg+"\n" {
				t.Fatalf("connection %d: %q %v", i, got, err)
			}
		}
		c.Close()
	}
	s := h.p.Stats()
	if s.Retries == 0 {
		t.Fatalf("the refused instance was never tried: %+v", s)
	}
	if s.Errors != 0 {
		t.Fatalf("%d connections failed", s.Errors)
	}
}

func TestTCPCutConnections(t *testing.T) {
	h := mustStart(t, tcpConfig(), nil)
	h.p.SetBackend("db/0", echoServer(t, "a"), true)

	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", h.p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		br := bufio.NewReader(c)
		if got, err := roundTrip(c, br, "hello"); err != nil || got != "a: hello\n" {
			t.Fatalf("first exchange: %q %v", got, err)
		}
		return c, br
	}
	expectCut := func(c net.Conn, br *bufio.Reader, what string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadString('\n'); err == nil || isTimeout(err) {
			t.Fatalf("%s: connection still open (%v)", what, err)
		}
	}

	// Fencing: CloseConnections cuts what is open; new connections still work.
	c1, br1 := dial()
	if n := h.p.CloseConnections("db/0"); n != 1 {
		t.Fatalf("CloseConnections cut %d, want 1", n)
	}
	expectCut(c1, br1, "after CloseConnections")

	// Drain waits for open connections; RemoveBackend cuts them.
	c2, br2 := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := h.p.Drain(ctx, "db/0"); err == nil {
		t.Fatal("Drain returned nil with a connection open")
	}
	h.p.RemoveBackend("db/0")
	expectCut(c2, br2, "after RemoveBackend")
	eventually(t, 5*time.Second, "connection count back to zero", func() bool { return h.p.Stats().Inflight == 0 })

	// With no instance a new connection is closed at once.
	c3, err := net.Dial("tcp", h.p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c3); err != nil {
		t.Fatalf("connection with no instance: %v, want EOF", err)
	}
}

func TestTCPStopCutsAfterDrainTimeout(t *testing.T) {
	h := mustStart(t, tcpConfig(), nil)
	h.p.SetBackend("db/0", echoServer(t, "a"), true)
	c, err := net.Dial("tcp", h.p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if got, err := roundTrip(c, br, "x"); err != nil || got != "a: x\n" {
		t.Fatalf("%q %v", got, err)
	}
	start := time.Now()
	h.stop() // drain_timeout 1s, then the open connection is cut and Serve returns
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Fatalf("Serve returned %v after stop, want about the 1s drain timeout", d)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadString('\n'); err == nil || isTimeout(err) {
		t.Fatalf("connection survived the stop: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// An ejection in tcp mode names what the last failed connection met, so that
// an operator can tell a refused port from a timeout or medic's own shortage.
func TestTCPEjectionNamesTheDialError(t *testing.T) {
	cfg := tcpConfig()
	cfg.Outlier.ConsecutiveErrors = 1
	h := mustStart(t, cfg, nil)
	dead := deadAddr(t)
	h.p.SetBackend("db/0", dead, true)
	h.p.SetBackend("db/1", echoServer(t, "b"), true)
	for range 10 {
		c, err := net.Dial("tcp", h.p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := roundTrip(c, bufio.NewReader(c), "x"); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if strings.Contains(h.logs.String(), "instance ejected") {
			break
		}
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "last: connect to db/0 at "+dead) || !strings.Contains(logs, "connection refused") {
		t.Fatalf("the ejection does not name the dial error:\n%s", logs)
	}
}

// A tcp-mode connection's deadlines are the ones its code sets: a refusal
// (Options.Refuse, dbproxy's 57P03 answer) that gives its client 300 ms
// gets 300 ms, whatever header_timeout is (the listener once moved every
// read deadline by up to a tenth of it: ±60 s here).
func TestTCPRefusalDeadlineIsItsOwn(t *testing.T) {
	cfg := tcpConfig()
	cfg.Limits.HeaderTimeout = dur(10 * time.Minute)
	took := make(chan time.Duration, 1)
	h := mustStartWith(t, cfg, nil, func(o *proxy.Options) {
		o.Refuse = func(c net.Conn) {
			start := time.Now()
			c.SetDeadline(start.Add(300 * time.Millisecond))
			c.Read(make([]byte, 1))
			took <- time.Since(start)
		}
	})
	c, err := net.Dial("tcp", h.p.Addr().String()) // no instance: refused
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case d := <-took:
		if d < 250*time.Millisecond || d > 2*time.Second {
			t.Fatalf("the refusal's 300ms read deadline ended after %v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the refusal's 300ms read deadline had not ended after 10s")
	}
}
