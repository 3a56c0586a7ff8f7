package config

import (
	"fmt"
	"time"
)

// Limits bound what clients can hold of one listener (docs/security.md). A
// connection beyond a cap is refused at once (an HTTP listener answers 503
// with Retry-After first); at a cap, an idle or never-used connection is
// closed, oldest first, to let the new one in. Active requests are never cut.
type Limits struct {
	// Connections open at once. Default: api 256, proxy 10000.
	MaxConnections int `yaml:"max_connections" json:"max_connections,omitempty" jsonschema:"minimum=1"`
	// Connections open at once from one IP address. Default: api 64, proxy 1000 (raise it
	// behind a load balancer, whose connections all come from a few addresses).
	MaxPerSource int `yaml:"max_per_source" json:"max_per_source,omitempty" jsonschema:"minimum=1"`
	// Time a client has to send a request's headers (slowloris). Default: api 5s, proxy 10s
	// (tcp mode 60s: how long a connection waiting beyond max_silent may stay silent).
	HeaderTimeout Duration `yaml:"header_timeout" json:"header_timeout,omitempty"`
	// A keep-alive connection with no request for this long is closed. Default: api 30s, proxy 2m.
	IdleTimeout Duration `yaml:"idle_timeout" json:"idle_timeout,omitempty"`
}

// The listener defaults (docs/security.md).
var (
	DefaultAPILimits   = Limits{MaxConnections: 256, MaxPerSource: 64, HeaderTimeout: Duration(5 * time.Second), IdleTimeout: Duration(30 * time.Second)}
	DefaultProxyLimits = Limits{MaxConnections: 10000, MaxPerSource: 1000, HeaderTimeout: Duration(10 * time.Second), IdleTimeout: Duration(2 * time.Minute)}
)

// DeadlineJitter is how far each connection's read deadlines may move
// (netguard.Options.DeadlineJitter): a tenth of the shorter of
// header_timeout and idle_timeout, so that neither moves by more than a
// tenth of itself. A jitter drawn from header_timeout alone put an
// idle_timeout shorter than it in the past for some connections, which were
// then closed right after each response.
func (l Limits) DeadlineJitter() time.Duration {
	return min(l.HeaderTimeout.D(), l.IdleTimeout.D()) / 10
}

// SetDefaults fills every unset field from def.
func (l *Limits) SetDefaults(def Limits) {
	if l.MaxConnections == 0 {
		l.MaxConnections = def.MaxConnections
	}
	if l.MaxPerSource == 0 {
		l.MaxPerSource = def.MaxPerSource
	}
	if l.HeaderTimeout == 0 {
		l.HeaderTimeout = def.HeaderTimeout
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = def.IdleTimeout
	}
}

// FileMode is the parsed Mode (DefaultLogMode when unset or malformed: validation reports it).
func (l Logs) FileMode() uint32 {
	var m uint32
	if _, err := fmt.Sscanf(l.Mode, "%o", &m); err != nil || l.Mode == "" || m > 0o777 {
		return DefaultLogMode
	}
	return m
}
