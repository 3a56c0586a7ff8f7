// Package netns makes "hosts" on one machine for fleet tests and benches:
// each host is a Linux network namespace with its own address on a bridge
// that this package creates, and a 3-member etcd cluster can run on it
// (each member in its own namespace). A test can kill a host (every process
// in its namespace, by PID, then its link down) or partition it (its link
// down, or a blackhole route to one address).
//
// Everything needs root and the ip command (Debian's iproute2). From a test,
// Require skips with the reason when either is missing, unless
// MEDIC_REQUIRE_INTEGRATION=1 (CI), where it fails. From a bench, New
// returns the reason as an error.
//
// Names are random (the bridge mf<6 hex>, namespaces mf<6 hex>-<host>), the
// subnet is a /24 of 10.200.0.0/13 no interface or route of the machine
// uses, so parallel tests and other engineers' namespaces never collide.
// Close removes what New and AddHost made; every process started through a
// Host is stopped by its PID.
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Net is a bridge in the root namespace with the hosts attached to it. The
// root namespace holds the bridge's address (.1), so a test reaches every
// host directly.
type Net struct {
	ID     string       // random hex naming everything this Net made
	Bridge string       // the bridge's interface name
	Prefix netip.Prefix // the hosts' /24
	Gate   netip.Addr   // the root namespace's address on the bridge

	mu     sync.Mutex
	hosts  []*Host
	next   int // the last octet of the next host
	closed bool
}

// Host is one network namespace on the Net's bridge.
type Host struct {
	Name string     // the name the test gave it (h1, e2…)
	NS   string     // the namespace's name (ip netns)
	Addr netip.Addr // its address on the bridge
	veth string     // the root side of its link
	net  *Net

	mu    sync.Mutex
	procs []*Proc
}

// Proc is a process started in a host's namespace.
type Proc struct {
	Cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Missing says why this machine cannot make namespaces ("" when it can).
func Missing() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "ip not found (install the Debian package iproute2)"
	}
	return ""
}

// Require skips tb (fails it with MEDIC_REQUIRE_INTEGRATION=1) when this
// machine cannot make namespaces, and otherwise returns a Net removed at the
// end of the test.
func Require(tb testing.TB) *Net {
	tb.Helper()
	if msg := Missing(); msg != "" {
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	n, err := New()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("remove the test's namespaces: %v", err)
		}
	})
	return n
}

// New makes a bridge on a free /24 and brings it up.
func New() (*Net, error) {
	if msg := Missing(); msg != "" {
		return nil, errors.New(msg)
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(b[:])
	prefix, err := freeSubnet()
	if err != nil {
		return nil, err
	}
	n := &Net{ID: id, Bridge: "mf" + id, Prefix: prefix, Gate: prefix.Addr().Next(), next: 10}
	if err := ipCmds(
		[]string{"link", "add", n.Bridge, "type", "bridge"},
		[]string{"addr", "add", n.Gate.String() + "/24", "dev", n.Bridge},
		[]string{"link", "set", n.Bridge, "up"},
	); err != nil {
		_ = ip("link", "del", n.Bridge)
		return nil, fmt.Errorf("netns: make bridge %s on %s: %w", n.Bridge, prefix, err)
	}
	return n, nil
}

// freeSubnet picks a /24 of 10.200.0.0/13 that no address or route of the
// root namespace overlaps.
func freeSubnet() (netip.Prefix, error) {
	out, err := exec.Command("ip", "-o", "addr").CombinedOutput()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("netns: ip -o addr: %w: %s", err, out)
	}
	routes, err := exec.Command("ip", "-o", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("netns: ip route: %w: %s", err, routes)
	}
	used := string(out) + string(routes)
	for range 64 {
		r, err := rand.Int(rand.Reader, big.NewInt(8*256))
		if err != nil {
			return netip.Prefix{}, err
		}
		v := int(r.Int64())
		third := fmt.Sprintf("10.%d.%d.", 200+v/256, v%256)
		if !strings.Contains(used, " "+third) && !strings.Contains(used, "\n"+third) && !strings.HasPrefix(used, third) {
			return netip.MustParsePrefix(third + "0/24"), nil
		}
	}
	return netip.Prefix{}, errors.New("netns: no free /24 in 10.200.0.0/13 after 64 tries")
}

// AddHost makes a namespace named after name with its own address on the
// bridge, loopback up.
func (n *Net) AddHost(name string) (*Host, error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, errors.New("netns: the net is closed")
	}
	if n.next > 250 {
		n.mu.Unlock()
		return nil, errors.New("netns: at most 240 hosts on one net")
	}
	octet := n.next
	n.next++
	n.mu.Unlock()
	a := n.Prefix.Addr().As4()
	a[3] = byte(octet)
	h := &Host{Name: name, NS: "mf" + n.ID + "-" + name, Addr: netip.AddrFrom4(a),
		veth: "mf" + n.ID + "v" + strconv.Itoa(octet), net: n}
	peer := h.veth + "p"
	if err := ipCmds(
		[]string{"netns", "add", h.NS},
		[]string{"link", "add", h.veth, "type", "veth", "peer", "name", peer},
		[]string{"link", "set", peer, "netns", h.NS},
		[]string{"link", "set", h.veth, "master", n.Bridge, "up"},
		[]string{"-n", h.NS, "link", "set", peer, "name", "eth0"},
		[]string{"-n", h.NS, "addr", "add", h.Addr.String() + "/24", "dev", "eth0"},
		[]string{"-n", h.NS, "link", "set", "eth0", "up"},
		[]string{"-n", h.NS, "link", "set", "lo", "up"},
	); err != nil {
		_ = ip("link", "del", h.veth)
		_ = ip("netns", "del", h.NS)
		return nil, fmt.Errorf("netns: make host %s: %w", name, err)
	}
	n.mu.Lock()
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()
	return h, nil
}

