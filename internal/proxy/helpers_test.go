package proxy_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
)

// harness is a proxy under test with its Serve loop, stopped by t.Cleanup.
type harness struct {
	t      testing.TB
	p      *proxy.Proxy
	url    string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func intp(n int) *int                     { return &n }
func floatp(f float64) *float64           { return &f }
func boolp(b bool) *bool                  { return &b }
func dur(d time.Duration) config.Duration { return config.Duration(d) }

// baseConfig is a proxy on a free loopback port with fast test timings.
func baseConfig() config.Proxy {
	return config.Proxy{
		Listen:     "127.0.0.1:0",
		TryTimeout: dur(2 * time.Second),
		Timeout:    dur(5 * time.Second),
		Shed:       config.ProxyShed{Enabled: boolp(false)},
	}
}

// mustStart creates and serves a proxy; clk may be nil.
func mustStart(t testing.TB, cfg config.Proxy, clk clock.Clock) *harness {
	t.Helper()
	return mustStartLog(t, cfg, clk, nil)
}

// mustStartLog is mustStart with an access log (nil: the JSON logs of the harness).
func mustStartLog(t testing.TB, cfg config.Proxy, clk clock.Clock, access *slog.Logger) *harness {
	t.Helper()
	return mustStartWith(t, cfg, clk, func(o *proxy.Options) { o.AccessLog = access })
}

// mustStartWith is mustStart with Options set by with.
func mustStartWith(t testing.TB, cfg config.Proxy, clk clock.Clock, with func(*proxy.Options)) *harness {
	t.Helper()
	logs := &syncBuffer{}
	o := proxy.Options{
		Service: "web", Config: &cfg, Clock: clk,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	}
	with(&o)
	p, err := proxy.New(o)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, p: p, url: "http://" + p.Addr().String(), logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- p.Serve(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop ends Serve and waits for it (idempotent).
func (h *harness) stop() {
	h.once.Do(func() {
		h.cancel()
		select {
		case err := <-h.done:
			if err != nil {
				h.t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			h.t.Errorf("Serve did not return within 15s of its context ending")
		}
	})
}

// backend is an httptest server answering with handler.
func backend(t testing.TB, handler http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(handler)
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// named answers 200 with its name and echoes a request body's length.
func named(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Instance", name)
		if n > 0 {
			w.Header().Set("X-Body-Bytes", strconv.FormatInt(n, 10))
		}
		_, _ = io.WriteString(w, name)
	}
}

// deadAddr is a loopback address on which nothing listens.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// resetter reads the request, then resets the connection without answering.
func resetter(hits *int64Counter) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hits.add()
		_, _ = io.Copy(io.Discard, r.Body)
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
}

type int64Counter struct {
	mu sync.Mutex
	n  int64
}

func (c *int64Counter) add() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *int64Counter) get() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// client is an HTTP client with its own connection pool, closed by t.Cleanup.
func client(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type result struct {
	status int
	body   string
	header http.Header
	err    error
	start  time.Time
	dur    time.Duration
}

func do(c *http.Client, method, url string, body []byte, hdr map[string]string) result {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return result{err: err}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	res, err := c.Do(req)
	if err != nil {
		return result{err: err, start: start, dur: time.Since(start)}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return result{status: res.StatusCode, body: string(b), header: res.Header, err: err, start: start, dur: time.Since(start)}
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func instance(s proxy.Stats, id string) proxy.InstanceStats {
	for _, is := range s.Instances {
		if is.ID == id {
			return is
		}
	}
	return proxy.InstanceStats{}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
