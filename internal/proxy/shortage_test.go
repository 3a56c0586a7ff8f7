package proxy_test

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
)

// A connection medic cannot open to an instance because medic itself is out
// of descriptors says nothing about the instance: no ejection (it was
// ejected after consecutive_errors such tries, as if it had failed).
func TestOwnShortageNeverEjects(t *testing.T) {
	cfg := baseConfig()
	cfg.Mode = config.ProxyModeTCP
	p, err := proxy.New(proxy.Options{Service: "web", Config: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	proxy.DialControl(p, func(string, string, syscall.RawConn) error { return syscall.EMFILE })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	h := &harness{p: p}
	h.p.SetBackend("web/0", backend(t, named("a")), true)
	for range 10 {
		c, err := net.Dial("tcp", h.p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, c) // medic closes it: no instance could be reached
		c.Close()
	}
	in := instance(h.p.Stats(), "web/0")
	if in.Ejections != 0 || !in.InRotation {
		t.Fatalf("after 10 tries medic could not make for want of descriptors: %+v; want not ejected, in rotation", in)
	}
}
