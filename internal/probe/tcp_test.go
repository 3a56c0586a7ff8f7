package probe_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/probe"
)

func TestTCPConnects(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c := mustChecker(t, &config.Probe{TCP: &config.TCPProbe{Host: "127.0.0.1"}}, probe.Target{Port: portOf(t, l.Addr())})
	if o := c.Check(context.Background()); o.Health != medic.HealthSuccess {
		t.Fatalf("got %v %q, want success", o.Health, o.Detail)
	}
	<-accepted
}

func TestTCPRefused(t *testing.T) {
	c := mustChecker(t, &config.Probe{TCP: &config.TCPProbe{Port: closedPort(t)}}, probe.Target{Port: 1})
	o := c.Check(context.Background())
	if o.Health != medic.HealthFailure || !strings.Contains(o.Detail, "connection refused") {
		t.Fatalf("got %v %q, want failure: connection refused", o.Health, o.Detail)
	}
}

func TestTCPEndedContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := mustChecker(t, &config.Probe{TCP: &config.TCPProbe{}}, probe.Target{Port: portOf(t, l.Addr())})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if o := c.Check(ctx); o.Health != medic.HealthUnknown {
		t.Fatalf("cancelled: got %v %q, want unknown", o.Health, o.Detail)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 0)
	defer cancel()
	if o := c.Check(ctx); o.Health != medic.HealthFailure || !strings.HasPrefix(o.Detail, "timeout after") {
		t.Fatalf("deadline passed: got %v %q, want a timeout failure", o.Health, o.Detail)
	}
}
