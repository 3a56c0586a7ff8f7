package netguard

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/medic-dev/medic/internal/clock/clocktest"
)

func TestBlockListDecision(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	var bl blockList
	for i := range BlockAfter - 1 {
		if bl.refused(a, t0.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatalf("blocked after %d refusals; want %d", i+1, BlockAfter)
		}
	}
	// The window ends: the count starts again.
	if bl.refused(a, t0.Add(BlockWindow)) {
		t.Fatal("blocked on refusals of two windows")
	}
	for range BlockAfter - 2 {
		bl.refused(a, t0.Add(BlockWindow))
	}
	if !bl.refused(a, t0.Add(BlockWindow)) {
		t.Fatalf("not blocked after %d refusals in one window", BlockAfter)
	}
	if bl.refused(a, t0.Add(BlockWindow)) || bl.total != 1 {
		t.Fatalf("blocked twice: total %d", bl.total)
	}
	if got := bl.addrs(); len(got) != 1 || got[0] != a {
		t.Fatalf("blocked %v; want [%v]", got, a)
	}
	// Another source, counted on its own.
	for range BlockAfter {
		bl.refused(b, t0.Add(BlockWindow+time.Millisecond))
	}
	if got := bl.addrs(); len(got) != 2 {
		t.Fatalf("blocked %v; want both", got)
	}
	gen := bl.gen
	if next := bl.expire(t0.Add(BlockWindow + BlockFor - time.Nanosecond)); next != t0.Add(BlockWindow+BlockFor) || bl.gen != gen {
		t.Fatalf("before the first end: next %v, changed %v", next, bl.gen != gen)
	}
	if next := bl.expire(t0.Add(BlockWindow + BlockFor)); next != t0.Add(BlockWindow+time.Millisecond+BlockFor) || bl.gen == gen {
		t.Fatalf("at the first end: next %v, changed %v", next, bl.gen != gen)
	}
	if next := bl.expire(t0.Add(time.Hour)); !next.IsZero() || len(bl.addrs()) != 0 {
		t.Fatalf("all ended: next %v, left %v", next, bl.addrs())
	}
	// The set is bounded.
	var full blockList
	for i := range MaxBlocked + 1 {
		src := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		for range BlockAfter {
			full.refused(src, t0)
		}
	}
	if n := len(full.addrs()); n != MaxBlocked {
		t.Fatalf("%d blocked; want at most %d", n, MaxBlocked)
	}
	if p := synDropFilter(full.addrs()); len(p) > 4096 {
		t.Fatalf("filter of %d instructions; the kernel takes 4096", len(p))
	}
}

// dialFrom dials addr from the local address src (any 127/8 address is the
// loopback's) within timeout.
func dialFrom(src, addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", addr)
}

