package demoapp

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// notifier sends sd_notify datagrams to NOTIFY_SOCKET. A nil notifier (no
// socket configured) sends nothing and reports no error, as sd_notify(3) does.
type notifier struct {
	addr *net.UnixAddr
}

// newNotifier returns nil unless NOTIFY_SOCKET names a socket. A leading "@"
// is Linux's abstract namespace, written as a NUL byte on the wire.
func newNotifier(getenv func(string) string) *notifier {
	path := getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	}
	return &notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// send writes one datagram such as "READY=1". A fresh socket per message, as
// sd_notify does: the receiver may have been restarted since the last one.
func (n *notifier) send(state string) error {
	if n == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("dial NOTIFY_SOCKET %q: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("send %q to NOTIFY_SOCKET %q: %w", state, n.addr.Name, err)
	}
	return nil
}

// watchdogInterval is half of WATCHDOG_USEC (systemd's advice), or 0 when the
// watchdog is off or addressed to another process (WATCHDOG_PID).
func watchdogInterval(getenv func(string) string, pid int) time.Duration {
	usec, err := strconv.ParseUint(getenv("WATCHDOG_USEC"), 10, 63)
	if err != nil || usec == 0 {
		return 0
	}
	if p := getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(pid) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// watchdogLoop sends WATCHDOG=1 every interval until ctx ends or the hang
// fault is set: a hung process must look hung to its supervisor's watchdog too.
func (a *App) watchdogLoop(ctx context.Context, n *notifier, every time.Duration) {
	warned := false
	for {
		t := a.clock.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		if a.faults.hung.Load() {
			a.log.Warn("demoapp: hung: watchdog stops")
			return
		}
		if err := n.send("WATCHDOG=1"); err != nil && !warned {
			a.log.Warn("demoapp: sd_notify WATCHDOG=1 failed; further failures are not logged", "err", err)
			warned = true
		}
	}
}
