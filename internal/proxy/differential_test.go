package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// TestDataPlanesAgree sends the same corpus of raw HTTP/1.1 exchanges
// through a proxy on the fast data plane and one on the net/http plane, and
// compares what the instance saw and what the client got. Each case is a
// byte string written on a fresh connection (so pipelining, chunked
// framing, Expect: 100-continue and header sizes are exactly what is sent).
// The differences the fast plane is allowed are listed, with their reason,
// in allowedDifference.
func TestDataPlanesAgree(t *testing.T) {
	big := strings.Repeat("b", 200<<10)  // over retries.max_body: streams, via the net/http plane
	long := strings.Repeat("h", 16<<10)  // a 16 KiB header value
	small := strings.Repeat("s", 40<<10) // under max_body, over one read buffer
	chunked := "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
	cases := []struct {
		name string
		send []string // written in turn; between two parts the client reads one interim 100 Continue
		n    int      // responses to read (pipelining)
		head bool     // the responses answer HEAD
	}{
		{name: "GET", send: []string{"GET /echo?x=1&y=%2F HTTP/1.1\r\nHost: svc\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n"}},
		{name: "GET HTTP/1.0", send: []string{"GET /echo HTTP/1.0\r\nHost: svc\r\n\r\n"}},
		{name: "GET HTTP/1.0 without Host", send: []string{"GET /echo HTTP/1.0\r\n\r\n"}},
		{name: "HEAD", send: []string{"HEAD /echo HTTP/1.1\r\nHost: svc\r\n\r\n"}, head: true},
		{name: "repeated and mixed-case headers", send: []string{"GET /echo HTTP/1.1\r\nHost: svc\r\nx-multi: a\r\nX-Multi: b\r\nCookie: a=1; b=2\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"}},
		{name: "hop-by-hop headers", send: []string{"GET /echo HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: x\r\n\r\n"}},
		{name: "request id kept", send: []string{"GET /echo HTTP/1.1\r\nHost: svc\r\nX-Request-ID: abc-123\r\n\r\n"}},
		{name: "POST body", send: []string{"POST /echo HTTP/1.1\r\nHost: svc\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"}},
		{name: "POST empty", send: []string{"POST /echo HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\n\r\n"}},
		{name: "PUT 40 KiB", send: []string{"PUT /echo HTTP/1.1\r\nHost: svc\r\nContent-Length: " + strconv.Itoa(len(small)) + "\r\n\r\n" + small}},
		{name: "POST chunked", send: []string{"POST /echo HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked}},
		{name: "PUT 200 KiB", send: []string{"PUT /echo HTTP/1.1\r\nHost: svc\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n" + big}},
		{name: "large header", send: []string{"GET /echo HTTP/1.1\r\nHost: svc\r\nX-Long: " + long + "\r\n\r\n"}},
		{name: "pipelined", n: 3, send: []string{"GET /echo?n=1 HTTP/1.1\r\nHost: svc\r\n\r\n" +
			"POST /echo?n=2 HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc" +
			"GET /echo?n=3 HTTP/1.1\r\nHost: svc\r\n\r\n"}},
		{name: "Expect 100-continue", send: []string{"POST /echo HTTP/1.1\r\nHost: svc\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", "hello"}},
		{name: "Connection close", send: []string{"GET /echo HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n"}},
		{name: "204", send: []string{"GET /status/204 HTTP/1.1\r\nHost: svc\r\n\r\n"}},
		{name: "304", send: []string{"GET /status/304 HTTP/1.1\r\nHost: svc\r\nIf-None-Match: \"x\"\r\n\r\n"}},
		{name: "404 with body", send: []string{"GET /status/404 HTTP/1.1\r\nHost: svc\r\n\r\n"}},
		{name: "500 not retried for POST", send: []string{"POST /status/500 HTTP/1.1\r\nHost: svc\r\nContent-Length: 1\r\n\r\nx"}},
		{name: "103 then 200", send: []string{"GET /early HTTP/1.1\r\nHost: svc\r\n\r\n"}},
		{name: "big response", send: []string{"GET /big HTTP/1.1\r\nHost: svc\r\n\r\n"}},
		{name: "chunked response", send: []string{"GET /chunked HTTP/1.1\r\nHost: svc\r\n\r\n"}},
		{name: "response until close", send: []string{"GET /untilclose HTTP/1.1\r\nHost: svc\r\n\r\n"}},
		{name: "upstream Connection close", send: []string{"GET /close HTTP/1.1\r\nHost: svc\r\n\r\nGET /echo HTTP/1.1\r\nHost: svc\r\n\r\n"}, n: 2},
		{name: "upgrade", send: []string{"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "ping\n"}},
	}
	type plane struct {
		name string
		url  string
		seen *recorder
	}
	var planes []plane
	for _, dp := range []string{config.ProxyDataPlaneFast, config.ProxyDataPlaneNetHTTP} {
		cfg := baseConfig()
		cfg.DataPlane = dp
		h := mustStart(t, cfg, nil)
		rec := &recorder{}
		h.p.SetBackend("web/0", backend(t, rec.handler), true)
		planes = append(planes, plane{dp, h.p.Addr().String(), rec})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got [2]string
			for i, pl := range planes {
				pl.seen.reset()
				client := exchangeRaw(t, pl.url, c.send, max(c.n, 1), c.head)
				got[i] = "instance saw:\n" + pl.seen.String() + "client got:\n" + client
			}
			if got[0] != got[1] && !allowedDifference(c.name, got[0], got[1]) {
				t.Errorf("the data planes differ\n--- fast:\n%s\n--- net_http:\n%s", got[0], got[1])
			}
		})
	}
}

// allowedDifference: the differences of the fast plane, by design.
func allowedDifference(name, fast, nethttp string) bool {
	switch name {
	case "103 then 200":
		// 1xx interim answers other than 100 Continue are not forwarded by
		// the fast plane (the final answer is); net/http forwards 103 Early Hints.
		return strings.Replace(nethttp, "103 Early Hints\n", "", 1) == fast
	case "Expect 100-continue":
		// The fast plane answers 100 Continue itself and has the whole body
		// before the first try, so it does not forward Expect; net/http
		// forwards it and the client gets a second 100 Continue, from the instance.
		want := strings.Replace(nethttp, "  Expect: 100-continue\n", "", 1)
		return strings.Replace(want, "100 Continue\n", "", 1) == fast
	}
	return false
}

// recorder is the instance: it records each request as a normalized text
// (method, target, headers sorted, body) and answers by path.
type recorder struct {
	mu  sync.Mutex
	log []string
}

func (r *recorder) reset() { r.mu.Lock(); r.log = nil; r.mu.Unlock() }

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.log, "")
}

