package egress_test

import (
	"bufio"
	"errors"
	"github.com/medic-dev/medic/internal/testutil/tcptest"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// BenchmarkHotPath measures a dependency listener alone on its hot path, as
// internal/proxy's BenchmarkHotPath measures the ingress proxy: a GET with a
// small answer over one kept-alive connection, from a raw-socket client to a
// raw-socket dependency that allocate nothing, so ns/op and allocs/op are the
// listener's own (go test -bench HotPath -benchmem ./internal/egress).
func BenchmarkHotPath(b *testing.B) {
	d := &config.Dependency{URL: "http://" + tcptest.RawHTTP(b)}
	_, addr, _ := startSet(b, d)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 4096)
	req := []byte("GET /hot HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readResponse(br); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

func readResponse(br *bufio.Reader) error {
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && strings.EqualFold(string(line[:15]), "Content-Length:") {
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
