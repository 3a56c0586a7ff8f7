package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/testutil/flood"
)

// The control of the flood figure (bench/flood.sh CONTROL=haproxy): HAProxy
// fronts the same 3 demoapp instances as medic's HTTP proxy, with limits as
// close to medic's proxy defaults as HAProxy has them (9 000 connections:
// HAProxy needs two descriptors each and the machine's limit is 20 000;
// 1 000 per source, headers within 10 s, keep-alive 2 min, defer-accept),
// and is flooded in its own phase exactly as medic's listeners are. The
// client measures every path in every phase, so the machine's own cost of a
// flooder dialling on the same cores (the control's phase, seen through
// medic's proxy and straight to an instance) is told apart from the cost of
// the flooded listener.
const haproxyConfig = `global
    maxconn 9000
    nbthread 2
defaults
    mode http
    timeout connect 1s
    timeout client 2m
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 2m
frontend control
    bind 127.0.0.1:%d defer-accept
    maxconn 9000
    stick-table type ip size 100k expire 30s store conn_cur
    tcp-request connection track-sc0 src
    tcp-request connection reject if { sc0_conn_cur gt 1000 }
    default_backend demo
backend demo
    balance roundrobin
    http-reuse safe
%s`

type haproxyRun struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

// startHAProxy runs haproxy in the foreground on port, in front of the
// backends; it is stopped by PID when the test ends.
func startHAProxy(t *testing.T, port int, backends []int) *haproxyRun {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("haproxy is missing: the flood's control (MEDIC_FLOOD_CONTROL=haproxy) needs it")
		}
		t.Skip("haproxy is missing: the flood's control (MEDIC_FLOOD_CONTROL=haproxy) needs it; run with CONTROL= to go without")
	}
	var servers strings.Builder
	for i, p := range backends {
		fmt.Fprintf(&servers, "    server s%d 127.0.0.1:%d\n", i, p)
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(haproxyConfig, port, servers.String())), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &haproxyRun{cmd: exec.Command(bin, "-db", "-f", cfg), out: &bytes.Buffer{}, done: make(chan struct{})}
	h.cmd.Stdout, h.cmd.Stderr = h.out, h.out
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			h.cmd.Process.Kill()
			<-h.done
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return h
		}
		select {
		case <-h.done:
			t.Fatalf("haproxy exited: %v\n%s", h.cmd.ProcessState, h.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not listening on %d after 10s: %v\n%s", port, err, h.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// path is one way the client reaches the demoapp instances.
type path struct{ name, url string }

// measure runs the client's load at rate over every path at once for d.
func measure(ctx context.Context, paths []path, rate int, d time.Duration) []flood.Result {
	res := make([]flood.Result, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = flood.Load{URL: p.url, Rate: rate, Duration: d}.Run(ctx)
		}()
	}
	wg.Wait()
	return res
}

// ratio is p99/normal p99 as "12.3×".
func ratio(p99, normal time.Duration) string {
	if normal <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f×", float64(p99)/float64(normal))
}
