package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// The per-connection deadline jitter must never move idle_timeout by more
// than a tenth of itself: with a jitter drawn from header_timeout alone, an
// idle_timeout shorter than a tenth of header_timeout put some keep-alive
// connections' idle deadline in the past, and they were closed right after
// their response (a request sent on one then fails). Both data planes.
func TestHTTPKeepAliveSurvivesShortIdleTimeout(t *testing.T) {
	for _, plane := range []string{config.ProxyDataPlaneFast, config.ProxyDataPlaneNetHTTP} {
		t.Run(plane, func(t *testing.T) {
			cfg := baseConfig()
			cfg.DataPlane = plane
			cfg.Limits.HeaderTimeout = dur(60 * time.Second) // main's jitter: ±6 s
			cfg.Limits.IdleTimeout = dur(2 * time.Second)
			h := mustStart(t, cfg, nil)
			h.p.SetBackend("web/0", backend(t, named("a")), true)

			const n = 20
			conns := make([]net.Conn, n)
			readers := make([]*bufio.Reader, n)
			get := func(i int) error {
				c := conns[i]
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					return err
				}
				res, err := http.ReadResponse(readers[i], nil)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || res.Close {
					return fmt.Errorf("status %d, close %v", res.StatusCode, res.Close)
				}
				return nil
			}
			for i := range conns {
				c, err := net.Dial("tcp", h.p.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns[i], readers[i] = c, bufio.NewReader(c)
				if err := get(i); err != nil {
					t.Fatalf("connection %d, first request: %v", i, err)
				}
			}
			// Idle for a quarter of idle_timeout: well inside it even with a
			// tenth of it as jitter; beyond it for about 44 % of the
			// connections with main's ±6 s.
			time.Sleep(500 * time.Millisecond)
			closed := 0
			for i := range conns {
				if err := get(i); err != nil {
					closed++
					t.Logf("connection %d, second request after 500ms idle: %v", i, err)
				}
			}
			if closed > 0 {
				t.Errorf("%d of %d keep-alive connections closed within 500ms of idle (idle_timeout 2s, header_timeout 60s)", closed, n)
			}
		})
	}
}