// MustAddHost is AddHost failing tb on an error.
func (n *Net) MustAddHost(tb testing.TB, name string) *Host {
	tb.Helper()
	h, err := n.AddHost(name)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// Close kills every process of every host (by PID), then removes the
// namespaces, their links and the bridge. It returns the first error.
func (n *Net) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	hosts := n.hosts
	n.mu.Unlock()
	var first error
	for _, h := range hosts {
		if err := h.Kill(); err != nil && first == nil {
			first = err
		}
		_ = ip("link", "del", h.veth) // gone with the namespace's peer already, usually
		if err := ip("netns", "del", h.NS); err != nil && first == nil {
			first = err
		}
	}
	if err := ip("link", "del", n.Bridge); err != nil && first == nil {
		first = err
	}
	return first
}

// Command returns a command that runs name in the host's namespace
// (ip netns exec, which execs it: the PID is the command's own). Its
// process is not tracked: prefer Start.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// Start starts cmd (made by Command) and tracks it, so that Kill and the
// Net's Close stop it by its PID.
func (h *Host) Start(cmd *exec.Cmd) (*Proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("netns: start %s in %s: %w", strings.Join(cmd.Args, " "), h.Name, err)
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, once Done is closed.
func (p *Proc) Err() error { <-p.done; return p.err }

// Stop sends SIGTERM to the process group and waits up to grace, then
// SIGKILLs it and waits.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// PIDs lists every process in the host's namespace (ip netns pids).
func (h *Host) PIDs() ([]int, error) {
	out, err := exec.Command("ip", "netns", "pids", h.NS).Output()
	if err != nil {
		return nil, fmt.Errorf("netns: pids of %s: %w", h.Name, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		p, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("netns: pids of %s: %q: %w", h.Name, f, err)
		}
		pids = append(pids, p)
	}
	return pids, nil
}

// Kill is a host's sudden death: its link goes down, then every process in
// its namespace gets SIGKILL by PID (those the test started, and any they
// started: supervised instances in their own process groups too), until
// none is left (at most 5s). The namespace stays, so Revive can bring the
// host back.
func (h *Host) Kill() error {
	_ = ip("link", "set", h.veth, "down")
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := h.PIDs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns: host %s: processes %v still alive 5s after SIGKILL", h.Name, pids)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond) // waiting for the kernel to reap an external process
	}
	h.mu.Lock()
	procs := h.procs
	h.procs = nil
	h.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("netns: host %s: process %d not reaped 5s after SIGKILL", h.Name, p.Cmd.Process.Pid)
		}
	}
	return nil
}

// Revive brings a killed or partitioned host's link up again.
func (h *Host) Revive() error { return h.Heal() }

// Partition cuts the host from everything on the bridge (etcd, the other
// hosts, the root namespace): its link goes down. Its processes keep
// running.
func (h *Host) Partition() error {
	if err := ip("link", "set", h.veth, "down"); err != nil {
		return fmt.Errorf("netns: partition %s: %w", h.Name, err)
	}
	return nil
}

// Heal undoes Partition and every Blackhole.
func (h *Host) Heal() error {
	if err := ip("link", "set", h.veth, "up"); err != nil {
		return fmt.Errorf("netns: heal %s: %w", h.Name, err)
	}
	out, err := exec.Command("ip", "-n", h.NS, "route", "show", "type", "blackhole").Output()
	if err != nil {
		return fmt.Errorf("netns: heal %s: list blackhole routes: %w", h.Name, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "blackhole" {
			if err := ip("-n", h.NS, "route", "del", "blackhole", f[1]); err != nil {
				return fmt.Errorf("netns: heal %s: %w", h.Name, err)
			}
		}
	}
	return nil
}

// Blackhole drops the host's traffic to each address (a blackhole route in
// its namespace): a partition from some peers only, such as the etcd
// members but not the other hosts.
func (h *Host) Blackhole(addrs ...netip.Addr) error {
	for _, a := range addrs {
		if err := ip("-n", h.NS, "route", "add", "blackhole", a.String()+"/32"); err != nil {
			return fmt.Errorf("netns: blackhole %s from %s: %w", a, h.Name, err)
		}
	}
	return nil
}

func ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func ipCmds(cmds ...[]string) error {
	for _, c := range cmds {
		if err := ip(c...); err != nil {
			return err
		}
	}
	return nil
}
