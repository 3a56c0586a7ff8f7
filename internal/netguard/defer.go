package netguard

import (
	"net"
	"syscall"
	"time"
)

// DeferAcceptFor is how long the kernel keeps a silent connection to the
// API or an HTTP proxy before handing it to medic anyway (then the header
// timeout applies). An idle flood costs medic nothing for that long: its
// connections are never accepted, so never evicted, so never redialled
// (bench/flood.sh: medic's CPU in a 30 000 idle + 2 000 slowloris flood fell
// from 14–17 s to 3.9 s, its dials from ~300 000 to ~67 000).
const DeferAcceptFor = 60 * time.Second

// DeferAccept asks the kernel to hand ln's connections to accept only once
// the client has sent data (TCP_DEFER_ACCEPT), or after d: for protocols in
// which the client speaks first (HTTP). A connection that never speaks costs
// medic nothing until d has passed. It does nothing for other listeners.
func DeferAccept(ln net.Listener, d time.Duration) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, int(d.Seconds()))
	}); err != nil {
		return err
	}
	return serr
}
