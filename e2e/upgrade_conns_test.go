package e2e_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// keptConn is a client connection through a proxy that sends HTTP/1.1
// requests one after another on the same connection.
type keptConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialKept(t *testing.T, addr string) *keptConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return &keptConn{c: c, br: bufio.NewReader(c)}
}

// get sends one request on the connection and reads the whole answer.
func (k *keptConn) get() error {
	k.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: medic-e2e\r\n\r\n"); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// TestUpgradeKeepsEstablishedConnections: `medic upgrade` does not cut the
// connections the old medic holds. Through a TCP proxy, an idle connection
// and an active one (a request every 20 ms) are kept across the handover and
// keep working; the old medic stops accepting (new connections reach the new
// medic), keeps piping the ones it holds, and exits once they ended.
func TestUpgradeKeepsEstablishedConnections(t *testing.T) {
	dir := t.TempDir()
	tcpPort := freePort(t, 1)
	cfg := strings.ReplaceAll(`
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d"}
services:
  db:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 2
    port: %[3]d
    probes:
      readiness: {http: {path: /healthz/ready}, period: 100ms, timeout: 100ms}
    proxy: {listen: "127.0.0.1:TCPPORT", mode: tcp}
`, "TCPPORT", strconv.Itoa(tcpPort))
	a := startAgentIn(t, dir, cfg)
	a.eventually(15*time.Second, "2 instances ready", func() bool {
		doc, ok := statusOf(a.addr)
		return ok && len(doc.Services) == 1 && doc.Services[0].Ready == 2
	})
	oldPID := a.cmd.Process.Pid
	pidFile := filepath.Join(dir, "data", "medic.pid")
	t.Cleanup(func() {
		if pid, err := readPIDFile(pidFile); err == nil && pid != oldPID {
			syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 600 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", tcpPort)
	idle := dialKept(t, addr)
	defer idle.c.Close()
	if err := idle.get(); err != nil {
		t.Fatalf("idle connection, first request: %v", err)
	}
	active := dialKept(t, addr)
	defer active.c.Close()
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		okN      atomic.Int64
		firstErr atomic.Value
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; n < 5000 && !stop.Load(); n++ {
			if err := active.get(); err != nil {
				firstErr.CompareAndSwap(nil, fmt.Sprintf("request %d: %v", n, err))
				return
			}
			okN.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	t0 := time.Now()
	out, err := a.medic("upgrade", "-c", a.cfg)
	if err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("medic upgrade: %v\n%s\nagent stderr:\n%s", err, out, tail(a.stderr.String(), 3000))
	}
	took := time.Since(t0)
	newPID, err := readPIDFile(pidFile)
	if err != nil || newPID == oldPID {
		t.Fatalf("pid file after the upgrade: %d %v", newPID, err)
	}
	if syscall.Kill(oldPID, 0) != nil || isZombie(oldPID) {
		t.Fatalf("the old medic exited while it held 2 established connections: they were cut")
	}
	// New connections reach the new medic.
	fresh := dialKept(t, addr)
	if err := fresh.get(); err != nil {
		t.Fatalf("a new connection after the upgrade: %v", err)
	}
	fresh.c.Close()
	time.Sleep(500 * time.Millisecond)
	if err := idle.get(); err != nil {
		t.Fatalf("the idle connection after the upgrade: %v", err)
	}
	stop.Store(true)
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		t.Fatalf("the active connection failed across the upgrade: %v", e)
	}
	t.Logf("figures: upgrade with 2 established TCP-proxied connections: medic upgrade took %v; the active one answered %d requests, 0 failed; the idle one answered after the handover",
		took.Round(time.Millisecond), okN.Load())
	// Once they end, the old medic exits.
	idle.c.Close()
	active.c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(oldPID, 0) == nil && !isZombie(oldPID) {
		if time.Now().After(deadline) {
			t.Fatalf("the old medic (pid %d) still runs 10s after its last connection ended", oldPID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
