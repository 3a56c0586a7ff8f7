// Package bypass finds the outbound TCP connections a process holds, from
// Linux's /proc: its socket descriptors (/proc/<pid>/fd) matched against the
// connection tables of its network namespace (/proc/<pid>/net/tcp, tcp6).
// medic lists those that do not go through it (a dependency listener, a
// proxy) as calls it cannot bound: the scorecard's timeout question.
//
// A connection is outbound when its local port is not one the process
// listens on. What is seen is a snapshot: a short call made between two
// looks is missed, so an empty answer proves nothing; a listed one is a fact.
package bypass

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Conn is one outbound connection of a process.
type Conn struct {
	PID    int            `json:"pid"`
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
}

// maxFDs bounds the descriptors read per process (a process with a leak must
// not make the scan expensive).
const maxFDs = 65536

// Outbound returns the established outbound TCP connections of pid, read
// from root (normally "/proc").
func Outbound(root string, pid int) ([]Conn, error) {
	inodes, err := socketInodes(filepath.Join(root, strconv.Itoa(pid), "fd"))
	if err != nil {
		return nil, fmt.Errorf("bypass: sockets of pid %d: %w", pid, err)
	}
	if len(inodes) == 0 {
		return nil, nil
	}
	var socks []sock
	for _, f := range []string{"tcp", "tcp6"} {
		s, err := readTable(filepath.Join(root, strconv.Itoa(pid), "net", f))
		if err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("bypass: connections of pid %d: %w", pid, err)
		}
		socks = append(socks, s...)
	}
	listening := map[uint16]bool{}
	for _, s := range socks {
		if inodes[s.inode] && s.state == stateListen {
			listening[s.local.Port()] = true
		}
	}
	var out []Conn
	for _, s := range socks {
		if !inodes[s.inode] || s.state != stateEstablished || listening[s.local.Port()] {
			continue
		}
		out = append(out, Conn{PID: pid, Local: s.local, Remote: s.remote})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Remote.String() < out[j].Remote.String() })
	return out, nil
}

func socketInodes(dir string) (map[uint64]bool, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(maxFDs)
	if err != nil && len(names) == 0 {
		return nil, err
	}
	out := map[uint64]bool{}
	for _, n := range names {
		l, err := os.Readlink(filepath.Join(dir, n))
		if err != nil || !strings.HasPrefix(l, "socket:[") || !strings.HasSuffix(l, "]") {
			continue
		}
		if ino, err := strconv.ParseUint(l[len("socket:["):len(l)-1], 10, 64); err == nil {
			out[ino] = true
		}
	}
	return out, nil
}

const (
	stateEstablished = 0x01
	stateListen      = 0x0A
)

type sock struct {
	local, remote netip.AddrPort
	state         int
	inode         uint64
}

// readTable parses a /proc/net/tcp or tcp6 table.
func readTable(path string) ([]sock, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []sock
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		local, err1 := parseAddr(fields[1])
		remote, err2 := parseAddr(fields[2])
		state, err3 := strconv.ParseInt(fields[3], 16, 32)
		inode, err4 := strconv.ParseUint(fields[9], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			continue
		}
		out = append(out, sock{local: local, remote: remote, state: int(state), inode: inode})
	}
	return out, sc.Err()
}

// parseAddr reads "0100007F:1F90": the address as the kernel stores it (32-bit
// words in host byte order, little-endian here) and the port in hex.
func parseAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i+4 <= len(raw); i += 4 { // each 32-bit word is little-endian
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", s)
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}