func (r *recorder) handler(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var b strings.Builder
	host := req.Host
	if strings.HasPrefix(host, "127.0.0.1:") {
		host = "<the instance's address>" // each plane has its own instance
	}
	fmt.Fprintf(&b, "%s %s %s host=%s len=%d te=%v\n", req.Method, req.RequestURI, req.Proto, host, req.ContentLength, req.TransferEncoding)
	keys := make([]string, 0, len(req.Header))
	for k := range req.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := strings.Join(req.Header[k], " | ")
		switch k {
		case "X-Request-Id":
			if v != "abc-123" {
				v = fmt.Sprintf("<%d chars>", len(v))
			}
		case "X-Forwarded-For":
			v = strings.TrimPrefix(v, "127.0.0.1") // the client's address, the same for both
		case "X-Long":
			v = fmt.Sprintf("<%d bytes>", len(v))
		}
		fmt.Fprintf(&b, "  %s: %s\n", k, v)
	}
	fmt.Fprintf(&b, "  body %d bytes %q\n", len(body), clip(body))
	r.mu.Lock()
	r.log = append(r.log, b.String())
	r.mu.Unlock()

	switch p := req.URL.Path; {
	case strings.HasPrefix(p, "/status/"):
		code, _ := strconv.Atoi(strings.TrimPrefix(p, "/status/"))
		w.Header().Set("X-Status", strconv.Itoa(code))
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "status body\n")
	case p == "/early":
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = io.WriteString(w, "after hints\n")
	case p == "/big":
		w.Header().Set("Content-Length", strconv.Itoa(1<<20))
		_, _ = w.Write(bytes.Repeat([]byte("x"), 1<<20))
	case p == "/chunked":
		for i := range 5 {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
		}
	case p == "/untilclose":
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		_, _ = brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Framing: close\r\n\r\nuntil the end")
		_ = brw.Flush()
		_ = conn.Close()
	case p == "/close":
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "closing\n")
	case p == "/ws":
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString("echo " + line)
		_ = brw.Flush()
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Echo", "1")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		_, _ = fmt.Fprintf(w, "%s %s %d bytes\n", req.Method, req.URL.RequestURI(), len(body))
	}
}

