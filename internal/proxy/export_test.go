package proxy

import "syscall"

// DialControl sets the Control hook of the proxy's TCP dialer (tests fake
// medic's own shortage with it).
func DialControl(p *Proxy, f func(network, address string, c syscall.RawConn) error) {
	p.dialer.Control = f
}
