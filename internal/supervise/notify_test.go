package supervise_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
)

// TestMain lets the test binary act as an sd_notify service when
// MEDIC_NOTIFY_CHILD names a directory: READY=1 after 100ms, then WATCHDOG=1
// every 50ms until the file "silence" appears there.
func TestMain(m *testing.M) {
	if dir := os.Getenv("MEDIC_NOTIFY_CHILD"); dir != "" {
		notifyChild(dir)
		return
	}
	os.Exit(m.Run())
}

func notifyChild(dir string) {
	conn, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		os.Exit(3)
	}
	time.Sleep(100 * time.Millisecond)
	conn.Write([]byte("READY=1\nSTATUS=up"))
	for i := 0; i < 2000; i++ { // bounded: 100 s at most
		if _, err := os.Stat(filepath.Join(dir, "silence")); err != nil {
			conn.Write([]byte("WATCHDOG=1"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSdNotifyReadyAndWatchdog(t *testing.T) {
	dir := t.TempDir()
	svc := service("")
	svc.Command = []string{os.Args[0]}
	svc.Env = map[string]string{"MEDIC_NOTIFY_CHILD": dir}
	svc.Notify = &config.Notify{Ready: true, Watchdog: dur(400 * time.Millisecond)}
	svc.Stop.Grace = dur(200 * time.Millisecond)
	s, rec := start(t, map[string]*config.Service{"web": svc}, nil)
	eventually(t, 15*time.Second, "ready by READY=1", func() bool {
		st := instance(s, "web", 0)
		return st.Ready && st.Notified
	})
	// Healthy heartbeats for a while: no restart.
	time.Sleep(600 * time.Millisecond)
	if n := rec.count(medic.EventRestart, "web/0"); n != 0 {
		t.Fatalf("restarted %d times while the watchdog was fed", n)
	}
	first := instance(s, "web", 0).PID
	os.WriteFile(filepath.Join(dir, "silence"), nil, 0o644)
	eventually(t, 15*time.Second, "watchdog restart", func() bool { return rec.count(medic.EventRestart, "web/0") > 0 })
	ev, _ := rec.find(medic.EventRestart, "web/0")
	if !strings.Contains(ev.Reason, "watchdog timeout") {
		t.Fatalf("restart reason %q: want the watchdog", ev.Reason)
	}
	if alive(first) {
		t.Fatalf("silent process %d still alive", first)
	}
}
