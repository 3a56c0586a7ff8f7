// Package ports finds free loopback TCP ports for processes started later:
// the demo's instances, tests' agents and databases.
//
// A port taken from the kernel with :0 lies in the ephemeral range, where
// any outgoing connection on the machine may take it as its source port
// before the process meant to listen on it binds it; under load (a test
// suite, a load generator) that happens. Free picks below the ephemeral
// range instead, where only explicit binds land.
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the first port Free hands out: above the well-known and most
// registered services' ports.
const lowest = 10000

var (
	mu    sync.Mutex
	given = map[int]bool{} // handed out by this process: never twice
)

// Free returns the first of n consecutive loopback ports that are free now
// and below the ephemeral range, never one this process handed out before.
func Free(n int) (int, error) {
	if n < 1 {
		n = 1
	}
	top := ephemeralLow() - n
	if top <= lowest {
		return 0, fmt.Errorf("ports: no room below the ephemeral range for %d ports", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for try := 0; try < 200; try++ {
		base := lowest + rand.IntN(top-lowest)
		if bindable(base, n) {
			for i := range n {
				given[base+i] = true
			}
			return base, nil
		}
	}
	return 0, fmt.Errorf("ports: no %d consecutive free ports on 127.0.0.1 below %d", n, top+n)
}

func bindable(base, n int) bool {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for i := range n {
		if given[base+i] {
			return false
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
		if err != nil {
			return false
		}
		lns = append(lns, l)
	}
	return true
}

// ephemeralLow is the start of the kernel's ephemeral port range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	v, err := strconv.Atoi(f[0])
	if err != nil || v <= lowest {
		return 32768
	}
	return v
}
