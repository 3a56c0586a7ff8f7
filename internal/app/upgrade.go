package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cloudflare/tableflip"

	"github.com/medic-dev/medic"
)

// The upgrade protocol (cloudflare/tableflip, the pattern of HAProxy's and
// nginx's seamless reloads):
//
//  1. `medic upgrade` (or SIGUSR2 to the agent) makes the running medic start
//     the binary now at its path with the same arguments, passing it a
//     duplicate of every listening socket — the API, every proxy listener (HTTP,
//     TCP and database), in the order they were created — and a pipe.
//  2. The new medic takes each listener by (network, address) instead of
//     binding, and adopts the instances from processes.json as after a crash
//     (pidfd + start time + same spec). Its proxies start accepting only once
//     every instance is ready again (bounded by UpgradeWarmup); until then the
//     old medic keeps accepting on the same sockets. Then it writes medic.pid,
//     says READY=1 with its MAINPID to systemd, and tells the old medic
//     through the pipe.
//  3. The old medic stops its loops and its supervisor first (every instance
//     is left running, now the new medic's: a handover, audited) and stops
//     accepting, but keeps serving the connections it holds, for at most each
//     proxy's handover_drain (default 5m): in-flight HTTP requests finish and
//     are answered with Connection: close, idle keep-alive connections are
//     closed, TCP connections keep piping to the same instances (which stay
//     its proxies' backends) until they end; so do the database listeners'
//     connections (databases.*.proxy.handover_drain). Its database members
//     stop their loops and leave postgres running with the lease kept and a
//     handover record; the new medic's members wait for that record before
//     their loops start, and adopt postgres and the lease (pgha.Agent.HandOver,
//     docs/failover.md). Then it exits. If the new medic
//     fails or is not ready within UpgradeTimeout, the old one kills it and
//     keeps serving.
//
// A crash of medic is the same path without the handover: the next medic
// (systemd's Restart=always, or `medic run --supervise-self`) binds afresh and
// adopts the instances; clients see refused connections meanwhile.

// UpgradeTimeout bounds how long the old medic waits for the new one to be
// ready before it gives up the upgrade and keeps serving. 30s.
const UpgradeTimeout = 30 * time.Second

// UpgradeWarmup bounds how long a new medic waits for the adopted instances
// to be ready before its proxies accept connections. 5s.
const UpgradeWarmup = 5 * time.Second

// AdoptWarmup bounds how long a medic that starts after a crash (and adopts
// the instances of the last one) holds its proxies' connections in their
// listen queues for the adopted instances to be routed again. Instances
// ready before the crash are routed at adoption, before any probe. 1s.
const AdoptWarmup = time.Second

// PIDFile is where a serving medic writes its pid, in data_dir.
const PIDFile = "medic.pid"

// errHandedOver ends the run group after a successful upgrade.
var errHandedOver = errors.New("handed over to the new medic")

// handover owns the listeners that a seamless upgrade passes on.
type handover struct {
	upg *tableflip.Upgrader // nil: no upgrades (in-process agents in tests)
}

func newHandover(dataDir string, enabled bool) (*handover, error) {
	if !enabled {
		return &handover{}, nil
	}
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: UpgradeTimeout, PIDFile: filepath.Join(dataDir, PIDFile)})
	if err != nil {
		return nil, fmt.Errorf("prepare for seamless upgrades: %w", err)
	}
	return &handover{upg: upg}, nil
}

// listen is the one place where medic binds a listening socket: inherited
// from the previous medic during an upgrade, else bound anew (and kept for
// the next upgrade). Callers wrap the raw listener as they need.
func (h *handover) listen(network, addr string) (net.Listener, error) {
	if h.upg == nil {
		return listenTCP(network, addr)
	}
	return h.upg.ListenWithCallback(network, addr, listenTCP)
}

// listenTCP binds a plain TCP listener: Go makes listeners MPTCP by default
// where the kernel has it, and an MPTCP socket refuses the socket filter
// with which netguard drops a flooding source's connections in the kernel
// (EOPNOTSUPP). A local proxy and API gain nothing from MPTCP.
func listenTCP(network, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), network, addr)
}

// upgrading reports whether this medic was started by an upgrade.
func (h *handover) upgrading() bool { return h.upg != nil && h.upg.HasParent() }

// ready tells the old medic (if any) to hand over, and writes the pid file.
func (h *handover) ready() error {
	if h.upg == nil {
		return nil
	}
	return h.upg.Ready()
}

func (h *handover) stop() {
	if h.upg != nil {
		h.upg.Stop()
	}
}

// upgrade starts the new binary and waits until it serves (or fails).
func (m *Main) upgrade(ctx context.Context) error {
	if m.handover.upg == nil {
		return errors.New("seamless upgrade is not enabled in this process")
	}
	m.Record(ctx, medic.Event{Kind: "agent.upgrade", Target: "medic", Actor: "medic",
		Reason: "upgrade requested: starting the new binary and handing it the listeners and the instances"})
	if err := m.handover.upg.Upgrade(); err != nil {
		m.Record(ctx, medic.Event{Kind: "agent.upgrade", Target: "medic", Actor: "medic",
			Reason: "upgrade failed, this medic keeps serving: " + err.Error()})
		return fmt.Errorf("upgrade: %w", err)
	}
	next := ""
	if b, err := os.ReadFile(filepath.Join(m.cfg.DataDir, PIDFile)); err == nil {
		next = strings.TrimSpace(string(b))
	}
	m.traffic.handOver() // before the instances detach: they stay the old proxies' backends
	for _, f := range m.handOvers {
		f()
	}
	m.sup.Handover()
	m.Record(ctx, medic.Event{Kind: "agent.handover", Target: "medic", Actor: "medic",
		Reason: fmt.Sprintf("handed the listeners and the instances over to the new medic (pid %s); pid %d drains and exits, the instances keep running", next, os.Getpid()),
		Fields: map[string]string{"new_pid": next, "old_pid": strconv.Itoa(os.Getpid())}})
	return nil
}
