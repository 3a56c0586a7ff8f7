package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
)

// connCounter counts the connections a test server accepted.
func connCounter(srv *httptest.Server) *atomic.Int32 {
	var n atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

func keptChecker(t *testing.T, srv *httptest.Server, path string) *httpChecker {
	t.Helper()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	c, err := NewChecker(&config.Probe{HTTP: &config.HTTPProbe{Path: path}}, Target{Port: p})
	if err != nil {
		t.Fatal(err)
	}
	if !reuseConnection(c) {
		t.Fatal("a plain http checker must accept keep-alive")
	}
	t.Cleanup(c.(*httpChecker).closeIdle)
	return c.(*httpChecker)
}

func mustPass(t *testing.T, c Checker, i int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if o := c.Check(ctx); o.Health != medic.HealthSuccess {
		t.Fatalf("check %d: %v %s", i, o.Health, o.Detail)
	}
}

// A keep-alive checker sends every check on one connection while the
// instance keeps it open.
func TestHTTPKeepAliveReusesTheConnection(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	conns := connCounter(srv)
	srv.Start()
	defer srv.Close()
	c := keptChecker(t, srv, "/ready")
	for i := range 5 {
		mustPass(t, c, i)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("5 keep-alive checks used %d connections, want 1", n)
	}
}

// An instance that closes the idle connection, or answers Connection:
// close, costs a fresh connection, never a failed check.
func TestHTTPKeepAliveSurvivesClosedConnections(t *testing.T) {
	var mu sync.Mutex
	var last net.Conn
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("close") != "" {
			w.Header().Set("Connection", "close")
		}
		_, _ = w.Write([]byte("ok"))
	}))
	conns := connCounter(srv)
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		mu.Lock()
		last = c
		mu.Unlock()
		return ctx
	}
	srv.Start()
	defer srv.Close()
	c := keptChecker(t, srv, "/ready")
	mustPass(t, c, 0)
	// The instance closes the kept connection while it is idle.
	mu.Lock()
	_ = last.Close()
	mu.Unlock()
	mustPass(t, c, 1)
	if n := conns.Load(); n != 2 {
		t.Fatalf("after the instance closed the idle connection: %d connections, want 2", n)
	}
	cl := keptChecker(t, srv, "/ready?close=1")
	mustPass(t, cl, 2)
	mustPass(t, cl, 3)
	if n := conns.Load(); n != 4 {
		t.Fatalf("answers with Connection: close: %d connections in all, want 4 (a fresh one per check)", n)
	}
}

// In a Set, readiness keeps its connection only beside an http liveness
// probe of the same address, and liveness dials afresh every time: a hung
// accept loop is still found by liveness.
func TestSetKeepsOnlyTheReadinessConnection(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	probe := func(path string) *config.Probe { return &config.Probe{HTTP: &config.HTTPProbe{Path: path}} }
	for _, tc := range []struct {
		name       string
		set        Set
		keepsReady bool
	}{
		{"liveness and readiness", Set{Liveness: probe("/live"), Readiness: probe("/ready")}, true},
		{"readiness alone", Set{Readiness: probe("/ready")}, false},
		{"liveness elsewhere", Set{Liveness: &config.Probe{HTTP: &config.HTTPProbe{Path: "/live", Port: p + 1}}, Readiness: probe("/ready")}, false},
		{"tcp liveness", Set{Liveness: &config.Probe{TCP: &config.TCPProbe{}}, Readiness: probe("/ready")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.set
			s.Target = Target{Port: p}
			workers, _, _, err := s.prepare()
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range workers {
				h, _ := w.checker.(*httpChecker)
				want := tc.keepsReady && w.kind == medic.ProbeReadiness
				if got := h != nil && h.keepAlive; got != want {
					t.Errorf("%s keeps its connection: %v, want %v", w.kind, got, want)
				}
			}
		})
	}
}
