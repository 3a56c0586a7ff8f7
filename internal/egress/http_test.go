package egress_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/egress"
)

// upstream is a dependency that answers, hangs or fails on command.
type upstream struct {
	srv   *httptest.Server
	mode  atomic.Value // "ok", "hang", "fail"
	calls atomic.Int64
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.mode.Store("ok")
	stop := make(chan struct{})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := u.calls.Add(1)
		switch u.mode.Load().(string) {
		case "hang":
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		case "fail":
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "answer %d to %s", n, r.URL.RequestURI())
	}))
	t.Cleanup(func() { close(stop); u.srv.Close() })
	return u
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startSet serves one dependency "dep" of service "app" and returns its listen address.
func startSet(t testing.TB, d *config.Dependency) (*egress.Set, string, *transitions) {
	t.Helper()
	d.Listen = freeAddr(t)
	cfg := &config.Config{Services: map[string]*config.Service{"app": {Command: []string{"x"}, Dependencies: map[string]*config.Dependency{"dep": d}}}}
	d.SetDefaults()
	if is := d.Validate(); len(is) > 0 {
		t.Fatalf("invalid dependency: %v", is)
	}
	tr := &transitions{}
	set, err := egress.New(egress.Options{Config: cfg, OnTransition: tr.add})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- set.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return set, d.Listen, tr
}

type transitions struct {
	mu  sync.Mutex
	got []string
}

func (tr *transitions) add(t egress.Transition) {
	tr.mu.Lock()
	tr.got = append(tr.got, t.To.String())
	tr.mu.Unlock()
}

func (tr *transitions) list() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.got...)
}

func get(t *testing.T, addr, path string) (*http.Response, string, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), time.Since(start)
}

func ptr[T any](v T) *T { return &v }

// TestHTTPHangingDependency: a dependency that hangs costs each call at most
// the timeout; after `failures` timeouts the breaker opens and calls fail at
// once with 503 (X-Medic-Dependency: open); once the dependency recovers,
// the trial after open_for closes the breaker.
func TestHTTPHangingDependency(t *testing.T) {
	up := newUpstream(t)
	d := &config.Dependency{URL: up.srv.URL, Timeout: config.Duration(150 * time.Millisecond), Retries: config.DependencyRetries{Max: ptr(0)},
		Breaker: config.DependencyBreaker{Failures: 3, Window: config.Duration(10 * time.Second), OpenFor: config.Duration(500 * time.Millisecond), HalfOpenTrials: 1}}
	set, addr, tr := startSet(t, d)

	if resp, body, _ := get(t, addr, "/a?x=1"); resp.StatusCode != 200 || body != "answer 1 to /a?x=1" {
		t.Fatalf("healthy call: %d %q", resp.StatusCode, body)
	}
	up.mode.Store("hang")
	for i := range 3 {
		resp, _, took := get(t, addr, "/a")
		if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(egress.DependencyHeader) != "timeout" {
			t.Fatalf("hanging call %d: %d %q, want 504 timeout", i, resp.StatusCode, resp.Header.Get(egress.DependencyHeader))
		}
		if took > time.Second {
			t.Fatalf("hanging call %d took %v, want about the 150ms timeout", i, took)
		}
	}
	before := up.calls.Load()
	resp, _, took := get(t, addr, "/a")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(egress.DependencyHeader) != "open" || took > 50*time.Millisecond {
		t.Fatalf("after 3 timeouts: %d %q in %v, want 503 open at once", resp.StatusCode, resp.Header.Get(egress.DependencyHeader), took)
	}
	if up.calls.Load() != before {
		t.Fatalf("an open breaker let a call through to the dependency")
	}
	up.mode.Store("ok")
	time.Sleep(600 * time.Millisecond) // open_for
	if resp, _, _ := get(t, addr, "/a"); resp.StatusCode != 200 {
		t.Fatalf("trial after recovery: %d", resp.StatusCode)
	}
	waitFor(t, func() bool { return len(tr.list()) >= 3 }, "3 transitions")
	if got := fmt.Sprint(tr.list()); got != "[open half-open closed]" {
		t.Fatalf("transitions %s, want [open half-open closed]", got)
	}
	st := set.Stats()[0]
	if st.State != "closed" || st.Calls["timeout"] != 3 || st.Calls["open"] != 1 || st.Calls["ok"] != 2 || st.Timeout != 150*time.Millisecond {
		t.Fatalf("stats %+v", st)
	}
}

