package egress_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// TestHTTPBodyCap: bodies over max_body are refused (request: 413, never a
// breaker failure; declared answer: 502) or cut (streamed answer).
func TestHTTPBodyCap(t *testing.T) {
	big := strings.Repeat("x", 4096)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/declared":
			w.Header().Set("Content-Length", "4096")
			io.WriteString(w, big)
		case "/streamed":
			w.(http.Flusher).Flush() // no length: chunked
			io.WriteString(w, big)
		default:
			io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(up.Close)
	d := &config.Dependency{URL: up.URL, MaxBody: 1024, Retries: config.DependencyRetries{Max: ptr(0)},
		Breaker: config.DependencyBreaker{Failures: 1}}
	set, addr, _ := startSet(t, d)
	c := &http.Client{Timeout: 5 * time.Second}

	resp, err := c.Post("http://"+addr+"/up", "text/plain", strings.NewReader(big))
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared request body over the cap: %v %v", resp, err)
	}
	resp.Body.Close()
	// A chunked request body over the cap: the instance's fault, not the dependency's.
	resp, err = c.Post("http://"+addr+"/up", "text/plain", io.MultiReader(strings.NewReader(big)))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked request body over the cap: %d", resp.StatusCode)
		}
	}
	if st := set.Stats()[0]; st.State != "closed" || st.TooLarge == 0 {
		t.Fatalf("after oversized requests: breaker %s, too_large %d (a client's body must not open the breaker)", st.State, st.TooLarge)
	}
	resp, err = c.Post("http://"+addr+"/up", "text/plain", strings.NewReader("small"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("small request: %v %v", resp, err)
	}
	resp.Body.Close()

	resp, err = c.Get("http://" + addr + "/declared")
	if err != nil || resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("declared answer over the cap: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = c.Get("http://" + addr + "/streamed")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(b) > 1024 {
			t.Fatalf("streamed answer over the cap: %d bytes passed", len(b))
		}
	}
}

// TestListenerCaps: a dependency listener is guarded like every other:
// connections over max_per_source are refused with 503 (over
// max_connections it stops accepting until a place frees: netguard's
// TestCapPausesBeyondMaxConns).
func TestListenerCaps(t *testing.T) {
	up := newUpstream(t)
	d := &config.Dependency{URL: up.srv.URL, Limits: config.Limits{MaxConnections: 3, MaxPerSource: 2}}
	_, addr, _ := startSet(t, d)
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond) // let the server accept both
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if !bytes.Contains(b, []byte("503")) {
		t.Fatalf("third connection over max_per_source 2: %q, want a 503 refusal", b)
	}
}
