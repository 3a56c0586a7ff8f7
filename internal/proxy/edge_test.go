package proxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
)

// TestPerClientRateLimit: without a client keys file an API key header is
// not trusted, so a client making up a fresh key per request (the old bypass:
// 20 of 20 answered) stays in its address's bucket.
func TestPerClientRateLimit(t *testing.T) {
	cfg := baseConfig()
	cfg.RateLimit = config.ProxyRateLimit{Rate: 5, Burst: 5}
	h := mustStart(t, cfg, nil)
	h.p.SetBackend("web/0", backend(t, named("a")), true)
	c := client(t)

	limited := 0
	for i := range 30 {
		r := do(c, http.MethodGet, h.url+"/", nil, map[string]string{"X-API-Key": fmt.Sprintf("fresh-%d", i)})
		switch r.status {
		case 200:
		case http.StatusTooManyRequests:
			limited++
			if r.header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		default:
			t.Fatalf("noisy client: %d %v", r.status, r.err)
		}
	}
	if limited < 20 {
		t.Fatalf("a fresh made-up key per request, 30 requests at once with burst 5: %d limited, want at least 20", limited)
	}
	if s := h.p.Stats(); s.RateLimited != uint64(limited) {
		t.Fatalf("stats count %d rate-limited, clients saw %d", s.RateLimited, limited)
	}
}

func TestRequestIDAndAccessLog(t *testing.T) {
	h := mustStart(t, baseConfig(), nil)
	h.p.SetBackend("web/0", backend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Request-ID"))
	}), true)
	c := client(t)

	r := do(c, http.MethodGet, h.url+"/given", nil, map[string]string{"X-Request-ID": "abc-123"})
	if r.body != "abc-123" || r.header.Get("X-Request-ID") != "abc-123" {
		t.Fatalf("propagation: backend saw %q, client got %q", r.body, r.header.Get("X-Request-ID"))
	}
	r = do(c, http.MethodGet, h.url+"/new", nil, nil)
	if len(r.body) != 32 || r.header.Get("X-Request-ID") != r.body {
		t.Fatalf("generation: backend saw %q, client got %q", r.body, r.header.Get("X-Request-ID"))
	}
	h.stop()
	var line struct {
		Msg       string  `json:"msg"`
		Service   string  `json:"service"`
		RequestID string  `json:"request_id"`
		Instance  string  `json:"instance"`
		Attempts  int     `json:"attempts"`
		Status    int     `json:"status"`
		Duration  float64 `json:"duration_seconds"`
		Path      string  `json:"path"`
	}
	found := false
	for _, l := range strings.Split(h.logs.String(), "\n") {
		if !strings.Contains(l, `"msg":"access"`) || !strings.Contains(l, `"/given"`) {
			continue
		}
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("access line is not JSON: %v: %s", err, l)
		}
		found = true
	}
	if !found {
		t.Fatalf("no access line for /given in:\n%s", h.logs.String())
	}
	if line.Service != "web" || line.RequestID != "abc-123" || line.Instance != "web/0" || line.Attempts != 1 || line.Status != 200 || line.Duration <= 0 {
		t.Fatalf("access line %+v", line)
	}
}

