package netguard

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A source that keeps dialling while it is at its cap (a flood from few
// addresses, redialling as fast as it is refused) costs the listener an
// accept(2) and a close(2) per dial: about 30 µs of kernel time each, and in
// bench/flood.sh's TCP-proxy phase 40 000–90 000 refusals, most of medic's
// CPU there (twice HAProxy's per dial), while the legitimate clients need
// the same two cores. Pausing Accept (pause) is no answer for one source:
// everybody else would wait too.
//
// So a TCP listener counts each source's refusals for its cap; past
// BlockAfter within BlockWindow, the source's new connections are dropped
// in the kernel for BlockFor: a classic BPF filter on the listening socket
// (SO_ATTACH_FILTER) drops a SYN without ACK from the blocked addresses
// before the kernel answers it, so the flooder's connect waits for its own
// retransmission (1 s, then 3 s, …) and medic spends nothing on it. The
// source's established connections are untouched (their packets carry an
// ACK, and they belong to sockets of their own), and so is every other
// source. Only a source that completed handshakes, and so can receive at
// its address, is ever counted: a spoofed SYN never gets as far as a
// refusal. Each source blocked costs at most BlockAfter refusals per
// BlockWindow+BlockFor, whatever its dial rate; a legitimate client behind
// a busy address (a NAT over its cap) sees its connect delayed by the
// kernel's retransmission instead of an immediate refusal.

// BlockAfter is the refusals for its cap within BlockWindow that block a source.
const BlockAfter = 64

// BlockWindow is the window BlockAfter is counted in.
const BlockWindow = time.Second

// BlockFor is how long a source's new connections are dropped in the kernel.
const BlockFor = time.Second

// MaxBlocked bounds the sources blocked at once per listener (the filter's
// size: a classic BPF program has at most 4 096 instructions, an IPv6
// address takes 9). Beyond it, sources are refused connection by connection
// as before. A socket whose option memory (net.core.optmem_max) cannot hold
// the filter for that many gets a lower bound at the first such failure.
const MaxBlocked = 256

// blockList is the decision: which sources are blocked until when. Pure:
// the caller gives the time; guarded by its listener's mu.
type blockList struct {
	windowStart time.Time
	refusals    map[netip.Addr]int // in the window that began at windowStart
	until       map[netip.Addr]time.Time
	gen         uint64 // counts changes of the blocked set
	total       uint64 // sources blocked since the start
	// max bounds the sources blocked at once: MaxBlocked (0), or fewer once
	// the socket could not hold a filter that big (syncFilter).
	max int
}

// refused counts one refusal of src for its cap at now and reports whether
// src is now blocked (it was not before).
func (b *blockList) refused(src netip.Addr, now time.Time) bool {
	if !src.IsValid() {
		return false
	}
	if b.refusals == nil {
		b.refusals, b.until = map[netip.Addr]int{}, map[netip.Addr]time.Time{}
	}
	if now.Before(b.windowStart) || now.Sub(b.windowStart) >= BlockWindow {
		b.windowStart = now
		clear(b.refusals)
	}
	if _, ok := b.until[src]; ok {
		return false // a connection that got in before the filter did
	}
	b.refusals[src]++
	limit := MaxBlocked
	if b.max > 0 {
		limit = b.max
	}
	if b.refusals[src] < BlockAfter || len(b.until) >= limit {
		return false
	}
	delete(b.refusals, src)
	b.until[src] = now.Add(BlockFor)
	b.gen++
	b.total++
	return true
}

// expire ends the blocks due by now and returns the end of the next one
// (zero when none is left).
func (b *blockList) expire(now time.Time) (next time.Time) {
	for a, t := range b.until {
		if !now.Before(t) {
			delete(b.until, a)
			b.gen++
			continue
		}
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next
}

// addrs returns the blocked addresses, sorted.
func (b *blockList) addrs() []netip.Addr {
	as := make([]netip.Addr, 0, len(b.until))
	for a := range b.until {
		as = append(as, a)
	}
	slices.SortFunc(as, netip.Addr.Compare)
	return as
}

// skfNetOff is SKF_NET_OFF (linux/filter.h): a load's offset from the
// network header instead of the packet's data.
const skfNetOff = -0x100000

// synDropFilter is the classic BPF program that drops a SYN without ACK
// from any of addrs and passes every other packet. A socket filter on TCP
// runs with the packet's data at the TCP header (tcp_v4_rcv, tcp_v6_rcv:
// after the IP header is pulled), so the flags are at offset 13 and the IP
// header at SKF_NET_OFF.
func synDropFilter(addrs []netip.Addr) []unix.SockFilter {
	const (
		pass = 0xffffffff
		drop = 0
	)
	net := func(off int32) uint32 { return uint32(skfNetOff + off) }
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jeq := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: jt, Jf: jf, K: k}
	}
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	p := []unix.SockFilter{
		stmt(unix.BPF_LD|unix.BPF_B|unix.BPF_ABS, 13), // TCP flags
		stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, 0x12),
		jeq(0x02, 1, 0), // SYN without ACK: look at the source
		stmt(unix.BPF_RET|unix.BPF_K, pass),
		stmt(unix.BPF_LD|unix.BPF_B|unix.BPF_ABS, net(0)), // IP version
		stmt(unix.BPF_ALU|unix.BPF_RSH|unix.BPF_K, 4),
		jeq(6, 0, 1),
		{}, // ja to the IPv6 part, set below
	}
	// IPv4: the source at 12, one comparison each.
	p = append(p, stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, net(12)))
	for _, a := range v4 {
		b := a.As4()
		p = append(p, jeq(binary.BigEndian.Uint32(b[:]), 0, 1), stmt(unix.BPF_RET|unix.BPF_K, drop))
	}
	p = append(p, stmt(unix.BPF_RET|unix.BPF_K, pass))
	p[7] = stmt(unix.BPF_JMP|unix.BPF_JA, uint32(len(p)-8))
	// IPv6: the source at 8, four words each.
	for _, a := range v6 {
		b := a.As16()
		for w := range 4 {
			p = append(p, stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, net(8+4*int32(w))),
				jeq(binary.BigEndian.Uint32(b[4*w:]), 0, uint8(7-2*w)))
		}
		p = append(p, stmt(unix.BPF_RET|unix.BPF_K, drop))
	}
	return append(p, stmt(unix.BPF_RET|unix.BPF_K, pass))
}

