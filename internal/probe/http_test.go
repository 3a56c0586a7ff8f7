package probe_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/probe"
)

func TestHTTPStatus(t *testing.T) {
	var code atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(code.Load()))
	}))
	defer srv.Close()
	port := portOf(t, srv.Listener.Addr())

	tests := []struct {
		status string // accepted range, "" = default
		code   int
		want   medic.Health
		detail string
	}{
		{"", 200, medic.HealthSuccess, "HTTP 200"},
		{"", 204, medic.HealthSuccess, "HTTP 204"},
		{"", 399, medic.HealthSuccess, "HTTP 399"},
		{"", 400, medic.HealthFailure, "HTTP 400"},
		{"", 503, medic.HealthFailure, "HTTP 503"},
		{"200-299", 302, medic.HealthFailure, "HTTP 302"},
		{"500-503", 503, medic.HealthSuccess, "HTTP 503"},
	}
	for _, tt := range tests {
		// The port comes from the target: the probe names none.
		c := mustChecker(t, &config.Probe{HTTP: &config.HTTPProbe{Path: "healthz", Status: tt.status}}, probe.Target{Port: port})
		code.Store(int32(tt.code))
		o := c.Check(context.Background())
		if o.Health != tt.want || o.Detail != tt.detail {
			t.Errorf("range %q, server %d: got %v %q, want %v %q", tt.status, tt.code, o.Health, o.Detail, tt.want, tt.detail)
		}
	}
}

func TestHTTPBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The marker sits beyond 64 KiB for /far: it must not be found.
		if r.URL.Path == "/far" {
			w.Write([]byte(strings.Repeat(".", 64<<10)))
		}
		w.Write([]byte(`{"status":"ok"}`))
	}))
	defer srv.Close()
	port := portOf(t, srv.Listener.Addr())
	tests := []struct {
		path, body string
		want       medic.Health
	}{
		{"/", `"status":"ok"`, medic.HealthSuccess},
		{"/", "degraded", medic.HealthFailure},
		{"/far", `"status":"ok"`, medic.HealthFailure},
	}
	for _, tt := range tests {
		c := mustChecker(t, &config.Probe{HTTP: &config.HTTPProbe{Path: tt.path, Port: port, Body: tt.body}}, probe.Target{})
		if o := c.Check(context.Background()); o.Health != tt.want {
			t.Errorf("%s body %q: got %v (%s), want %v", tt.path, tt.body, o.Health, o.Detail, tt.want)
		}
	}
}

func TestHTTPRequestShape(t *testing.T) {
	type seen struct{ ua, custom, host, path string }
	var (
		mu   sync.Mutex
		reqs []seen
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reqs = append(reqs, seen{r.UserAgent(), r.Header.Get("X-Probe"), r.Host, r.URL.Path})
		mu.Unlock()
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	defer srv.Close()
	c := mustChecker(t, &config.Probe{HTTP: &config.HTTPProbe{
		Path:    "/live",
		Headers: map[string]string{"X-Probe": "yes", "Host": "web.internal"},
	}}, probe.Target{Port: portOf(t, srv.Listener.Addr())})
	o := c.Check(context.Background())
	if o.Health != medic.HealthSuccess || o.Detail != "HTTP 302" {
		t.Fatalf("redirect: got %v %q, want success HTTP 302 (3xx passes by default)", o.Health, o.Detail)
	}
	mu.Lock()
	defer mu.Unlock()
	want := seen{probe.UserAgent, "yes", "web.internal", "/live"}
	if len(reqs) != 1 || reqs[0] != want {
		t.Fatalf("server saw %+v, want exactly %+v (redirects are not followed)", reqs, want)
	}
}

// A probe must open a fresh connection every time: a server whose accept
// loop is stuck must not pass through a pooled connection.
func TestHTTPOpensAFreshConnectionEachTime(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := mustChecker(t, &config.Probe{HTTP: &config.HTTPProbe{}}, probe.Target{Port: portOf(t, srv.Listener.Addr())})
	for i := range 3 {
		if o := c.Check(context.Background()); o.Health != medic.HealthSuccess {
			t.Fatalf("check %d: %v %s", i, o.Health, o.Detail)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("3 checks used %d connections, want 3", n)
	}
}

func TestHTTPTimeoutCutsASlowServer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	c := mustChecker(t, &config.Probe{HTTP: &config.HTTPProbe{}}, probe.Target{Port: portOf(t, srv.Listener.Addr())})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	wantTimeout(t, c.Check(ctx), 100*time.Millisecond)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Check returned %v after its deadline", took)
	}
}

func TestHTTPCancelIsNotAVerdict(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer srv.Close()
	c := mustChecker(t, &config.Probe{HTTP: &config.HTTPProbe{}}, probe.Target{Port: portOf(t, srv.Listener.Addr())})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if o := c.Check(ctx); o.Health != medic.HealthUnknown || o.Detail != "canceled" {
		t.Fatalf("got %v %q, want unknown \"canceled\"", o.Health, o.Detail)
	}
}

func TestHTTPConnectionRefused(t *testing.T) {
	port := closedPort(t)
	c := mustChecker(t, &config.Probe{HTTP: &config.HTTPProbe{}}, probe.Target{Port: port})
	o := c.Check(context.Background())
	if o.Health != medic.HealthFailure || !strings.Contains(o.Detail, "connection refused") || strings.Contains(o.Detail, "Get ") {
		t.Fatalf("got %v %q, want a bare dial error saying connection refused", o.Health, o.Detail)
	}
}

func TestHTTPSAcceptsSelfSignedCertificates(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	c := mustChecker(t, &config.Probe{HTTP: &config.HTTPProbe{Scheme: "https"}}, probe.Target{Port: portOf(t, srv.Listener.Addr())})
	if o := c.Check(context.Background()); o.Health != medic.HealthSuccess {
		t.Fatalf("got %v %q, want success", o.Health, o.Detail)
	}
}
