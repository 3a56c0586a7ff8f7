package dbproxy_test

import (
	"bufio"
	"context"
	"github.com/medic-dev/medic/internal/testutil/tcptest"
	"io"
	"net"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/dbproxy"
)

// greeter is a stand-in for a member's postgres: it greets every connection
// with its name, then holds it open until the peer closes.
func greeter(t *testing.T, name string) dbproxy.Backend {
	t.Helper()
	return dbproxy.Backend{Member: name, Addr: tcptest.Serve(t, func(c net.Conn) {
		io.WriteString(c, name+"\n")
		io.Copy(io.Discard, c)
	})}
}

func newRouter(t *testing.T) *dbproxy.Router {
	t.Helper()
	cfg := &config.DatabaseProxy{Primary: "127.0.0.1:0", Replicas: "127.0.0.1:0"}
	d := &config.Database{Proxy: cfg}
	d.SetDefaults()
	r, err := dbproxy.New(dbproxy.Options{Cluster: "pg", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return r
}

// dial connects through addr and returns the greeting and the connection.
func dial(t *testing.T, addr net.Addr) (string, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", c
	}
	return line[:len(line)-1], c
}

// closedWithin reports whether the connection is closed by the other side within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestRouteFollowsThePrimaryAndCutsTheOld(t *testing.T) {
	a, b := greeter(t, "a"), greeter(t, "b")
	r := newRouter(t)
	r.Route(&a, []dbproxy.Backend{b})
	got, ca := dial(t, r.PrimaryAddr())
	if got != "a" {
		t.Fatalf("primary listener reached %q, want a", got)
	}
	if got, _ := dial(t, r.ReplicasAddr()); got != "b" {
		t.Fatalf("replicas listener reached %q, want b", got)
	}
	r.Route(&a, []dbproxy.Backend{b}) // idempotent: nothing is cut
	if closedWithin(ca, 100*time.Millisecond) {
		t.Fatal("an unchanged route cut the connection")
	}

	// Failover: b is the primary now. The connection to a is cut at once.
	start := time.Now()
	r.Route(&b, nil)
	if !closedWithin(ca, time.Second) {
		t.Fatal("the connection to the old primary was not cut")
	}
	t.Logf("connection to the old primary cut %v after the route changed", time.Since(start))
	if got, _ := dial(t, r.PrimaryAddr()); got != "b" {
		t.Fatalf("after failover the primary listener reached %q, want b", got)
	}
	// No replica runs: the replicas listener falls back to the primary.
	if got, _ := dial(t, r.ReplicasAddr()); got != "b" {
		t.Fatalf("replicas listener without replicas reached %q, want the primary b", got)
	}

	// The primary is lost (or this agent cannot see etcd): cut, and refuse new connections.
	_, cb := dial(t, r.PrimaryAddr())
	r.Route(nil, nil)
	if !closedWithin(cb, time.Second) {
		t.Fatal("the connection to a lost primary was not cut")
	}
	if got, c := dial(t, r.PrimaryAddr()); got != "" || !closedWithin(c, time.Second) {
		t.Fatalf("with no primary a new connection reached %q and stayed open", got)
	}
}

// TestHoldForWaitsForTheFirstRoute: a router made with HoldFor (a medic
// started by an upgrade) does not answer a connection before its first
// Route: the client waits in the listen queue, then reaches the primary
// instead of being refused.
func TestHoldForWaitsForTheFirstRoute(t *testing.T) {
	a := greeter(t, "a")
	cfg := &config.DatabaseProxy{Primary: "127.0.0.1:0"}
	d := &config.Database{Proxy: cfg}
	d.SetDefaults()
	r, err := dbproxy.New(dbproxy.Options{Cluster: "pg", Config: cfg, HoldFor: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	c, err := net.DialTimeout("tcp", r.PrimaryAddr().String(), time.Second)
	if err != nil {
		t.Fatalf("connect while held: %v (the connection should wait in the listen queue)", err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if line, err := br.ReadString('\n'); err == nil {
		t.Fatalf("answered %q before the first route", line)
	}
	r.Route(&a, nil)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || line != "a\n" {
		t.Fatalf("after the first route: %q %v, want the primary's greeting", line, err)
	}
}
