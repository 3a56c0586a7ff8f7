// Package etcdtest starts a real etcd server for tests, and a TCP link in
// front of it that a test can cut to partition an agent from etcd.
//
// Tests that need etcd skip with a message naming the missing binary, unless
// MEDIC_REQUIRE_INTEGRATION=1 (CI), where a missing binary fails them.
package etcdtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/medic-dev/medic/internal/ports"
)

// Server is a running etcd.
type Server struct {
	Endpoint string // host:port of the client URL
	URL      string // the client URL: http://host:port, or https://host:port with TLS
	cmd      *exec.Cmd
	done     chan struct{}
	tls      *tls.Config // how waitReady connects; nil for plaintext
	bin      string
	args     []string
	logPath  string
}

// Require skips (or, with MEDIC_REQUIRE_INTEGRATION=1, fails) tb when bin is
// not installed, and returns its path.
func Require(tb testing.TB, bin, pkg string) string {
	tb.Helper()
	path, err := exec.LookPath(bin)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found (install the Debian package %s)", bin, pkg)
	if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
	return ""
}

// FreePort returns a loopback port free at the time of the call, for servers
// that cannot be told to listen on port 0.
func FreePort(tb testing.TB) int {
	tb.Helper()
	p, err := ports.Free(1)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// Start runs an etcd server in a temporary directory until the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, nil)
}

// StartTLS runs an etcd server like Start, whose client URL is https and
// requires a client certificate signed by pki's CA (--cert-file, --key-file,
// --trusted-ca-file, --client-cert-auth). The peer URL stays plaintext: the
// cluster has one member.
func StartTLS(tb testing.TB, pki *PKI) *Server {
	tb.Helper()
	return start(tb, pki)
}

func start(tb testing.TB, pki *PKI) *Server {
	tb.Helper()
	bin := Require(tb, "etcd", "etcd-server")
	dir := tb.TempDir()
	cport, pport := FreePort(tb), FreePort(tb)
	scheme := "http"
	var clientTLS *tls.Config
	if pki != nil {
		scheme = "https"
		var err error
		if clientTLS, err = pki.clientConfig(); err != nil {
			tb.Fatal(err)
		}
	}
	curl := fmt.Sprintf("%s://127.0.0.1:%d", scheme, cport)
	purl := fmt.Sprintf("http://127.0.0.1:%d", pport)
	log, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		tb.Fatal(err)
	}
	args := []string{"--name", "test", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", curl, "--advertise-client-urls", curl,
		"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
		"--initial-cluster", "test=" + purl, "--log-level", "warn"}
	if pki != nil {
		args = append(args, "--cert-file", pki.ServerCert, "--key-file", pki.ServerKey,
			"--trusted-ca-file", pki.CA, "--client-cert-auth")
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start etcd: %v", err)
	}
	s := &Server{Endpoint: fmt.Sprintf("127.0.0.1:%d", cport), URL: curl, cmd: cmd, done: make(chan struct{}), tls: clientTLS,
		bin: bin, args: args, logPath: log.Name()}
	go func() { cmd.Wait(); log.Close(); close(s.done) }()
	tb.Cleanup(s.Stop)
	if err := s.waitReady(15 * time.Second); err != nil {
		b, _ := os.ReadFile(log.Name())
		tb.Fatalf("etcd did not become ready: %v\n%s", err, tail(string(b), 2000))
	}
	return s
}

func (s *Server) waitReady(within time.Duration) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: time.Second, TLS: s.tls,
		Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("etcd exited: %v", s.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond) // polling a deadline for an external process
	}
}

// Restart starts a stopped server again on the same ports and data: an
// etcd back from an outage (it extends every lease it holds by its TTL).
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	log, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("restart etcd: %v", err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	go func() { cmd.Wait(); log.Close(); close(done) }()
	if err := s.waitReady(15 * time.Second); err != nil {
		b, _ := os.ReadFile(s.logPath)
		tb.Fatalf("etcd did not become ready after a restart: %v\n%s", err, tail(string(b), 2000))
	}
}

// Stop ends the server (TERM, then KILL after 5s) and waits for it.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
