package demoapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/demoapp"
)

// newServer mounts an App on an httptest server that the test closes.
func newServer(t *testing.T, o demoapp.Options) *httptest.Server {
	t.Helper()
	if o.ID == "" {
		o.ID = "web/0"
	}
	if o.Getenv == nil {
		o.Getenv = env(nil) // isolated from the environment the tests run in
	}
	if o.Exit == nil {
		o.Exit = func(code int) { t.Errorf("unexpected exit(%d)", code) }
	}
	srv := httptest.NewServer(demoapp.New(o))
	t.Cleanup(srv.Close)
	return srv
}

type reply struct {
	code int
	body string
	hdr  http.Header
}

// do sends one request and fails the test on a transport error.
func do(t *testing.T, method, url string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return reply{resp.StatusCode, string(b), resp.Header}
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return v
}

func TestRootIdentity(t *testing.T) {
	srv := newServer(t, demoapp.Options{ID: "web/3"})
	r := do(t, "GET", srv.URL+"/")
	if r.code != 200 || r.hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /: %d %q %q", r.code, r.hdr.Get("Content-Type"), r.body)
	}
	id := decode[demoapp.Identity](t, r.body)
	if id.Instance != "web/3" || id.PID != os.Getpid() || id.Error != "" {
		t.Fatalf("GET / = %+v, want instance web/3 pid %d", id, os.Getpid())
	}
	if !strings.Contains(r.body, `"instance":"web/3"`) || !strings.Contains(r.body, `"pid":`) {
		t.Fatalf("GET / body %q lacks the contract's keys", r.body)
	}
}

func TestIDDefaults(t *testing.T) {
	cases := []struct {
		o    demoapp.Options
		want string
	}{
		{demoapp.Options{ID: "a", Listen: "127.0.0.1:9100", Getenv: env(map[string]string{"MEDIC_INSTANCE": "web/1"})}, "a"},
		{demoapp.Options{Listen: "127.0.0.1:9100", Getenv: env(map[string]string{"MEDIC_INSTANCE": "web/1"})}, "web/1"},
		{demoapp.Options{Listen: "127.0.0.1:9100", Getenv: env(nil)}, "127.0.0.1:9100"},
	}
	for _, c := range cases {
		srv := httptest.NewServer(demoapp.New(c.o))
		id := decode[demoapp.Identity](t, do(t, "GET", srv.URL+"/").body)
		srv.Close()
		if id.Instance != c.want {
			t.Errorf("instance = %q, want %q", id.Instance, c.want)
		}
	}
}

func TestHealthAndUnready(t *testing.T) {
	srv := newServer(t, demoapp.Options{})
	steps := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/healthz/live", 200, "ok\n"},
		{"GET", "/healthz/ready", 200, "ready\n"},
		{"POST", "/fault/unready", 200, `"unready":true`},
		{"GET", "/healthz/ready", 503, "not ready\n"},
		{"GET", "/healthz/live", 200, "ok\n"}, // unready is not dead
		{"GET", "/", 200, `"instance":"web/0"`},
		{"POST", "/fault/reset", 200, `"unready":false`},
		{"GET", "/healthz/ready", 200, "ready\n"},
	}
	for _, s := range steps {
		r := do(t, s.method, srv.URL+s.path)
		if r.code != s.code || !strings.Contains(r.body, s.body) {
			t.Fatalf("%s %s = %d %q, want %d containing %q", s.method, s.path, r.code, r.body, s.code, s.body)
		}
	}
}

func TestBadRequests(t *testing.T) {
	srv := newServer(t, demoapp.Options{})
	cases := []struct {
		method, path string
		code         int
		mention      string // the message must name the parameter
	}{
		{"GET", "/fault/crash", 405, ""},
		{"GET", "/fault/hang", 405, ""},
		{"POST", "/", 405, ""},
		{"POST", "/healthz/live", 405, ""},
		{"DELETE", "/fault/reset", 405, ""},
		{"GET", "/nope", 404, ""},
		{"POST", "/fault/slow", 400, "ms"},
		{"POST", "/fault/slow?ms=abc", 400, "ms"},
		{"POST", "/fault/slow?ms=-5", 400, "ms"},
		{"POST", "/fault/slow?ms=1.5", 400, "ms"},
		{"POST", "/fault/slow?ms=1&ms=2", 400, "ms"},
		{"POST", "/fault/slow?msec=5", 400, "msec"},
		{"POST", "/fault/error", 400, "rate"},
		{"POST", "/fault/error?rate=1.5", 400, "rate"},
		{"POST", "/fault/error?rate=NaN", 400, "rate"},
		{"POST", "/fault/leak?mb_per_s=0", 400, "mb_per_s"},
		{"POST", "/fault/leak?mb_per_s=lots", 400, "mb_per_s"},
		{"POST", "/fault/leak?mb_per_s=99999", 400, "mb_per_s"},
		{"POST", "/fault/reset?all=1", 400, "all"},
		{"POST", "/fault/crash?now=1", 400, "now"},
		{"POST", "/fault/slow?ms=%zz", 400, "malformed"},
	}
	for _, c := range cases {
		r := do(t, c.method, srv.URL+c.path)
		if r.code != c.code || !strings.Contains(r.body, c.mention) {
			t.Errorf("%s %s = %d %q, want %d naming %q", c.method, c.path, r.code, r.body, c.code, c.mention)
		}
		if c.code == 405 && r.hdr.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without an Allow header", c.method, c.path)
		}
	}
	// None of the rejected requests changed anything.
	if st := decode[demoapp.State](t, do(t, "GET", srv.URL+"/fault").body); st != (demoapp.State{}) {
		t.Fatalf("state after bad requests = %+v, want none", st)
	}
}

