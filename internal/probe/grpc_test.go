package probe_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/probe"
)

// startGRPC serves a real gRPC server on loopback until the test ends;
// register adds services to it.
func startGRPC(tb testing.TB, register func(*grpc.Server)) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(l)
	}()
	tb.Cleanup(func() {
		s.Stop()
		<-served
	})
	return portOf(tb, l.Addr())
}

func TestGRPCHealth(t *testing.T) {
	hs := health.NewServer() // the overall service "" is SERVING
	hs.SetServingStatus("web", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	port := startGRPC(t, func(s *grpc.Server) { healthpb.RegisterHealthServer(s, hs) })

	tests := []struct {
		service string
		want    medic.Health
		detail  string
	}{
		{"", medic.HealthSuccess, "grpc: SERVING"},
		{"web", medic.HealthSuccess, "grpc: SERVING"},
		{"db", medic.HealthFailure, "grpc: NOT_SERVING"},
		{"nope", medic.HealthFailure, `grpc: unknown health service "nope"`},
	}
	for _, tt := range tests {
		c := mustChecker(t, &config.Probe{GRPC: &config.GRPCProbe{Service: tt.service}}, probe.Target{Port: port})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		o := c.Check(ctx)
		cancel()
		if o.Health != tt.want || o.Detail != tt.detail {
			t.Errorf("service %q: got %v %q, want %v %q", tt.service, o.Health, o.Detail, tt.want, tt.detail)
		}
	}

	// The same checker follows the server's changes: no state is cached.
	c := mustChecker(t, &config.Probe{GRPC: &config.GRPCProbe{Service: "web"}}, probe.Target{Port: port})
	hs.SetServingStatus("web", healthpb.HealthCheckResponse_NOT_SERVING)
	if o := c.Check(context.Background()); o.Health != medic.HealthFailure {
		t.Errorf("after NOT_SERVING: got %v %q", o.Health, o.Detail)
	}
}

func TestGRPCWithoutHealthService(t *testing.T) {
	port := startGRPC(t, func(*grpc.Server) {})
	c := mustChecker(t, &config.Probe{GRPC: &config.GRPCProbe{}}, probe.Target{Port: port})
	if o := c.Check(context.Background()); o.Health != medic.HealthFailure || !strings.Contains(o.Detail, "does not implement") {
		t.Fatalf("got %v %q, want failure: not implemented", o.Health, o.Detail)
	}
}

func TestGRPCRefusedFailsFast(t *testing.T) {
	c := mustChecker(t, &config.Probe{GRPC: &config.GRPCProbe{Port: closedPort(t)}}, probe.Target{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	o := c.Check(ctx)
	if o.Health != medic.HealthFailure || !strings.Contains(o.Detail, "Unavailable") {
		t.Fatalf("got %v %q, want an Unavailable failure", o.Health, o.Detail)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a refused connection took %v: the RPC waited instead of failing fast", took)
	}
}

// A server that accepts connections but never speaks HTTP/2 is cut at the deadline.
func TestGRPCTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		l.Close()
		<-accepted
		for _, c := range held {
			c.Close()
		}
	}()
	c := mustChecker(t, &config.Probe{GRPC: &config.GRPCProbe{}}, probe.Target{Port: portOf(t, l.Addr())})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	wantTimeout(t, c.Check(ctx), 200*time.Millisecond)
}