// TestHTTPFallbacks: last-good answers a failed GET with the kept answer to
// the same key within its TTL; other keys get the static body; both are marked.
func TestHTTPFallbacks(t *testing.T) {
	up := newUpstream(t)
	d := &config.Dependency{URL: up.srv.URL, Retries: config.DependencyRetries{Max: ptr(0)},
		Breaker:  config.DependencyBreaker{Failures: 100},
		Fallback: &config.DependencyFallback{Status: 200, Body: "[]", LastGood: &config.LastGood{TTL: config.Duration(time.Minute)}}}
	set, addr, _ := startSet(t, d)
	if resp, body, _ := get(t, addr, "/recs?u=1"); resp.StatusCode != 200 || resp.Header.Get(egress.FallbackHeader) != "" {
		t.Fatalf("healthy: %d %q", resp.StatusCode, body)
	}
	up.mode.Store("fail")
	resp, body, _ := get(t, addr, "/recs?u=1")
	if resp.StatusCode != 200 || body != "answer 1 to /recs?u=1" || resp.Header.Get(egress.FallbackHeader) != "last-good" {
		t.Fatalf("failed call with a kept answer: %d %q %q", resp.StatusCode, body, resp.Header.Get(egress.FallbackHeader))
	}
	resp, body, _ = get(t, addr, "/recs?u=2")
	if resp.StatusCode != 200 || body != "[]" || resp.Header.Get(egress.FallbackHeader) != "static" || resp.Header.Get(egress.DependencyHeader) != "error" {
		t.Fatalf("failed call without a kept answer: %d %q %q", resp.StatusCode, body, resp.Header.Get(egress.FallbackHeader))
	}
	if st := set.Stats()[0]; st.Fallbacks != 2 {
		t.Fatalf("fallbacks %d, want 2", st.Fallbacks)
	}
}

// TestHTTPBulkhead: with max_concurrent 2 and no queue, a third call while two
// hang is shed at once, and the hanging ones are cut at the timeout.
func TestHTTPBulkhead(t *testing.T) {
	up := newUpstream(t)
	up.mode.Store("hang")
	d := &config.Dependency{URL: up.srv.URL, Timeout: config.Duration(time.Second), Retries: config.DependencyRetries{Max: ptr(0)},
		Breaker:  config.DependencyBreaker{Failures: 100},
		Bulkhead: config.DependencyBulkhead{MaxConcurrent: 2, MaxQueue: ptr(0)}}
	_, addr, _ := startSet(t, d)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			http.Get("http://" + addr + "/slow")
		}()
	}
	waitFor(t, func() bool { return up.calls.Load() == 2 }, "two calls in flight")
	resp, _, took := get(t, addr, "/third")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(egress.DependencyHeader) != "shed" || took > 200*time.Millisecond {
		t.Fatalf("third call: %d %q in %v, want 503 shed at once", resp.StatusCode, resp.Header.Get(egress.DependencyHeader), took)
	}
	wg.Wait()
}

// TestHTTPInjectedFault: a drill's fault at the listener is felt like the
// dependency's own: injected errors open the breaker.
func TestHTTPInjectedFault(t *testing.T) {
	up := newUpstream(t)
	d := &config.Dependency{URL: up.srv.URL, Retries: config.DependencyRetries{Max: ptr(0)},
		Breaker: config.DependencyBreaker{Failures: 2, Window: config.Duration(10 * time.Second), OpenFor: config.Duration(time.Minute)}}
	set, addr, _ := startSet(t, d)
	if _, err := set.Inject("app", "dep", egress.Fault{Down: true}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if resp, _, _ := get(t, addr, "/"); resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("down: %d, want 502", resp.StatusCode)
		}
	}
	if resp, _, _ := get(t, addr, "/"); resp.Header.Get(egress.DependencyHeader) != "open" {
		t.Fatalf("after 2 injected failures: %q, want open", resp.Header.Get(egress.DependencyHeader))
	}
	if up.calls.Load() != 0 {
		t.Fatalf("the dependency saw %d calls during an injected outage", up.calls.Load())
	}
	if _, err := set.Inject("app", "nope", egress.Fault{}); err == nil {
		t.Fatal("Inject on an unknown dependency succeeded")
	}
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHTTPRetries: a GET that fails once is retried and succeeds; a POST is
// never sent twice; a POST with an Idempotency-Key is.
func TestHTTPRetries(t *testing.T) {
	var calls, failNext atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if failNext.Add(-1) >= 0 { // the next failNext calls fail
			http.Error(w, "flaky", http.StatusBadGateway)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	d := &config.Dependency{URL: srv.URL, Retries: config.DependencyRetries{Max: ptr(2), Backoff: config.Duration(time.Millisecond)},
		Breaker: config.DependencyBreaker{Failures: 100}}
	set, addr, _ := startSet(t, d)
	failNext.Store(1)
	if resp, body, _ := get(t, addr, "/"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("GET after one failed try: %d %q", resp.StatusCode, body)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("GET reached the dependency %d times, want 2", n)
	}
	post := func(key string) int {
		req, _ := http.NewRequest("POST", "http://"+addr+"/charge", strings.NewReader(`{"amount":1}`))
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	failNext.Store(1)
	if code := post(""); code != http.StatusBadGateway || calls.Load() != 3 {
		t.Fatalf("POST: %d after %d calls, want the failure passed through after 1 try", code, calls.Load())
	}
	failNext.Store(1)
	if code := post("k-1"); code != 200 || calls.Load() != 5 {
		t.Fatalf("POST with Idempotency-Key: %d after %d calls, want a retry", code, calls.Load())
	}
	if st := set.Stats()[0]; st.Retries != 2 {
		t.Fatalf("retries %d, want 2", st.Retries)
	}
}
