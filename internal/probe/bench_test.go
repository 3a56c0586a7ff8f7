package probe_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/probe"
)

// BenchmarkHTTPCheck measures one http probe check against a local
// instance, reporting the CPU time of the whole process (probe and
// instance) per check (go test -bench HTTPCheck -benchmem ./internal/probe).
func BenchmarkHTTPCheck(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer srv.Close()
	c := mustChecker(b, &config.Probe{HTTP: &config.HTTPProbe{Path: "/healthz"}}, probe.Target{Port: portOf(b, srv.Listener.Addr())})
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if o := c.Check(ctx); o.Health != medic.HealthSuccess {
			b.Fatalf("check: %+v", o)
		}
		cancel()
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/check")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