func clip(b []byte) []byte {
	if len(b) > 24 {
		return b[:24]
	}
	return b
}

// exchangeRaw writes send on a new connection to addr and returns the n
// responses as normalized text: status, headers sorted (Date and the
// request id's value left out), framing, body.
func exchangeRaw(t *testing.T, addr string, send []string, n int, head bool) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	var out strings.Builder
	method := "GET"
	if head {
		method = "HEAD"
	}
	for i, part := range send {
		if _, err := io.WriteString(conn, part); err != nil {
			t.Fatalf("write: %v", err)
		}
		if i < len(send)-1 { // wait for the interim (or upgrade) answer before the next part
			res, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("read interim answer: %v", err)
			}
			fmt.Fprintf(&out, "%s\n", res.Status)
			if res.StatusCode == http.StatusSwitchingProtocols {
				_, _ = io.WriteString(conn, send[i+1])
				line, _ := br.ReadString('\n')
				fmt.Fprintf(&out, "upgraded: %q\n", line)
				return out.String()
			}
		}
	}
	for range n {
		for {
			res, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				fmt.Fprintf(&out, "read error: %v\n", err)
				return out.String()
			}
			fmt.Fprintf(&out, "%s\n", res.Status)
			if res.StatusCode >= 200 {
				writeResponse(&out, res)
				break
			}
		}
	}
	return out.String()
}

func writeResponse(out *strings.Builder, res *http.Response) {
	keys := make([]string, 0, len(res.Header))
	for k := range res.Header {
		if k != "Date" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := strings.Join(res.Header[k], " | ")
		if k == "X-Request-Id" && v != "abc-123" {
			v = fmt.Sprintf("<%d chars>", len(v))
		}
		fmt.Fprintf(out, "  %s: %s\n", k, v)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Fprintf(out, "  length %d te=%v close=%v body %d bytes %q err=%v\n", res.ContentLength, res.TransferEncoding, res.Close, len(body), clip(body), err)
}

// TestFastPlaneReusesNoDeadConnection: an instance that restarted closed
// the proxy's idle connections; a POST (which cannot be retried once sent)
// must not be written to one of them.
func TestFastPlaneReusesNoDeadConnection(t *testing.T) {
	h := mustStart(t, baseConfig(), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener) *http.Server {
		s := &http.Server{Handler: named("a")}
		go func() { _ = s.Serve(ln) }()
		return s
	}
	s1 := serve(ln)
	h.p.SetBackend("web/0", addr, true)
	c := client(t)
	post := func() result { return do(c, "POST", h.url+"/", []byte("x"), nil) }
	if r := post(); r.status != 200 {
		t.Fatalf("first POST: %d %v", r.status, r.err)
	}
	_ = s1.Close() // the instance goes, closing its kept-alive connections
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the instance's port was taken meanwhile: %v", err)
	}
	s2 := serve(ln2)
	defer s2.Close()
	time.Sleep(20 * time.Millisecond) // the close has reached the proxy's idle connection
	for i := range 3 {
		if r := post(); r.status != 200 {
			t.Fatalf("POST %d after the restart: %d %v (%s)", i, r.status, r.err, r.body)
		}
	}
}