// setFilter attaches the program that drops addrs' SYNs to the listening
// socket, or detaches it when addrs is empty (new connections then inherit
// no filter).
//
// The kernel charges a socket's filter to its option memory
// (net.core.optmem_max: 128 KiB on recent kernels, 20 KiB on older ones),
// and while it replaces one it holds both: a program for MaxBlocked IPv6
// sources fits alone but not beside one almost as big (ENOMEM). Then the
// old one is detached first and the new one attached alone; in between,
// for two system calls, the blocked sources reach the listener, which
// refuses them one by one.
func setFilter(rc syscall.RawConn, addrs []netip.Addr) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		detach := func() error {
			err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
			if errors.Is(err, unix.ENOENT) {
				return nil // none attached
			}
			return err
		}
		if len(addrs) == 0 {
			serr = detach()
			return
		}
		p := synDropFilter(addrs)
		prog := &unix.SockFprog{Len: uint16(len(p)), Filter: &p[0]}
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, prog)
		if errors.Is(serr, unix.ENOMEM) {
			if serr = detach(); serr == nil {
				serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, prog)
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// noteRefusedLocked counts a refusal of src for its cap (l.mu held) and
// reports whether the filter must be brought up to date.
func (l *Listener) noteRefusedLocked(src netip.Addr, now time.Time) bool {
	if l.raw == nil || l.blockOff {
		return false
	}
	return l.blocks.refused(src, now)
}

// syncFilter ends the blocks that are due, installs the filter for the
// blocked set when it changed since the last install, and sets the timer
// for the next end. Installs are serialized by fmu.
func (l *Listener) syncFilter() {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	if l.closed() {
		return
	}
	now := l.o.Clock.Now()
	l.mu.Lock()
	next := l.blocks.expire(now)
	gen, addrs, total := l.blocks.gen, l.blocks.addrs(), l.blocks.total
	l.mu.Unlock()
	if gen != l.installed {
		if err := setFilter(l.raw.rc, addrs); err != nil {
			// Without the filter the listener refuses connection by
			// connection, as before. Whatever filter is still attached
			// goes too: with the blocks forgotten and no timer left, it
			// would drop its sources' SYNs for ever.
			// When the set is too big for the socket's option memory
			// (ENOMEM: net.core.optmem_max, 20 KiB on older kernels, holds
			// 64 IPv6 sources, not 96), the blocks end and fewer are held at
			// once from now on; on any other error the listener gives up
			// the kernel drop.
			derr := setFilter(l.raw.rc, nil)
			l.mu.Lock()
			if errors.Is(err, unix.ENOMEM) && derr == nil && len(addrs) > 1 {
				l.blocks.max = len(addrs) - 1
			} else {
				l.blockOff = true
			}
			clear(l.blocks.until)
			l.blocks.gen++
			gen := l.blocks.gen
			l.mu.Unlock()
			if derr == nil {
				l.installed, l.attached = gen, false
			}
			l.o.Logger.Warn("cannot drop a flooding source's connections in the kernel (SO_ATTACH_FILTER); refusing them one by one",
				"listener", l.o.Name, "blocked", len(addrs), "max_blocked_now", l.blocks.max, "err", err, "detach_err", derr)
			return
		}
		if len(addrs) > 0 && now.Sub(l.lastBlockLog) >= LogEvery {
			l.lastBlockLog = now
			l.o.Logger.Warn("dropping new connections from sources that kept dialling at their cap",
				"listener", l.o.Name, "blocked", len(addrs), "first", addrs[0].String(), "max_per_source", l.o.MaxPerSource,
				"after_refusals", BlockAfter, "within", BlockWindow, "for", BlockFor, "blocked_total", total)
		}
		l.installed, l.attached = gen, len(addrs) > 0
	}
	if next.IsZero() {
		return
	}
	if l.blockTimer == nil {
		l.blockTimer = l.o.Clock.AfterFunc(next.Sub(now), l.syncFilter)
	} else {
		l.blockTimer.Reset(next.Sub(now))
	}
}

// detachForeign detaches, at most once per BlockFor, a filter on the socket
// while this listener has none of its own attached: one left by a process
// that shared the socket in an upgrade (the old medic until it stops
// accepting, or a new one that failed) and ended without detaching it
// (killed, crashed), which nothing else would ever end. A filter of the
// other process still running goes too: its blocked sources are then
// refused one by one until its next change.
func (l *Listener) detachForeign() {
	now := l.o.Clock.Now().UnixNano()
	if last := l.lastForeign.Load(); last != 0 && now-last < int64(BlockFor) || !l.lastForeign.CompareAndSwap(last, now) {
		return
	}
	l.fmu.Lock()
	defer l.fmu.Unlock()
	if l.attached || l.closed() {
		return
	}
	_ = setFilter(l.raw.rc, nil)
}
