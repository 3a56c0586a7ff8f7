package probe

import (
	"context"
	"net"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// tcpChecker passes when a TCP connection to addr is accepted.
type tcpChecker struct {
	addr   string
	dialer net.Dialer
}

func newTCPChecker(c *config.TCPProbe, t Target) (*tcpChecker, error) {
	addr, err := address("tcp", c.Host, c.Port, t)
	if err != nil {
		return nil, err
	}
	return &tcpChecker{addr: addr}, nil
}

// Check dials once and closes the connection at once.
func (c *tcpChecker) Check(ctx context.Context) Outcome {
	start := time.Now()
	conn, err := c.dialer.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		if ctx.Err() != nil {
			return ended(ctx, start)
		}
		if o, ok := own(err); ok {
			return o
		}
		return Fail(err.Error())
	}
	_ = conn.Close() // nothing was written: a close error says nothing about the instance
	return Pass("connected to " + c.addr)
}
