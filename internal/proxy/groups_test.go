package proxy_test

import (
	"bufio"
	"github.com/medic-dev/medic/internal/testutil/tcptest"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
)

// TestDataPlanesHonourGroups runs the same deploy sequence through a proxy
// on each data plane: weights split the first tries exactly (smooth
// weighted round robin), a canary's 503 is retried on stable so the client
// sees 200 while the canary's group counts the 503, and a blue-green
// switch moves every following request in one call.
func TestDataPlanesHonourGroups(t *testing.T) {
	for _, dp := range []string{config.ProxyDataPlaneFast, config.ProxyDataPlaneNetHTTP} {
		t.Run(dp, func(t *testing.T) {
			cfg := baseConfig()
			cfg.DataPlane = dp
			h := mustStart(t, cfg, nil)
			var canaryHits atomic.Int64
			canary := func(w http.ResponseWriter, r *http.Request) {
				if canaryHits.Add(1)%3 == 0 { // a third of its answers: below every ejection rule
					w.WriteHeader(503)
					return
				}
				named("canary")(w, r)
			}
			h.p.SetBackend("web/0", backend(t, named("stable")), true)
			mustNoErr(t, h.p.SetGroup("web/1", "canary"))
			h.p.SetBackend("web/1", backend(t, canary), true)
			mustNoErr(t, h.p.SetGroup("web/2", "green"))
			h.p.SetBackend("web/2", backend(t, named("green")), true)
			mustNoErr(t, h.p.SetWeights(proxy.Weights{Groups: []proxy.GroupWeight{{Group: proxy.DefaultGroup, Weight: 3}, {Group: "canary", Weight: 1}}}))

			c := client(t)
			var got strings.Builder
			for range 40 {
				r := do(c, "GET", h.url+"/", nil, nil)
				if r.err != nil || r.status != 200 {
					t.Fatalf("GET: %d %v", r.status, r.err)
				}
				got.WriteString(r.body[:1])
			}
			// 10 canary tries; each third answered 503 and was retried on stable.
			if n := strings.Count(got.String(), "c"); n != 7 {
				t.Errorf("%d of 40 answered by the canary (%s), want 7 (10 tries, 3 retried on stable)", n, got.String())
			}
			if n := strings.Count(got.String(), "g"); n != 0 {
				t.Errorf("green (weight 0) answered %d", n)
			}
			gs := groupsByName(h.p.Stats().Groups)
			if g := gs["canary"]; g.Requests != 10 || g.ByClass[5] != 3 || g.ByClass[2] != 7 {
				t.Errorf("canary group %+v, want 10 tries: 7 2xx, 3 5xx", g)
			}
			if g := gs[proxy.DefaultGroup]; g.Requests != 33 || g.ByClass[2] != 33 {
				t.Errorf("stable group %+v, want 33 2xx (30 firsts + 3 retries)", g)
			}
			out, next, lost := h.p.GroupOutcomes(nil, "canary", 0)
			if len(out) != 10 || next != 10 || lost != 0 {
				t.Errorf("canary outcomes: %d, next %d, lost %d", len(out), next, lost)
			}
			for _, o := range out {
				if o.Latency <= 0 || (o.Status != 200 && o.Status != 503) {
					t.Errorf("canary outcome %+v", o)
				}
			}

			// Blue-green: one call moves every following request.
			mustNoErr(t, h.p.SetWeights(proxy.Weights{Groups: []proxy.GroupWeight{{Group: proxy.DefaultGroup, Weight: 0}, {Group: "green", Weight: 100}}}))
			for range 10 {
				if r := do(c, "GET", h.url+"/", nil, nil); r.body != "green" {
					t.Fatalf("after the switch: %q %v", r.body, r.err)
				}
			}
		})
	}
}

func groupsByName(gs []proxy.GroupStats) map[string]proxy.GroupStats {
	m := map[string]proxy.GroupStats{}
	for _, g := range gs {
		m[g.Group] = g
	}
	return m
}

func mustNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkHotPathWeighted is BenchmarkHotPath's serial fast case with two
// weighted groups: the group choice allocates nothing
// (go test -run '^$' -bench HotPathWeighted -benchmem ./internal/proxy).
func BenchmarkHotPathWeighted(b *testing.B) {
	cfg := baseConfig()
	h := mustStartLog(b, cfg, nil, slog.New(slog.DiscardHandler))
	h.p.SetBackend("web/0", tcptest.RawHTTP(b), true)
	if err := h.p.SetGroup("web/1", "canary"); err != nil {
		b.Fatal(err)
	}
	h.p.SetBackend("web/1", tcptest.RawHTTP(b), true)
	if err := h.p.SetWeights(proxy.Weights{Groups: []proxy.GroupWeight{{Group: proxy.DefaultGroup, Weight: 95}, {Group: "canary", Weight: 5}}}); err != nil {
		b.Fatal(err)
	}
	req := []byte("GET /hot HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	conn, err := net.Dial("tcp", h.p.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readRawResponse(br); err != nil {
			b.Fatal(err)
		}
	}
}
