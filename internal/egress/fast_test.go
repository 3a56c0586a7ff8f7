package egress_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/egress"
)

// TestHTTPRewrite: the call reaches the dependency under the url's path,
// with the dependency's Host and without hop-by-hop headers (nor the
// ones Connection names); a POST body passes; a failed GET is answered by the
// last good answer to the call as the application made it (the url's path is
// not part of the key).
func TestHTTPRewrite(t *testing.T) {
	var mu sync.Mutex
	var seen []*http.Request
	fail := false
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r)
		f := fail
		mu.Unlock()
		if f {
			http.Error(w, "boom", 500)
			return
		}
		w.Header().Set("Keep-Alive", "timeout=5")
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(body))
	}))
	t.Cleanup(up.Close)
	d := &config.Dependency{URL: up.URL + "/v1/", Retries: config.DependencyRetries{Max: ptr(0)},
		Breaker:  config.DependencyBreaker{Failures: 100},
		Fallback: &config.DependencyFallback{Status: 200, Body: "static", LastGood: &config.LastGood{TTL: config.Duration(time.Minute)}}}
	_, addr, _ := startSet(t, d)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	send := func(raw string) (*http.Response, string) {
		t.Helper()
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(strings.Fields(raw)[0], "/", nil) // HEAD: no body follows
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	resp, body := send("GET /recs?u=1 HTTP/1.1\r\nHost: app.local\r\nconnection: x-secret\r\nx-secret: s\r\nproxy-authorization: p\r\nx-forwarded-for: 6.6.6.6\r\nX-Keep: yes\r\n\r\n")
	if resp.StatusCode != 200 || body != "GET /v1/recs?u=1 " {
		t.Fatalf("GET: %d %q, want the url's path first", resp.StatusCode, body)
	}
	if resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("the dependency's Keep-Alive reached the application: %v", resp.Header)
	}
	mu.Lock()
	r := seen[0]
	mu.Unlock()
	if r.Host != strings.TrimPrefix(up.URL, "http://") {
		t.Errorf("Host %q, want the dependency's", r.Host)
	}
	for _, h := range []string{"X-Secret", "Proxy-Authorization", "X-Forwarded-For"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("%s: %q reached the dependency", h, v)
		}
	}
	if r.Header.Get("X-Keep") != "yes" {
		t.Errorf("an end-to-end header was dropped: %v", r.Header)
	}
	if _, body := send("POST /pay HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"); body != "POST /v1/pay hello" {
		t.Errorf("POST: %q", body)
	}
	if resp, body := send("HEAD /recs HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, body)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	resp, body = send("GET /recs?u=1 HTTP/1.1\r\nHost: a\r\n\r\n")
	if body != "GET /v1/recs?u=1 " || resp.Header.Get(egress.FallbackHeader) != "last-good" || resp.Header.Get(egress.DependencyHeader) != "error" {
		t.Fatalf("failed GET with a kept answer: %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

// TestHTTPEventStream: an event stream is forwarded as it comes, and the
// timeout bounds its response header only, not the stream (the net/http
// listener takes it from the fast plane): asked for with Accept, or from a
// model provider (kind: model), whose SDKs ask for it in the request body.
func TestHTTPEventStream(t *testing.T) {
	for _, tc := range []struct{ name, kind, accept string }{
		{"accept", "internal", "text/event-stream"},
		{"model", "model", "application/json"},
		{"lower-case accept", "internal", "lower:text/event-stream"},
	} {
		t.Run(tc.name, func(t *testing.T) { testEventStream(t, tc.kind, tc.accept) })
	}
}

func testEventStream(t *testing.T, kind, accept string) {
	next := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: two\n\n")
	}))
	t.Cleanup(up.Close)
	d := &config.Dependency{Kind: kind, URL: up.URL, Timeout: config.Duration(300 * time.Millisecond), Retries: config.DependencyRetries{Max: ptr(0)}}
	_, addr, _ := startSet(t, d)
	req, _ := http.NewRequest("GET", "http://"+addr+"/events", nil)
	if v, ok := strings.CutPrefix(accept, "lower:"); ok {
		req.Header["accept"] = []string{v} // sent as is: header names are case-insensitive
	} else {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event: %q %v, want it before the stream ends", line, err)
	}
	time.Sleep(2 * d.Timeout.D()) // the stream outlives the timeout: it must not be cut
	close(next)
	rest, err := io.ReadAll(br)
	if err != nil || !strings.Contains(string(rest), "data: two") {
		t.Fatalf("rest of the stream after the timeout: %q %v", rest, err)
	}
}
