package proxy_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// countingBackend is an instance that counts the connections it accepted.
func countingBackend(t *testing.T, handler http.HandlerFunc) (addr string, accepted *atomic.Int64) {
	addr, accepted, _ = countingBackendClosed(t, handler)
	return addr, accepted
}

// countingBackendClosed is countingBackend that also counts the connections closed.
func countingBackendClosed(t *testing.T, handler http.HandlerFunc) (addr string, accepted, closed *atomic.Int64) {
	t.Helper()
	accepted, closed = &atomic.Int64{}, &atomic.Int64{}
	s := httptest.NewUnstartedServer(handler)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			accepted.Add(1)
		case http.StateClosed:
			closed.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String(), accepted, closed
}

// TestReadyInstanceGetsWarmConnections: an instance entering rotation has
// the fast plane's connections before any request reaches it, as many as
// another instance keeps idle at the present load, and its first requests
// use them (no new connection).
func TestReadyInstanceGetsWarmConnections(t *testing.T) {
	h := mustStart(t, baseConfig(), nil)
	// web/0 serves 4 requests at once, so the proxy keeps 4 idle connections to it.
	var arrived sync.WaitGroup
	arrived.Add(4)
	release := make(chan struct{})
	a0, n0, closed0 := countingBackendClosed(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived.Done()
			<-release
		}
		named("a")(w, r)
	})
	h.p.SetBackend("web/0", a0, true)
	eventually(t, 5*time.Second, "the first instance accepting 1 warm connection (the minimum) before any request", func() bool { return n0.Load() == 1 })
	c := client(t)
	results := make(chan result, 4)
	for range 4 {
		go func() { results <- do(c, http.MethodGet, h.url+"/hold", nil, nil) }()
	}
	arrived.Wait()
	close(release)
	for range 4 {
		if r := <-results; r.status != 200 {
			t.Fatalf("a held request: %d %v", r.status, r.err)
		}
	}
	if got := n0.Load(); got != 4 {
		t.Fatalf("web/0 accepted %d connections for 4 concurrent requests (1 warm), want 4", got)
	}

	// web/1 becomes ready: 4 connections before SetBackend returns.
	a1, n1 := countingBackend(t, named("b"))
	h.p.SetBackend("web/1", a1, false)
	if got := n1.Load(); got != 0 {
		t.Fatalf("a not-ready instance got %d connections", got)
	}
	h.p.SetBackend("web/1", a1, true)
	eventually(t, 5*time.Second, "web/1 accepting 4 warm connections", func() bool { return n1.Load() == 4 })
	// Ready again while ready: no more connections.
	h.p.SetBackend("web/1", a1, true)
	// Its first requests (web/0 out of rotation: all to web/1) reuse them.
	if err := h.p.Drain(context.Background(), "web/0"); err != nil {
		t.Fatalf("drain web/0: %v", err)
	}
	for i := range 20 {
		if r := do(c, http.MethodGet, h.url+"/", nil, nil); r.status != 200 {
			t.Fatalf("request %d: %d %v", i, r.status, r.err)
		}
	}
	if got := instance(h.p.Stats(), "web/1").Requests; got != 20 {
		t.Fatalf("web/1 took %d of 20 requests", got)
	}
	if got := n1.Load(); got != 4 {
		t.Fatalf("web/1 accepted %d connections after its first requests, want the 4 warm ones", got)
	}
	// web/0 leaves: its idle connections are closed, not kept for nobody.
	h.p.RemoveBackend("web/0")
	eventually(t, 5*time.Second, "web/0's 4 idle connections closed", func() bool { return closed0.Load() == 4 })
}

// TestWarmConnectionsOnlyOnTheFastPlane: the net/http plane keeps its own
// pool; nothing is dialled on the readiness edge.
func TestWarmConnectionsOnlyOnTheFastPlane(t *testing.T) {
	cfg := baseConfig()
	cfg.DataPlane = config.ProxyDataPlaneNetHTTP
	h := mustStart(t, cfg, nil)
	a, n := countingBackend(t, named("a"))
	h.p.SetBackend("web/0", a, true)
	if r := do(client(t), http.MethodGet, h.url+"/", nil, nil); r.status != 200 {
		t.Fatalf("request: %d %v", r.status, r.err)
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("net_http plane: %d connections for one request, want 1 (no warm-up)", got)
	}
}

// TestInstanceLeavingRotationLosesIdleConnections: the warm connections of
// an instance that goes unready are closed, so that its server's graceful
// Shutdown (Go's waits up to 5 s for a connection that never carried a
// request) returns at once.
func TestInstanceLeavingRotationLosesIdleConnections(t *testing.T) {
	h := mustStart(t, baseConfig(), nil)
	accepted := &atomic.Int64{}
	s := httptest.NewUnstartedServer(named("a"))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			accepted.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	addr := s.Listener.Addr().String()
	h.p.SetBackend("web/0", addr, true)
	eventually(t, 5*time.Second, "the warm connection accepted", func() bool { return accepted.Load() == 1 })
	h.p.SetBackend("web/0", addr, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Config.Shutdown(ctx); err != nil {
		t.Fatalf("the instance's Shutdown after it left rotation: %v after %v (a warm connection kept open)", err, time.Since(start))
	}
}
