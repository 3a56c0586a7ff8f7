package demoapp_test

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/demoapp"
)

func TestNotifyReadyWatchdogStopping(t *testing.T) {
	path, sock := notifySocket(t)
	s := mustServe(t, demoapp.Options{Getenv: env(map[string]string{
		"NOTIFY_SOCKET": path,
		"WATCHDOG_USEC": "20000", // WATCHDOG=1 every 10 ms
		"WATCHDOG_PID":  strconv.Itoa(os.Getpid()),
	})})
	if m := recv(t, sock, 5*time.Second); m != "READY=1" {
		t.Fatalf("first datagram = %q, want READY=1", m)
	}
	// READY=1 is sent once listening: the service answers now.
	if r := do(t, "GET", s.url+"/healthz/live"); r.code != 200 {
		t.Fatalf("live after READY=1 = %d", r.code)
	}
	for i := range 3 {
		if m := recv(t, sock, 5*time.Second); m != "WATCHDOG=1" {
			t.Fatalf("datagram %d after READY = %q, want WATCHDOG=1", i, m)
		}
	}
	do(t, "POST", s.url+"/fault/hang")
	// A keepalive in flight when the hang landed may still arrive; after that, silence.
	for recv(t, sock, 50*time.Millisecond) == "WATCHDOG=1" {
	}
	if m := recv(t, sock, 300*time.Millisecond); m != "" {
		t.Fatalf("datagram %q after hang, want none (a hung process must starve its watchdog)", m)
	}
	if err := s.stop(t); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if m := recv(t, sock, 5*time.Second); m != "STOPPING=1" {
		t.Fatalf("datagram at shutdown = %q, want STOPPING=1", m)
	}
}

func TestNotifyWatchdogForAnotherPID(t *testing.T) {
	path, sock := notifySocket(t)
	mustServe(t, demoapp.Options{Getenv: env(map[string]string{
		"NOTIFY_SOCKET": path,
		"WATCHDOG_USEC": "20000",
		"WATCHDOG_PID":  "1", // addressed to another process: not ours to pet
	})})
	if m := recv(t, sock, 5*time.Second); m != "READY=1" {
		t.Fatalf("first datagram = %q, want READY=1", m)
	}
	if m := recv(t, sock, 200*time.Millisecond); m != "" {
		t.Fatalf("datagram %q, want no watchdog for WATCHDOG_PID=1", m)
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := "@medic-demoapp-test-" + strconv.Itoa(os.Getpid())
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Skipf("abstract unix sockets unavailable: %v", err)
	}
	defer sock.Close()
	mustServe(t, demoapp.Options{Getenv: env(map[string]string{"NOTIFY_SOCKET": name})})
	if m := recv(t, sock, 5*time.Second); m != "READY=1" {
		t.Fatalf("datagram = %q, want READY=1", m)
	}
}

func TestNoNotifySocketNoMessages(t *testing.T) {
	// Without NOTIFY_SOCKET nothing is sent and nothing fails: WATCHDOG_USEC
	// alone must not start a loop that warns ten times a second.
	var logs lockedBuffer
	s := mustServe(t, demoapp.Options{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Getenv: env(map[string]string{"WATCHDOG_USEC": "20000"}),
	})
	if r := do(t, "GET", s.url+"/healthz/ready"); r.code != 200 {
		t.Fatalf("ready = %d", r.code)
	}
	time.Sleep(100 * time.Millisecond) // ten watchdog periods, for the negative check below
	if err := s.stop(t); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if strings.Contains(logs.String(), "sd_notify") || !strings.Contains(logs.String(), "demoapp stopped") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}

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
