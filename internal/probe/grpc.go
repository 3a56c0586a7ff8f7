package probe

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/medic-dev/medic/internal/config"
)

// grpcChecker calls grpc.health.v1.Health/Check over a fresh connection.
type grpcChecker struct {
	addr    string
	service string
}

func newGRPCChecker(c *config.GRPCProbe, t Target) (*grpcChecker, error) {
	addr, err := address("grpc", c.Host, c.Port, t)
	if err != nil {
		return nil, err
	}
	return &grpcChecker{addr: addr, service: c.Service}, nil
}

// Check dials, asks once and closes. Each check opens its own connection, as
// kubelet's gRPC prober does: a channel kept between checks would reconnect in
// the background and hide an instance that stopped accepting connections.
func (g *grpcChecker) Check(ctx context.Context) Outcome {
	start := time.Now()
	// passthrough: hand the address to the dialer as is, no resolver goroutines.
	conn, err := grpc.NewClient("passthrough:///"+g.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(UserAgent),
	)
	if err != nil {
		if o, ok := own(err); ok {
			return o
		}
		return Fail(fmt.Sprintf("grpc client for %s: %v", g.addr, err))
	}
	defer conn.Close()
	// Fail-fast (the default): a refused connection fails the RPC at once
	// instead of waiting out the timeout.
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: g.service})
	if err != nil {
		if ctx.Err() != nil {
			return ended(ctx, start)
		}
		if o, ok := own(err); ok {
			return o
		}
		st := status.Convert(err)
		if st.Code() == codes.Unimplemented {
			return Fail("grpc: server does not implement grpc.health.v1.Health")
		}
		if st.Code() == codes.NotFound {
			return Fail(fmt.Sprintf("grpc: unknown health service %q", g.service))
		}
		return Fail(fmt.Sprintf("grpc: %s: %s", st.Code(), st.Message()))
	}
	s := resp.GetStatus()
	if s != healthpb.HealthCheckResponse_SERVING {
		return Fail("grpc: " + s.String())
	}
	return Pass("grpc: " + s.String())
}
