package api_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// serve runs f's server on a loopback listener until the test ends.
func serve(t *testing.T, f *fixture) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); f.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.srv.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

// The API closes keep-alive connections that stay idle (it kept them forever).
func TestAPIClosesIdleKeepAlives(t *testing.T) {
	f := newFixture(t)
	f.srv.Limits = config.Limits{IdleTimeout: config.Duration(200 * time.Millisecond)}
	addr := serve(t, f)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle keep-alive connection: read %v; want EOF (closed by the server after idle_timeout)", err)
	}
}

// A client that never finishes its headers is cut at header_timeout.
func TestAPICutsSlowHeaders(t *testing.T) {
	f := newFixture(t)
	f.srv.Limits = config.Limits{HeaderTimeout: config.Duration(200 * time.Millisecond)}
	addr := serve(t, f)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nX-Slow: ")
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("slow headers: %v after %q; want the server to close", err, b)
	}
}

// Beyond max_connections the API answers 503 and closes (here: the accept
// loop was already waiting in accept(2) when the streams made the listener
// full, so the caps are judged after the accept; a listener found full
// before it accepts pauses instead: netguard's TestCapPausesBeyondMaxConns),
// while an idle
// connection gives its place to a new client.
func TestAPICapsConnections(t *testing.T) {
	f := newFixture(t)
	f.srv.Limits = config.Limits{MaxConnections: 2, MaxPerSource: 2}
	addr := serve(t, f)
	var held []net.Conn
	for range 2 { // two requests in flight on event streams: active, never evicted
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "+f.view+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("event stream: %v", err)
		}
		held = append(held, c)
	}
	// The third waits in the kernel's queue (the listener is full: it
	// pauses) or, accepted as the listener filled, is refused with a 503.
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + addr + "/healthz")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "too many connections") {
			t.Fatalf("third connection: %d %q; want 503 too many connections", resp.StatusCode, b)
		}
	}
	held[0].Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if resp != nil {
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place after a stream ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Without a tokens file, only requests for localhost or the listen address
// are answered: a page on a rebinding name must not read the API (it could).
func TestTokenlessRefusesForeignHost(t *testing.T) {
	f := newFixture(t)
	f.srv.Tokens = nil
	addr := serve(t, f)
	_, port, _ := net.SplitHostPort(addr)
	for host, want := range map[string]int{
		"evil.example:" + port: http.StatusMisdirectedRequest,
		"evil.example":         http.StatusMisdirectedRequest,
		"localhost:" + port:    200,
		"127.0.0.1:" + port:    200,
		"[::1]:" + port:        200,
	} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/status", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d; want %d", host, resp.StatusCode, want)
		}
	}
}
