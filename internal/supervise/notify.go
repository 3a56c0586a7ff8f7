package supervise

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// notifySocket receives sd_notify datagrams (READY=1, WATCHDOG=1, STATUS=…)
// from one instance on a unixgram socket whose path is exported as NOTIFY_SOCKET.
type notifySocket struct {
	path string
	conn *net.UnixConn
	msgs chan map[string]string
	done chan struct{}
	keep bool // close leaves the path: a next medic (an upgrade) has bound it for the same process
}

func listenNotify(path string) (*notifySocket, error) {
	os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("listen on notify socket %s: %w", path, err)
	}
	n := &notifySocket{path: path, conn: conn, msgs: make(chan map[string]string, 16), done: make(chan struct{})}
	go n.read()
	return n, nil
}

func (n *notifySocket) read() {
	defer close(n.done)
	buf := make([]byte, 4096)
	for {
		k, err := n.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m := parseNotify(string(buf[:k]))
		select {
		case n.msgs <- m:
		default: // a flood of datagrams is dropped; the next WATCHDOG=1 will come
		}
	}
}

// close stops the reader and waits for it.
func (n *notifySocket) close() {
	n.conn.Close()
	<-n.done
	if !n.keep {
		os.Remove(n.path)
	}
}

// parseNotify reads newline-separated KEY=VALUE assignments (sd_notify(3)).
func parseNotify(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && k != "" {
			m[k] = v
		}
	}
	return m
}
