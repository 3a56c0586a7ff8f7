// Package amtest runs the real Alertmanager (Debian's prometheus-alertmanager)
// for integration tests: on loopback, clustering off, every alert routed at
// once to one webhook, stopped by PID when the test ends.
package amtest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/ports"
)

// Bin finds the real Alertmanager: $MEDIC_ALERTMANAGER, or Debian's package
// prometheus-alertmanager. It skips the test when it is missing, unless
// MEDIC_REQUIRE_INTEGRATION=1, which turns the skip into a failure.
func Bin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("MEDIC_ALERTMANAGER")
	if bin == "" {
		bin = "/usr/bin/prometheus-alertmanager"
		if p, err := exec.LookPath("prometheus-alertmanager"); err == nil {
			bin = p
		}
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("Alertmanager not found at %s (%v): install the Debian package prometheus-alertmanager "+
			"(apt-get install -y prometheus-alertmanager) or set MEDIC_ALERTMANAGER", bin, err)
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// Start runs Alertmanager sending every alert (and its resolution) to
// webhookURL, with a bearer token when token is not empty. It returns the
// base URL of Alertmanager's API.
func Start(t testing.TB, webhookURL, token string) string {
	t.Helper()
	bin := Bin(t)
	dir := t.TempDir()
	auth := ""
	if token != "" {
		auth = fmt.Sprintf("\n        http_config: {authorization: {type: Bearer, credentials: %q}}", token)
	}
	cfg := fmt.Sprintf(`route:
  receiver: medic
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: medic
    webhook_configs:
      - url: %s
        send_resolved: true%s
`, webhookURL, auth)
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=debug")
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("alertmanager exited before it was ready: %v\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready at %s after 30s (last error %v)\n%s", base, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Post sends alerts (a JSON list) to Alertmanager's API v2.
func Post(t testing.TB, base, body string) {
	t.Helper()
	resp, err := http.Post(base+"/api/v2/alerts", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("post alert: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("post alert: status %s: %s", resp.Status, msg)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	p, err := ports.Free(1)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// lockedBuffer collects a process's output from exec's copying goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
