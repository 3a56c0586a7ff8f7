package demoapp_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/demoapp"
)

// served is an App serving on a real loopback listener.
type served struct {
	url    string
	cancel context.CancelFunc
	done   chan error // receives Serve's result
}

// mustServe runs App.Serve on 127.0.0.1:0 and stops it when the test ends.
func mustServe(t *testing.T, o demoapp.Options) *served {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.Getenv == nil {
		o.Getenv = env(nil) // isolated from the environment the tests run in
	}
	if o.Exit == nil {
		o.Exit = func(code int) { t.Errorf("unexpected exit(%d)", code) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	app := demoapp.New(o)
	go func() { s.done <- app.Serve(ctx, ln) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop cancels Serve and waits for it; idempotent.
func (s *served) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok {
			close(s.done)
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of cancel")
		return nil
	}
}

func TestServeAnswersAndShutsDown(t *testing.T) {
	s := mustServe(t, demoapp.Options{})
	r := do(t, "GET", s.url+"/")
	id := decode[demoapp.Identity](t, r.body)
	if r.code != 200 || id.Instance != strings.TrimPrefix(s.url, "http://") {
		t.Fatalf("GET / = %d %+v, want the listener address as instance", r.code, id)
	}
	if err := s.stop(t); err != nil {
		t.Fatalf("Serve after cancel = %v, want nil", err)
	}
	if _, err := http.Get(s.url + "/healthz/live"); err == nil {
		t.Fatal("still serving after Serve returned")
	}
}

func TestRunWaitsStartupDelayThenListens(t *testing.T) {
	addr := freeAddr(t)
	fake := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- demoapp.Run(ctx, demoapp.Options{Listen: addr, StartupDelay: 3 * time.Second, Clock: fake})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	waitFor(t, 5*time.Second, "Run to wait on the clock", func() bool { return fake.Pending() == 1 })
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("listening during the startup delay")
	}
	fake.Advance(3 * time.Second)
	waitFor(t, 5*time.Second, "Run to listen after the delay", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = demoapp.Run(context.Background(), demoapp.Options{Listen: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "listen") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Run on a busy address = %v, want a listen error naming it", err)
	}
}

func TestHungRequestsReleasedOnShutdown(t *testing.T) {
	s := mustServe(t, demoapp.Options{})
	do(t, "POST", s.url+"/fault/hang")
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get(s.url + "/healthz/live")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- resp.Status + " " + string(b)
	}()
	select {
	case r := <-got:
		t.Fatalf("live probe answered while hung: %s", r)
	case <-time.After(300 * time.Millisecond): // a negative check: it must still be blocked
	}
	start := time.Now()
	if err := s.stop(t); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	// The release happens before Shutdown, so it does not wait out the 5 s grace.
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown with a hung request took %v", d)
	}
	if r := <-got; strings.HasPrefix(r, "200") {
		t.Fatalf("released hung request looked healthy: %s", r)
	}
}

func TestLeakGrowsToItsLimitAndResets(t *testing.T) {
	const limit = 8 << 20
	s := mustServe(t, demoapp.Options{LeakLimit: limit})
	st := decode[demoapp.State](t, do(t, "POST", s.url+"/fault/leak?mb_per_s=40").body)
	if st.LeakMBPerS != 40 {
		t.Fatalf("leak_mb_per_s = %v, want 40", st.LeakMBPerS)
	}
	var seen []int64
	waitFor(t, 5*time.Second, "the leak to reach its limit", func() bool {
		st = decode[demoapp.State](t, do(t, "GET", s.url+"/fault").body)
		if len(seen) == 0 || seen[len(seen)-1] != st.LeakedBytes {
			seen = append(seen, st.LeakedBytes)
		}
		if st.LeakedBytes > limit {
			t.Fatalf("leaked %d bytes, over the %d limit", st.LeakedBytes, limit)
		}
		return st.LeakedBytes == limit
	})
	// 40 MiB/s in 100 ms ticks is 4 MiB a step: the limit is reached in steps, not at once.
	if len(seen) < 3 {
		t.Fatalf("leak went %v: want steady growth", seen)
	}
	st = decode[demoapp.State](t, do(t, "POST", s.url+"/fault/reset").body)
	if st.LeakedBytes != 0 || st.LeakMBPerS != 0 {
		t.Fatalf("after reset: %+v", st)
	}
}

func TestLeakDefaultRate(t *testing.T) {
	srv := newServer(t, demoapp.Options{})
	if st := decode[demoapp.State](t, do(t, "POST", srv.URL+"/fault/leak").body); st.LeakMBPerS != 10 {
		t.Fatalf("default leak rate = %v, want 10", st.LeakMBPerS)
	}
	do(t, "POST", srv.URL+"/fault/reset")
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// notifySocket listens for sd_notify datagrams in a temp dir.
func notifySocket(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, c
}

// recv returns the next datagram, or "" when none arrives within d.
func recv(t *testing.T, c *net.UnixConn, d time.Duration) string {
	t.Helper()
	buf := make([]byte, 256)
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ""
	}
	if err != nil {
		t.Fatalf("read notify socket: %v", err)
	}
	return string(buf[:n])
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// httpGetCode returns the status of one GET.
func httpGetCode(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