// A source that keeps dialling at its cap has its new connections dropped
// in the kernel (its connect waits; nothing reaches Accept), while its
// established connections carry data both ways and another source still
// connects; BlockFor later it connects again. Real sockets on the loopback,
// IPv4 and IPv6, and a dual-stack listener with an IPv4 client.
func TestFloodingSourceIsDroppedInTheKernel(t *testing.T) {
	for _, tc := range []struct{ name, network, listen, to, flood, other string }{
		{"ipv4", "tcp4", "127.0.0.1:0", "127.0.0.1", "127.0.0.2", "127.0.0.3"},
		{"dual-stack, ipv4 client", "tcp", ":0", "127.0.0.1", "127.0.0.2", "127.0.0.3"},
		{"ipv6", "tcp6", "[::1]:0", "::1", "::1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := plainListenOrSkip(t, tc.network, tc.listen, "no "+tc.network+" listener here: %v")
			clk := clocktest.New(time.Now())
			l := Wrap(ln, Options{Name: "t", Limits: Limits{MaxPerSource: 2}, Clock: clk})
			t.Cleanup(func() { l.Close() })
			if l.raw == nil || l.blockOff {
				t.Fatal("a TCP listener without its raw acceptor or its filter")
			}
			port := ln.Addr().(*net.TCPAddr).Port
			to := net.JoinHostPort(tc.to, strconv.Itoa(port))
			// An echo server.
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go func() { defer c.Close(); io.Copy(c, c) }()
				}
			}()
			var held []net.Conn
			for range 2 {
				c, err := dialFrom(tc.flood, to, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				held = append(held, c)
			}
			waitOpen(t, l, 2)
			for i := range BlockAfter {
				c, err := dialFrom(tc.flood, to, time.Second)
				if err != nil {
					t.Fatalf("dial %d at the cap, before the block: %v", i+1, err)
				}
				if ok, _ := refused(t, c); !ok {
					t.Fatalf("dial %d at the cap was not refused", i+1)
				}
				c.Close()
			}
			// The count follows the close the client saw.
			for deadline := time.Now().Add(2 * time.Second); l.Stats().Refused[RefusedPerSource] < BlockAfter && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if s := l.Stats(); s.Blocked != 1 || s.BlockedTotal != 1 || s.Refused[RefusedPerSource] != BlockAfter {
				t.Fatalf("stats %+v; want 1 source blocked after %d refusals", s, BlockAfter)
			}
			if c, err := dialFrom(tc.flood, to, 300*time.Millisecond); err == nil {
				c.Close()
				t.Fatal("a blocked source's connect completed; want its SYN dropped")
			} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				t.Fatalf("a blocked source's connect: %v; want a timeout (SYN dropped)", err)
			}
			if s := l.Stats(); s.Refused[RefusedPerSource] != BlockAfter {
				t.Fatalf("the blocked dial reached the listener: %+v", s)
			}
			for i, c := range held {
				c.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write([]byte("ping")); err != nil {
					t.Fatalf("established connection %d of the blocked source: write: %v", i, err)
				}
				b := make([]byte, 4)
				if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
					t.Fatalf("established connection %d of the blocked source: echo %q, %v", i, b, err)
				}
			}
			if tc.other != "" {
				c, err := dialFrom(tc.other, to, time.Second)
				if err != nil {
					t.Fatalf("another source while one is blocked: %v", err)
				}
				c.Close()
			}
			// The block ends: the source's SYNs are answered again (and,
			// still at its cap, it is refused by the listener as before).
			clk.Advance(BlockFor)
			deadline := time.Now().Add(5 * time.Second)
			for l.Stats().Blocked != 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			c, err := dialFrom(tc.flood, to, time.Second)
			if err != nil {
				t.Fatalf("after the block ended: %v (stats %+v)", err, l.Stats())
			}
			if ok, _ := refused(t, c); !ok {
				t.Fatal("after the block, at its cap: not refused")
			}
			c.Close()
		})
	}
}

// A source at its cap that dials in place of its own idle connections (an
// HTTP listener evicts the source's oldest idle one) is counted the same: a
// flood churning its own connections is dropped in the kernel too.
func TestChurningSourceIsDroppedInTheKernel(t *testing.T) {
	ln := plainListen(t, "tcp4", "127.0.0.1:0")
	clk := clocktest.New(time.Now())
	l := Wrap(ln, Options{Name: "t", Limits: Limits{MaxPerSource: BlockAfter}, Refusal: HTTP503, Clock: clk})
	t.Cleanup(func() { l.Close() })
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), ConnState: l.ConnState}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	to := ln.Addr().String()
	dialHeld := func() {
		c, err := dialFrom("127.0.0.2", to, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	for range BlockAfter {
		dialHeld()
	}
	waitIdle(t, l, BlockAfter)
	clk.Advance(EvictIdleAfter) // every one of them may now give its place
	for range BlockAfter {
		dialHeld()
	}
	for deadline := time.Now().Add(2 * time.Second); l.Stats().Evicted < BlockAfter && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if s := l.Stats(); s.Evicted != BlockAfter || s.Blocked != 1 {
		t.Fatalf("stats %+v; want %d evictions and the source blocked", s, BlockAfter)
	}
	if c, err := dialFrom("127.0.0.2", to, 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("a churning source's connect completed; want its SYN dropped")
	}
	if c, err := dialFrom("127.0.0.3", to, time.Second); err != nil {
		t.Fatalf("another source: %v", err)
	} else {
		c.Close()
	}
}

// blockSource has the source src (a 127/8 address) blocked by l, which
// serves nothing but holds what it admits: one connection held, then dials
// at the cap of 1 until the block. The held connection is returned.
func blockSource(t *testing.T, l *Listener, src string) net.Conn {
	t.Helper()
	go func() {
		for {
			if _, err := l.Accept(); err != nil {
				return
			}
		}
	}()
	to := l.Addr().String()
	held, err := dialFrom(src, to, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() })
	waitOpen(t, l, 1)
	for i := range BlockAfter {
		c, err := dialFrom(src, to, time.Second)
		if err != nil {
			t.Fatalf("dial %d at the cap, before the block: %v", i+1, err)
		}
		if ok, _ := refused(t, c); !ok {
			t.Fatalf("dial %d at the cap was not refused", i+1)
		}
		c.Close()
	}
	for deadline := time.Now().Add(2 * time.Second); l.Stats().Blocked != 1 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if s := l.Stats(); s.Blocked != 1 {
		t.Fatalf("stats %+v; want the source blocked", s)
	}
	if c, err := dialFrom(src, to, 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("a blocked source's connect completed; want its SYN dropped")
	}
	return held
}

