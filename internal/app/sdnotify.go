package app

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notifyReady tells a supervisor of medic itself (systemd with Type=notify,
// or anything that sets NOTIFY_SOCKET) that medic is serving: READY=1 with
// MAINPID, so that after a seamless upgrade systemd follows the new process.
// Without NOTIFY_SOCKET it does nothing.
func notifyReady() {
	daemon.SdNotify(false, fmt.Sprintf("READY=1\nMAINPID=%d\nSTATUS=serving", os.Getpid()))
}

// notifyStopping says that medic is stopping (STOPPING=1).
func notifyStopping() { daemon.SdNotify(false, daemon.SdNotifyStopping) }

// watchdog sends WATCHDOG=1 at half the interval systemd asks for
// (WatchdogSec= sets WATCHDOG_USEC), until ctx ends. alive reports whether
// medic's own loops still turn; a false skips the ping so that systemd kills
// and restarts a medic that hangs. Without a watchdog it waits for ctx all
// the same: it is a member of the run group, whose first member to return
// stops medic.
func watchdog(ctx context.Context, alive func() bool) error {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil || every <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if alive == nil || alive() {
				daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			}
		}
	}
}
