package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/app"
	"github.com/medic-dev/medic/internal/config"
)

// TestDemoDrillSuite runs the demo's drill suite against an agent like the
// demo's (three demoapp instances behind the proxy) and expects every drill
// to pass.
func TestDemoDrillSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds medic and runs four drills (about 40s)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "medic")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build medic: %v\n%s", err, out)
	}
	token, err := demoDrillToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	port, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	cfgText := fmt.Sprintf(`data_dir: %s
api: {listen: "127.0.0.1:0", tokens_file: tokens.yaml}
services:
  web:
    command: [%q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 3
    port: %d
    stop: {signal: TERM, grace: 2s}
    proxy: {listen: "127.0.0.1:0", try_timeout: 300ms}
    drills: {allow: true}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 500ms, timeout: 300ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 250ms, timeout: 200ms, failure_threshold: 1}
`, filepath.Join(dir, "data"), bin, port)
	path := filepath.Join(dir, "medic.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan net.Addr, 1)
	m := &app.Main{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Listening: func(a net.Addr) { addr <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var a net.Addr
	select {
	case a = <-addr:
	case err := <-done:
		t.Fatalf("agent: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent API not up")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ready := 0
		for _, s := range m.Proxies() {
			for _, is := range s.Instances {
				if is.Ready {
					ready++
				}
			}
		}
		if ready == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d instances ready", ready)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := demoDrills(ctx, a.String(), token, "web"); err != nil {
		t.Fatal(err)
	}
}
