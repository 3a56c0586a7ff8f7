package main

import (
	"fmt"
	"math/rand/v2"
	"net"
)

// Listening ports come from below the kernel's ephemeral range (32768+ by
// default): the 1 ms polling leaves thousands of TIME_WAIT sockets there.
const (
	portLow  = 20000
	portHigh = 32000
)

// portPool hands out runs of consecutive loopback ports that were free when
// checked, never the same port twice in one harness run.
type portPool struct {
	next int
}

func newPortPool() *portPool {
	return &portPool{next: portLow + rand.IntN((portHigh-portLow)/2)}
}

// take returns the first port of n consecutive free ones; it panics when the
// range is exhausted (a harness run needs a few hundred of its 12000).
func (p *portPool) take(n int) int {
	for tries := 0; tries < 1000 && p.next+n <= portHigh; tries++ {
		base := p.next
		ok := true
		for port := base; port < base+n; port++ {
			if !portFree(port) {
				p.next = port + 1
				ok = false
				break
			}
		}
		if ok {
			p.next = base + n
			return base
		}
	}
	panic(fmt.Sprintf("no %d consecutive free ports in %d..%d", n, portLow, portHigh))
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
