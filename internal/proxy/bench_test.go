package proxy_test

import (
	"bufio"
	"errors"
	"github.com/medic-dev/medic/internal/testutil/tcptest"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// BenchmarkProxyGET measures one proxied GET over keep-alive connections
// (go test -bench ProxyGET -benchmem ./internal/proxy).
func BenchmarkProxyGET(b *testing.B) {
	cfg := baseConfig()
	h := mustStart(b, cfg, nil)
	for i, name := range []string{"a", "b", "c"} {
		h.p.SetBackend("web/"+string(rune('0'+i)), backend(b, named(name)), true)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := c.Get(h.url + "/")
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	})
}

// BenchmarkHotPath measures the proxy alone on its hot path: a GET with a
// small response over a kept-alive connection, on each data plane. The
// client and the instance are raw sockets that allocate nothing, so
// allocs/op is the proxy's own (go test -bench HotPath -benchmem ./internal/proxy).
func BenchmarkHotPath(b *testing.B) {
	for _, plane := range []string{config.ProxyDataPlaneFast, config.ProxyDataPlaneNetHTTP} {
		b.Run(plane, func(b *testing.B) {
			cfg := baseConfig()
			cfg.DataPlane = plane
			h := mustStartLog(b, cfg, nil, slog.New(slog.DiscardHandler)) // the access log costs what logging costs
			h.p.SetBackend("web/0", tcptest.RawHTTP(b), true)
			req := []byte("GET /hot HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
			// serial: one kept-alive connection, so allocs/op is per request.
			b.Run("serial", func(b *testing.B) {
				conn, err := net.Dial("tcp", h.p.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				br := bufio.NewReaderSize(conn, 4096)
				b.ReportAllocs()
				cpu := cpuTime()
				for b.Loop() {
					if _, err := conn.Write(req); err != nil {
						b.Fatal(err)
					}
					if err := readRawResponse(br); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			})
			// parallel: 16 connections on 2 CPUs (throughput; allocs/op includes
			// the connections' buffers, amortised over the run).
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					conn, err := net.Dial("tcp", h.p.Addr().String())
					if err != nil {
						b.Error(err)
						return
					}
					defer conn.Close()
					br := bufio.NewReaderSize(conn, 4096)
					for pb.Next() {
						if _, err := conn.Write(req); err != nil {
							b.Error(err)
							return
						}
						if err := readRawResponse(br); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}

// readRawResponse reads one response with a Content-Length body.
func readRawResponse(br *bufio.Reader) error {
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && (line[0] == 'C' || line[0] == 'c') && strings.EqualFold(string(line[:15]), "Content-Length:") {
			n = 0
			for _, c := range line[15:] {
				if c >= '0' && c <= '9' {
					n = n*10 + int(c-'0')
				}
			}
		}
	}
	if n < 0 {
		return errors.New("response without Content-Length")
	}
	_, err := br.Discard(n)
	return err
}

// cpuTime is the process's CPU time so far (user and system), so that a
// benchmark reports CPU per call (cpu-ns/op) beside the wall time, which on
// a shared machine measures the machine. Here, as in the other data plane's
// benchmark, it includes the raw-socket client's and dependency's small share.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
