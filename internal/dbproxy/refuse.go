package dbproxy

import (
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// CannotConnectNow is PostgreSQL's SQLSTATE 57P03, which a server starting
// up or shutting down sends. libpq, pgx and pgjdbc try the next host of a
// multi-host connection string at once on it; on a connection that is
// merely closed, libpq gives up (issue 14: a 28.7 s client outage while the
// other listener had served the new primary since +4 s).
const CannotConnectNow = "57P03"

// refuseTimeout bounds the whole exchange with a client that is refused.
const refuseTimeout = 2 * time.Second

// refuser answers a client's startup with a FATAL 57P03 error naming the
// listener's cluster: it declines SSL and GSS encryption first (a refusal
// needs no secrecy), ignores cancel requests, and closes.
func refuser(cluster string) func(net.Conn) {
	msg := "cannot connect now: this medic listener does not route to a serving primary of " + cluster + "; try another host"
	return func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(refuseTimeout))
		be := pgproto3.NewBackend(c, c)
		for range 3 {
			m, err := be.ReceiveStartupMessage()
			if err != nil {
				return
			}
			switch m.(type) {
			case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
				if _, err := c.Write([]byte{'N'}); err != nil {
					return
				}
				continue
			case *pgproto3.StartupMessage:
				be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: CannotConnectNow, Message: msg})
				_ = be.Flush()
			}
			return
		}
	}
}