// An upgrade hands the listening socket to the next medic, whose Wrap
// detaches the filter it carries, while the old medic goes on accepting
// until the new one is ready: a block the old medic installs meanwhile must
// not outlive the old medic's listener, or the new medic, which has no
// timer for a block it does not know of, drops that source's SYNs for
// ever.
func TestClosedListenerLeavesNoFilterOnAHandedOverSocket(t *testing.T) {
	ln := plainListen(t, "tcp4", "127.0.0.1:0")
	inherited := handedOver(t, ln)
	old := Wrap(ln, Options{Name: "old", Limits: Limits{MaxPerSource: 1}, Clock: clocktest.New(time.Now())})
	t.Cleanup(func() { old.Close() })
	next := Wrap(inherited, Options{Name: "next", Limits: Limits{MaxPerSource: 1}}) // not accepting yet
	t.Cleanup(func() { next.Close() })
	blockSource(t, old, "127.0.0.2")
	old.Close() // the old medic stops accepting: its block's timer with it
	c, err := dialFrom("127.0.0.2", next.Addr().String(), time.Second)
	if err != nil {
		t.Fatalf("after the old listener closed, the source's connect to the socket the new medic holds: %v; want it answered", err)
	}
	c.Close()
}

// A block's end replaces the filter with a smaller one. The kernel charges
// the program being replaced and the new one together to the socket's
// option memory (net.core.optmem_max), so a big set (here 256 IPv6
// sources, the bound) cannot be replaced in place (ENOMEM). The install
// must not then leave the old filter attached with nothing to end it: the
// source whose block ended connects again.
func TestBlockEndsWhenTheFilterCannotBeReplacedInPlace(t *testing.T) {
	ln := plainListenOrSkip(t, "tcp6", "[::1]:0", "no IPv6 loopback here: %v")
	clk := clocktest.New(time.Now())
	l := Wrap(ln, Options{Name: "t", Limits: Limits{MaxPerSource: 1}, Clock: clk})
	t.Cleanup(func() { l.Close() })
	// ::1 blocked until BlockFor from now, MaxBlocked-1 others for longer.
	now := clk.Now()
	l.mu.Lock()
	l.blocks.refused(netip.IPv6Loopback(), now) // makes the maps
	l.blocks.until[netip.IPv6Loopback()] = now.Add(BlockFor)
	for i := range MaxBlocked - 1 {
		l.blocks.until[netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})] = now.Add(2 * BlockFor)
	}
	l.blocks.gen++
	l.mu.Unlock()
	l.syncFilter()
	to := ln.Addr().String()
	l.fmu.Lock()
	attached := l.attached
	l.fmu.Unlock()
	if attached {
		if c, err := dialFrom("::1", to, 300*time.Millisecond); err == nil {
			c.Close()
			t.Fatal("a blocked source's connect completed; want its SYN dropped")
		}
	} else {
		t.Logf("a filter for %d IPv6 sources does not fit in this socket's option memory at all", MaxBlocked)
	}
	clk.Advance(BlockFor) // ::1's block ends: the timer installs the others' filter
	for deadline := time.Now().Add(2 * time.Second); l.Stats().Blocked == MaxBlocked && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	l.fmu.Lock() // the timer's install is over
	l.fmu.Unlock()
	c, err := dialFrom("::1", to, time.Second)
	if err != nil {
		t.Fatalf("after its block ended: %v (stats %+v); want it answered", err, l.Stats())
	}
	c.Close()
}

