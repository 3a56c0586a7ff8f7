package pgha

import (
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// watchdogScript runs beside every postgres the agent starts, in a process
// group of its own. It reads deadlines (seconds, fractional) from the
// agent on stdin; when a deadline passes without a new line, or stdin ends
// because the agent died, it kills postgres (immediate shutdown, then
// SIGKILL to its process group). "off" waits without a deadline (a
// replica), "exit" ends it without killing (postgres stopped on purpose).
// "handover S" comes from an agent that hands postgres over to the next
// medic (an upgrade) and will exit: the watchdog no longer reads, and kills
// postgres S seconds later unless the next medic, which arms a watchdog of
// its own, ends this one first; "handover off" ends it (a replica).
//
// This is the fence for the cases the agent cannot handle itself: an agent
// SIGKILLed while its postgres lives on, or one stopped (SIGSTOP, swapped
// out) past its lease. A primary's deadline is the moment the agent would
// fence itself, a retry_timeout before the lease can expire.
const watchdogScript = `
pid=$1; t=""
while :; do
  if [ -z "$t" ]; then read -r line || break; else read -r -t "$t" line || break; fi
  case "$line" in
    exit|"handover off") exit 0 ;;
    handover\ *) sleep "${line#handover }"; break ;;
    off) t="" ;;
    *) t="$line" ;;
  esac
done
kill -QUIT "$pid" 2>/dev/null
for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
kill -KILL -- "-$pid" 2>/dev/null
`

type watchdog struct {
	mu  sync.Mutex
	w   io.WriteCloser
	cmd *exec.Cmd
	log *slog.Logger
}

// startWatchdog starts the watchdog of postmaster pid; a failure to start
// it is logged and leaves a watchdog that does nothing.
func startWatchdog(pid int, log *slog.Logger) *watchdog {
	wd := &watchdog{log: log}
	cmd := exec.Command("/bin/bash", "-c", watchdogScript, "medic-pg-watchdog", strconv.Itoa(pid))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		log.Error("postgres watchdog not started: an agent killed while postgres runs leaves it unfenced", "err", err)
		return wd
	}
	wd.w, wd.cmd = w, cmd
	go cmd.Wait() // reaped here; its exit needs no handling
	return wd
}

func (wd *watchdog) send(line string) {
	if wd == nil {
		return
	}
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.w == nil {
		return
	}
	if _, err := io.WriteString(wd.w, line+"\n"); err != nil {
		wd.log.Warn("postgres watchdog unreachable", "err", err)
	}
}

// arm sets the deadline d from now.
func (wd *watchdog) arm(d time.Duration) {
	wd.send(fmt.Sprintf("%.3f", max(d.Seconds(), 0.001)))
}

func (wd *watchdog) disarm() { wd.send("off") }

// handover leaves the watchdog to fence at left from now without the
// agent (left <= 0: it ends); see watchdogScript.
func (wd *watchdog) handover(left time.Duration) {
	if left <= 0 {
		wd.send("handover off")
	} else {
		wd.send(fmt.Sprintf("handover %.3f", left.Seconds()))
	}
	if wd == nil {
		return
	}
	wd.mu.Lock()
	if wd.w != nil {
		wd.w.Close()
		wd.w = nil
	}
	wd.mu.Unlock()
}

// exit ends the watchdog without killing.
func (wd *watchdog) exit() {
	if wd == nil {
		return
	}
	wd.send("exit")
	wd.mu.Lock()
	if wd.w != nil {
		wd.w.Close()
		wd.w = nil
	}
	wd.mu.Unlock()
}