func TestFaultInjection(t *testing.T) {
	cfg := baseConfig()
	cfg.TryTimeout = dur(200 * time.Millisecond)
	h := mustStart(t, cfg, nil)
	h.p.SetBackend("web/0", backend(t, named("a")), true)
	h.p.SetBackend("web/1", backend(t, named("b")), true)
	c := client(t)

	// Latency beyond the try timeout on web/0: GETs are retried on web/1, none fails.
	h.p.SetFault("web/0", proxy.Fault{Latency: dur(time.Second)})
	for i := range 10 {
		if r := do(c, http.MethodGet, h.url+"/", nil, nil); r.status != 200 || r.body != "b" {
			t.Fatalf("GET %d with a latency fault: %d %q", i, r.status, r.body)
		}
	}
	if instance(h.p.Stats(), "web/0").Errors == 0 {
		t.Fatal("no try reached the slow instance")
	}
	// Resets (a fresh proxy: the first one now avoids web/0 for its latency).
	// GETs are retried, and web/0 is ejected.
	h = mustStart(t, cfg, nil)
	h.p.SetFault("web/0", proxy.Fault{ResetRate: 1})
	h.p.SetBackend("web/0", backend(t, named("a")), true)
	h.p.SetBackend("web/1", backend(t, named("b")), true)
	for i := 0; instance(h.p.Stats(), "web/0").Breaker != proxy.Open; i++ {
		if i > 200 {
			t.Fatalf("web/0 resets every request and is not ejected: %+v", h.p.Stats())
		}
		if r := do(c, http.MethodGet, h.url+"/", nil, nil); r.status != 200 {
			t.Fatalf("GET with a reset fault: %d (should be retried)", r.status)
		}
	}
	if f := h.p.Stats().Faults["web/0"]; f.ResetRate != 1 {
		t.Fatalf("stats do not show the fault: %+v", h.p.Stats().Faults)
	}
	h.p.ClearFault("web/0")
	if len(h.p.Stats().Faults) != 0 {
		t.Fatal("fault not cleared")
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := baseConfig()
	p1, err := proxy.New(proxy.Options{Service: "web", Config: &cfg, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer p1.Close()
	// A second service's proxy shares the registry.
	p2, err := proxy.New(proxy.Options{Service: "api", Config: &cfg, Registerer: reg})
	if err != nil {
		t.Fatalf("second proxy on one registry: %v", err)
	}
	defer p2.Close()
	p1.SetBackend("web/0", deadAddr(t), true)
	p1.SetBackend("web/1", backend(t, named("b")), true)
	rec := httpRecorder(p1, 5)
	if rec != 200 {
		t.Fatalf("status %d", rec)
	}
	series := gather(t, reg)
	for _, want := range []string{
		`medic_proxy_requests_total{service="web"} 5`,
		`medic_proxy_instance_requests_total{instance="web/1",service="web"}`,
		`medic_proxy_request_duration_seconds_count{service="web"} 5`,
	} {
		if !strings.Contains(series, want) {
			t.Errorf("missing %s in:\n%s", want, series)
		}
	}
	p1.RemoveBackend("web/1")
	if series := gather(t, reg); strings.Contains(series, `instance="web/1"`) {
		t.Errorf("series of a removed instance remain:\n%s", series)
	}
}

// httpRecorder sends n GETs straight to the proxy's handler and returns the last status.
func httpRecorder(p *proxy.Proxy, n int) int {
	status := 0
	for range n {
		w := &statusRecorder{header: http.Header{}}
		r, _ := http.NewRequest(http.MethodGet, "http://proxy/", nil)
		r.RemoteAddr = "127.0.0.1:1"
		p.ServeHTTP(w, r)
		status = w.status
	}
	return status
}

type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = 200
	}
	return len(b), nil
}
func (s *statusRecorder) WriteHeader(code int) { s.status = code }

func gather(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := ""
			for i, l := range m.GetLabel() {
				if i > 0 {
					labels += ","
				}
				labels += fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
			}
			switch {
			case m.Counter != nil:
				fmt.Fprintf(&b, "%s{%s} %v\n", mf.GetName(), labels, m.Counter.GetValue())
			case m.Histogram != nil:
				fmt.Fprintf(&b, "%s_count{%s} %v\n", mf.GetName(), labels, m.Histogram.GetSampleCount())
			case m.Gauge != nil:
				fmt.Fprintf(&b, "%s{%s} %v\n", mf.GetName(), labels, m.Gauge.GetValue())
			}
		}
	}
	return b.String()
}

func TestWebSocketPassThrough(t *testing.T) {
	h := mustStart(t, baseConfig(), nil)
	h.p.SetBackend("web/0", backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		// Echo lines until the client closes.
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprint(brw, "echo "+line)
			brw.Flush()
		}
	}), true)

	conn, err := net.DialTimeout("tcp", h.p.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	for _, msg := range []string{"one", "two"} {
		fmt.Fprint(conn, msg+"\n")
		got, err := br.ReadString('\n')
		if err != nil || got != "echo "+msg+"\n" {
			t.Fatalf("through the upgraded connection: %q %v", got, err)
		}
	}
}

func TestStreamingPassThrough(t *testing.T) {
	h := mustStart(t, baseConfig(), nil)
	next := make(chan struct{})
	h.p.SetBackend("web/0", backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: second\n\n")
	}), true)
	c := client(t)
	res, err := c.Get(h.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	// The first event arrives while the backend still holds the response open.
	if line, err := br.ReadString('\n'); err != nil || line != "data: first\n" {
		t.Fatalf("first event: %q %v", line, err)
	}
	close(next)
	rest, err := io.ReadAll(br)
	if err != nil || !strings.Contains(string(rest), "data: second") {
		t.Fatalf("rest of the stream: %q %v", rest, err)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	cfg := baseConfig()
	cfg.Mode = "udp"
	cfg.TryTimeout = dur(time.Minute)
	_, err := proxy.New(proxy.Options{Service: "web", Config: &cfg})
	if err == nil || !strings.Contains(err.Error(), "mode") || !strings.Contains(err.Error(), "try_timeout") {
		t.Fatalf("New with a bad mode and try_timeout > timeout: %v", err)
	}
	cfg = baseConfig()
	cfg.Listen = "nonsense"
	if _, err := proxy.New(proxy.Options{Service: "web", Config: &cfg}); err == nil {
		t.Fatal("New accepted listen: nonsense")
	}
}