// The light-source reserve: once a listener holds all but max_connections/8
// of its places, a source holding max_per_source/8 or more is refused as at
// its own cap, and a source with fewer still gets in (the operator's
// `medic status` over TCP while a few sources flood the API).
func TestLightSourceReserve(t *testing.T) {
	ln := plainListen(t, "tcp4", "127.0.0.1:0")
	l := Wrap(ln, Options{Name: "t", Limits: Limits{MaxConns: 16, MaxPerSource: 8}, Clock: clocktest.New(time.Now())})
	t.Cleanup(func() { l.Close() })
	acc := acceptor(l)
	to := ln.Addr().String()
	hold := func(src string) net.Conn {
		t.Helper()
		c, err := dialFrom(src, to, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for range 7 {
		hold("127.0.0.2")
		hold("127.0.0.3")
	}
	for range 14 {
		<-acc
	}
	waitOpen(t, l, 14) // 16 - 16/8: the reserve begins
	if ok, _ := refused(t, hold("127.0.0.2")); !ok {
		t.Fatal("a source with 7 connections (under its cap of 8) admitted into the reserve")
	}
	light := hold("127.0.0.4")
	if ok, _ := refused(t, light); ok {
		t.Fatal("a source with no connection refused while the reserve has room")
	}
	<-acc
	if ok, _ := refused(t, hold("127.0.0.4")); !ok {
		t.Fatal("a source with 1 connection (8/8) admitted into the reserve")
	}
	if s := l.Stats(); s.Open != 15 || s.Refused[RefusedPerSource] != 2 {
		t.Fatalf("stats %+v; want 15 open, 2 refused", s)
	}
}

// A process that shared the socket (the other side of an upgrade) and
// ended without detaching its filter — killed when the upgrade failed,
// crashed — leaves a filter nobody will end. A listener that has none of
// its own attached removes it while it accepts, within BlockFor.
func TestForeignFilterIsDetached(t *testing.T) {
	ln := plainListen(t, "tcp4", "127.0.0.1:0")
	inherited := handedOver(t, ln)
	t.Cleanup(func() { inherited.Close() })
	clk := clocktest.New(time.Now())
	l := Wrap(ln, Options{Name: "t", Limits: Limits{MaxPerSource: 1}, Clock: clk})
	t.Cleanup(func() { l.Close() })
	to := l.Addr().String()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	acceptOne := func() { // and Accept looks again
		c, err := dialFrom("127.0.0.3", to, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		(<-accepted).Close()
	}
	acceptOne()
	// The other process's filter, on the same socket, after this listener began.
	other := inherited.(*net.TCPListener)
	rc, err := other.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := setFilter(rc, []netip.Addr{netip.MustParseAddr("127.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	if c, err := dialFrom("127.0.0.2", to, 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("the other process's filter drops nothing")
	}
	for i := 0; ; i++ {
		acceptOne()
		if c, err := dialFrom("127.0.0.2", to, 300*time.Millisecond); err == nil {
			c.Close()
			break
		}
		if i == 2 {
			t.Fatal("the other process's filter still drops the source's SYNs")
		}
		clk.Advance(BlockFor)
	}
}

// The filter program on real sockets, for each shape of the blocked set:
// IPv4 only, IPv6 only, both, and IPv6 addresses that differ from the
// client's in one 32-bit word only (each word's comparison skips exactly to
// the next address). A dual-stack listener; the clients are 127.0.0.2,
// 127.0.0.3 and ::1.
func TestSynDropFilterOnRealSockets(t *testing.T) {
	ln := plainListenOrSkip(t, "tcp", "[::]:0", "no dual-stack listener here: %v")
	t.Cleanup(func() { ln.Close() })
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	a := netip.MustParseAddr
	// ::1 but for one word each.
	nearMisses := []netip.Addr{a("1::1"), a("0:0:1::1"), a("::1:0:0:1"), a("::2")}
	for _, tc := range []struct {
		name    string
		blocked []netip.Addr
		dropped map[string]bool // client: its SYN dropped
	}{
		{"ipv4 only", []netip.Addr{a("127.0.0.4"), a("127.0.0.2")},
			map[string]bool{"127.0.0.2": true, "127.0.0.3": false, "::1": false}},
		{"ipv6 only", []netip.Addr{a("::1")},
			map[string]bool{"127.0.0.2": false, "::1": true}},
		{"ipv6 near misses only", nearMisses,
			map[string]bool{"::1": false, "127.0.0.2": false}},
		{"both, ipv6 after its near misses", append([]netip.Addr{a("127.0.0.3"), a("10.0.0.1")}, append(nearMisses[:len(nearMisses):len(nearMisses)], a("::1"))...),
			map[string]bool{"127.0.0.2": false, "127.0.0.3": true, "::1": true}},
		{"both, ipv4 not matching", append([]netip.Addr{a("127.0.0.4")}, nearMisses...),
			map[string]bool{"127.0.0.2": false, "::1": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := setFilter(rc, tc.blocked); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { setFilter(rc, nil) })
			for src, drop := range tc.dropped {
				timeout := time.Second
				if drop {
					timeout = 300 * time.Millisecond
				}
				c, err := dialFrom(src, net.JoinHostPort(src, port), timeout)
				switch {
				case drop && err == nil:
					c.Close()
					t.Errorf("%s connected; want its SYN dropped", src)
				case drop:
					if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
						t.Errorf("%s: %v; want a timeout (SYN dropped)", src, err)
					}
				case err != nil:
					t.Errorf("%s: %v; want it answered", src, err)
				default:
					c.Close()
				}
			}
		})
	}
}

// inSmallOptmemNetns locks the calling goroutine's thread into a network
// namespace of its own whose net.core.optmem_max is 20 KiB (the default of
// older kernels), with its loopback up; sockets made on this goroutine
// belong to it. Root only: skipped otherwise unless
// MEDIC_REQUIRE_INTEGRATION=1. The thread ends with the test's goroutine.
func inSmallOptmemNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("needs root (a network namespace)")
		}
		t.Skip("needs root (a network namespace)")
	}
	runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare a network namespace: %v", err)
	}
	if err := os.WriteFile("/proc/sys/net/core/optmem_max", []byte("20480"), 0o644); err != nil {
		t.Skipf("net.core.optmem_max is not per network namespace on this kernel: %v", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		t.Fatalf("loopback up: %v", err)
	}
}

