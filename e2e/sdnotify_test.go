package e2e_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMedicNotifiesItsSupervisor: under systemd (Type=notify, WatchdogSec=)
// medic says READY=1 with its MAINPID once it serves, then WATCHDOG=1 at
// half the interval, and STOPPING=1 on SIGTERM. The test plays systemd's part
// with its own NOTIFY_SOCKET.
func TestMedicNotifiesItsSupervisor(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	apiPort := freePort(t, 1)
	cfg := filepath.Join(dir, "medic.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %s/data\napi: {listen: \"127.0.0.1:%d\"}\nservices: {}\n", dir, apiPort)), 0o644)
	cmd := exec.Command(medicBin, "run", "-c", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000")
	cmd.Stderr = &lockedBuffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	var msgs []string
	buf := make([]byte, 4096)
	deadline := time.Now().Add(10 * time.Second)
	watchdogs := 0
	for watchdogs < 2 && time.Now().Before(deadline) {
		conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if err != nil {
			break
		}
		m := string(buf[:n])
		msgs = append(msgs, m)
		if strings.Contains(m, "WATCHDOG=1") {
			watchdogs++
		}
	}
	all := strings.Join(msgs, "|")
	if !strings.Contains(all, "READY=1") || !strings.Contains(all, fmt.Sprintf("MAINPID=%d", cmd.Process.Pid)) || watchdogs < 2 {
		t.Fatalf("notify messages %q: want READY=1 with MAINPID=%d, then WATCHDOG=1 twice", msgs, cmd.Process.Pid)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no STOPPING=1 after SIGTERM: %v (saw %q)", err, msgs)
		}
		if strings.Contains(string(buf[:n]), "STOPPING=1") {
			break
		}
	}
}
