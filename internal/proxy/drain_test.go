package proxy_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// blocker answers name once release is closed, signalling started on arrival.
func blocker(name string, started chan<- struct{}, release <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		named(name)(w, r)
	}
}

func TestDrainInstance(t *testing.T) {
	h := mustStart(t, baseConfig(), nil)
	started, release := make(chan struct{}, 1), make(chan struct{})
	h.p.SetBackend("web/0", backend(t, blocker("a", started, release)), true)
	c := client(t)

	inflight := make(chan result, 1)
	go func() { inflight <- do(c, http.MethodGet, h.url+"/", nil, nil) }()
	<-started
	h.p.SetBackend("web/1", backend(t, named("b")), true)

	drained := make(chan error, 1)
	go func() { drained <- h.p.Drain(context.Background(), "web/0") }()
	eventually(t, 5*time.Second, "web/0 draining", func() bool { return instance(h.p.Stats(), "web/0").Draining })

	// New requests avoid the draining instance; the drain waits for the one in flight.
	for i := range 20 {
		if r := do(c, http.MethodGet, h.url+"/", nil, nil); r.body != "b" {
			t.Fatalf("request %d during the drain: %d %q", i, r.status, r.body)
		}
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if r := <-inflight; r.status != 200 || r.body != "a" {
		t.Fatalf("in-flight request on the draining instance: %d %q %v", r.status, r.body, r.err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}

	// A drain bounded by its context reports what remains.
	started2, release2 := make(chan struct{}, 1), make(chan struct{})
	defer close(release2)
	h.p.SetBackend("web/2", backend(t, blocker("c", started2, release2)), true)
	h.p.Drain(context.Background(), "web/1")
	go do(c, http.MethodGet, h.url+"/", nil, nil)
	<-started2
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.p.Drain(ctx, "web/2"); err == nil {
		t.Fatal("Drain returned nil with a request still in flight past its deadline")
	}
	if err := h.p.Drain(context.Background(), "web/9"); err == nil {
		t.Fatal("Drain of an unknown instance returned nil")
	}
}

func TestServeDrainsOnStop(t *testing.T) {
	h := mustStart(t, baseConfig(), nil)
	started, release := make(chan struct{}, 1), make(chan struct{})
	h.p.SetBackend("web/0", backend(t, blocker("a", started, release)), true)
	c := client(t)
	inflight := make(chan result, 1)
	go func() { inflight <- do(c, http.MethodGet, h.url+"/", nil, nil) }()
	<-started

	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	// The listener closes at once: new connections are refused while the old request runs.
	eventually(t, 5*time.Second, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", h.p.Addr().String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case <-stopped:
		t.Fatal("Serve returned with a request in flight")
	default:
	}
	close(release)
	if r := <-inflight; r.status != 200 || r.body != "a" {
		t.Fatalf("in-flight request during stop: %d %q %v", r.status, r.body, r.err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the in-flight request completed")
	}
}