// Where the socket's option memory cannot hold a filter for the blocked
// set at all (here 128 IPv6 sources under a 20 KiB optmem_max), the blocks
// end and the listener blocks fewer at once from then on; it does not give
// up the kernel drop for good (a flood from a few hundred addresses of one
// IPv6 /64 would otherwise switch it off).
func TestFilterTooBigForTheSocketBlocksFewer(t *testing.T) {
	inSmallOptmemNetns(t)
	ln := plainListenOrSkip(t, "tcp6", "[::1]:0", "no IPv6 loopback in the namespace: %v")
	clk := clocktest.New(time.Now())
	l := Wrap(ln, Options{Name: "t", Limits: Limits{MaxPerSource: 1}, Clock: clk})
	t.Cleanup(func() { l.Close() })
	to := ln.Addr().String()
	const n = 128
	now := clk.Now()
	l.mu.Lock()
	l.blocks.refused(netip.IPv6Loopback(), now) // makes the maps
	l.blocks.until[netip.IPv6Loopback()] = now.Add(BlockFor)
	for i := range n - 1 {
		l.blocks.until[netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})] = now.Add(BlockFor)
	}
	l.blocks.gen++
	l.mu.Unlock()
	l.syncFilter()
	if s := l.Stats(); s.Blocked != 0 {
		t.Fatalf("stats %+v; want the blocks ended (the filter cannot be attached)", s)
	}
	c, err := dialFrom("::1", to, time.Second)
	if err != nil {
		t.Fatalf("the blocks ended but the source is not answered: %v", err)
	}
	c.Close()
	// Blocking goes on.
	block := false
	l.mu.Lock()
	for range BlockAfter {
		block = l.noteRefusedLocked(netip.IPv6Loopback(), now) || block
	}
	l.mu.Unlock()
	if !block {
		t.Fatalf("%d refusals did not block the source: the listener gave up the kernel drop", BlockAfter)
	}
	l.syncFilter()
	if s := l.Stats(); s.Blocked != 1 {
		t.Fatalf("stats %+v; want the source blocked again", s)
	}
	if c, err := dialFrom("::1", to, 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("a blocked source's connect completed; want its SYN dropped")
	}
}

// A listener whose socket takes no filter (Go makes listeners MPTCP by
// default where the kernel has it, and an MPTCP socket refuses socket
// filters: a socket handed over by an older medic) says so once, at Wrap,
// as docs/security.md promises: it refuses one by one and never tries.
func TestSocketWithoutFilterIsLogged(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0") // MPTCP where the kernel has it
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	l := Wrap(ln, Options{Name: "t", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	t.Cleanup(func() { l.Close() })
	if !l.blockOff {
		t.Skip("this kernel's default listener takes a socket filter (no MPTCP)")
	}
	if !strings.Contains(logs.String(), "cannot drop a flooding source's connections in the kernel") {
		t.Fatalf("the listener cannot drop in the kernel and did not say so; logged %q", logs.String())
	}
}

// plainListenOrSkip is plainListen, skipping the test with why (and the
// error) when the address cannot be bound here (no IPv6).
func plainListenOrSkip(t *testing.T, network, addr, why string) net.Listener {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		t.Skipf(why, err)
	}
	return ln
}

// plainListen binds a plain TCP listener, as medic does (internal/app): Go
// makes listeners MPTCP by default where the kernel has it, and an MPTCP
// socket takes no filter.
func plainListen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// handedOver is a second listener on ln's socket, as tableflip passes it
// to the next medic (a duplicate of its descriptor).
func handedOver(t *testing.T, ln net.Listener) net.Listener {
	t.Helper()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inherited, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	return inherited
}