func TestSlowUsesTheClock(t *testing.T) {
	fake := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	srv := newServer(t, demoapp.Options{Clock: fake})
	if st := decode[demoapp.State](t, do(t, "POST", srv.URL+"/fault/slow?ms=250").body); st.SlowMS != 250 {
		t.Fatalf("slow_ms = %d, want 250", st.SlowMS)
	}
	got := make(chan reply, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			got <- reply{code: -1, body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- reply{code: resp.StatusCode, body: string(b)}
	}()
	waitFor(t, 5*time.Second, "GET / to wait on the clock", func() bool { return fake.Pending() == 1 })
	fake.Advance(249 * time.Millisecond)
	select {
	case r := <-got:
		t.Fatalf("GET / answered %d before 250 ms had passed", r.code)
	case <-time.After(50 * time.Millisecond): // a negative check: the answer must not come yet
	}
	fake.Advance(time.Millisecond)
	select {
	case r := <-got:
		if r.code != 200 {
			t.Fatalf("slow GET / = %d %q", r.code, r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GET / did not answer after the clock passed 250 ms")
	}
	if st := decode[demoapp.State](t, do(t, "POST", srv.URL+"/fault/reset").body); st.SlowMS != 0 {
		t.Fatalf("slow_ms after reset = %d", st.SlowMS)
	}
	do(t, "GET", srv.URL+"/") // no timer: answers without advancing the fake clock
}

func TestErrorRate(t *testing.T) {
	srv := newServer(t, demoapp.Options{})
	count500 := func(n int) int {
		bad := 0
		for range n {
			r := do(t, "GET", srv.URL+"/")
			switch r.code {
			case 500:
				if id := decode[demoapp.Identity](t, r.body); id.Error == "" || id.PID != os.Getpid() {
					t.Fatalf("injected 500 body %q lacks error or pid", r.body)
				}
				bad++
			case 200:
			default:
				t.Fatalf("GET / = %d", r.code)
			}
		}
		return bad
	}
	do(t, "POST", srv.URL+"/fault/error?rate=1")
	if n := count500(50); n != 50 {
		t.Fatalf("rate=1: %d of 50 failed", n)
	}
	do(t, "POST", srv.URL+"/fault/error?rate=0.5")
	// Binomial(400, 0.5): 100..300 holds with probability 1 - 1e-23.
	if n := count500(400); n < 100 || n > 300 {
		t.Fatalf("rate=0.5: %d of 400 failed", n)
	}
	do(t, "POST", srv.URL+"/fault/reset")
	if n := count500(50); n != 0 {
		t.Fatalf("after reset: %d of 50 failed", n)
	}
	// Health is not affected by the error fault.
	do(t, "POST", srv.URL+"/fault/error?rate=1")
	if r := do(t, "GET", srv.URL+"/healthz/live"); r.code != 200 {
		t.Fatalf("live under error fault = %d", r.code)
	}
}

func TestCrashRespondsThenExits(t *testing.T) {
	exited := make(chan int, 1)
	srv := newServer(t, demoapp.Options{Exit: func(code int) { exited <- code }})
	r := do(t, "POST", srv.URL+"/fault/crash")
	if r.code != 202 || r.body != "crashing\n" {
		t.Fatalf("POST /fault/crash = %d %q, want 202", r.code, r.body)
	}
	select {
	case code := <-exited:
		if code != 2 {
			t.Fatalf("exit(%d), want exit(2)", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit after /fault/crash")
	}
}

func TestHangBlocksEveryRequest(t *testing.T) {
	srv := newServer(t, demoapp.Options{})
	if r := do(t, "POST", srv.URL+"/fault/hang"); r.code != 202 {
		t.Fatalf("POST /fault/hang = %d %q", r.code, r.body)
	}
	for _, p := range []struct{ method, path string }{
		{"GET", "/healthz/live"}, {"GET", "/healthz/ready"}, {"GET", "/"}, {"POST", "/fault/reset"}, {"GET", "/nope"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, p.method, srv.URL+p.path, nil)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s %s answered %d while hung", p.method, p.path, resp.StatusCode)
		}
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 300*time.Millisecond {
			t.Fatalf("%s %s: %v after %v, want a timeout after 300ms", p.method, p.path, err, time.Since(start))
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEventCounter: with EventRate 1 every GET / answers 200 and counts one
// demo_backend_errors_total on GET /metrics; without it the counter stays 0.
func TestEventCounter(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want string
	}{{1, "demo_backend_errors_total 5\n"}, {0, "demo_backend_errors_total 0\n"}} {
		srv := newServer(t, demoapp.Options{EventRate: c.rate})
		for range 5 {
			if r := do(t, "GET", srv.URL+"/"); r.code != 200 {
				t.Fatalf("GET /: %d", r.code)
			}
		}
		r := do(t, "GET", srv.URL+"/metrics")
		if r.code != 200 || !strings.Contains(r.body, "# TYPE demo_backend_errors_total counter\n") || !strings.HasSuffix(r.body, c.want) {
			t.Errorf("event rate %v: GET /metrics %d:\n%s", c.rate, r.code, r.body)
		}
	}
}
