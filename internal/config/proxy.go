package config

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Proxy is the service's health-aware proxy: clients connect to Listen and
// medic forwards each request (or, in tcp mode, each connection) to a ready
// instance, retrying elsewhere and keeping sick instances out of rotation.
type Proxy struct {
	// Address clients connect to, host:port. Required. A port of 0 picks a free one (tests).
	Listen string `yaml:"listen" json:"listen"`
	// http (default): an HTTP/1.1 reverse proxy with retries, outlier ejection, shedding
	// and rate limits. tcp: each connection is spliced to one ready instance
	// (PostgreSQL, Redis); only connect_timeout, retries.max, outlier, drain_timeout,
	// handover_drain, max_silent and limits (caps and header_timeout) apply.
	Mode string `yaml:"mode" json:"mode,omitempty" jsonschema:"enum=http,enum=tcp"`
	// http mode: which code moves the bytes. fast (default): a purpose-built HTTP/1.1 path on
	// fasthttp's server with kept-alive upstream connections and no goroutine per request;
	// upgrades (WebSocket), event streams, chunked request bodies and bodies over
	// retries.max_body still take the net/http path on the same listener. net_http: net/http's
	// server and ReverseProxy for every request. Both make the same decisions.
	DataPlane string `yaml:"data_plane" json:"data_plane,omitempty" jsonschema:"enum=fast,enum=net_http"`
	// Time to open a connection to one instance before trying another. Default 1s.
	ConnectTimeout Duration `yaml:"connect_timeout" json:"connect_timeout,omitempty"`
	// Time one try may wait for the response headers before it is cut (and retried on
	// another instance when that is safe). Bodies then stream without a deadline. Default 5s.
	TryTimeout Duration `yaml:"try_timeout" json:"try_timeout,omitempty"`
	// Time a request may wait for response headers over all its tries; then 504. Default 30s.
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
	// When the proxy stops, in-flight requests and connections get this long to finish
	// before they are cut. Default 10s.
	DrainTimeout Duration `yaml:"drain_timeout" json:"drain_timeout,omitempty"`
	// On a seamless upgrade (medic upgrade, SIGUSR2) the old medic stops accepting at once but
	// keeps serving the connections it holds — in-flight HTTP requests finish and are answered
	// with Connection: close, idle keep-alive connections are closed; TCP connections keep
	// piping until they end — for at most this long, then cuts what is left and exits. The new
	// medic serves every new connection meanwhile. Default 5m.
	HandoverDrain Duration `yaml:"handover_drain" json:"handover_drain,omitempty"`
	// Retries on a different instance.
	Retries ProxyRetries `yaml:"retries" json:"retries,omitempty"`
	// Passive outlier detection and the per-instance circuit breaker it drives.
	Outlier ProxyOutlier `yaml:"outlier" json:"outlier,omitempty"`
	// Load shedding by an adaptive concurrency limit (http mode).
	Shed ProxyShed `yaml:"shed" json:"shed,omitempty"`
	// Per-client rate limits (http mode). Off unless rate is set.
	RateLimit ProxyRateLimit `yaml:"rate_limit" json:"rate_limit,omitempty"`
	// Client classes by verified API key, each with its rate, share of the concurrency limit
	// and retry budget (http mode; docs/dependencies.md). Off unless set.
	Clients *ProxyClients `yaml:"clients" json:"clients,omitempty"`
	// Connection caps and timeouts of the listener (docs/security.md); tcp mode uses the caps
	// and header_timeout (how long a connection waiting for its place among max_silent may
	// stay silent).
	Limits Limits `yaml:"limits" json:"limits,omitempty"`
	// tcp mode: connections to the instances open at once on which neither side has sent a
	// byte yet. Beyond it, a client's connection is opened to an instance only once the
	// client sends its first byte or half-closes, or a silent one speaks or ends (first
	// come, first served); one that stays silent for limits.header_timeout (default 60s in tcp mode, ±10 % per
	// connection) is closed. So a flood of connections that send nothing cannot hold the instances'
	// connection slots (PostgreSQL's max_connections), and a protocol in which the server
	// speaks first (MySQL, SMTP) still gets its connections opened at once up to the cap,
	// then in turn as the ones before it are greeted. Default 128.
	MaxSilent int `yaml:"max_silent" json:"max_silent,omitempty" jsonschema:"minimum=1"`
}

// ProxyRetries says when a failed try is repeated on another instance. A try is
// retried when it failed to connect or nothing was sent (any method), or, for
// idempotent methods only, when it was reset before any response byte, hit
// try_timeout, or answered with a status in on_status.
type ProxyRetries struct {
	// Retries after the first try, each on an instance not tried yet. Default 2; 0 disables retries.
	Max *int `yaml:"max" json:"max,omitempty"`
	// Retries may add at most this fraction of the request rate (over 10 s). Default 0.2.
	Budget *float64 `yaml:"budget" json:"budget,omitempty"`
	// The budget always allows at least this many retries per second. Default 3.
	MinPerSecond *float64 `yaml:"min_per_second" json:"min_per_second,omitempty"`
	// Request bodies up to this size are buffered so a retry can replay them; a larger
	// body is retried only when none of it was sent. Default 64KiB.
	MaxBody ByteSize `yaml:"max_body" json:"max_body,omitempty"`
	// Response statuses that make an idempotent request try another instance. Default [502, 503, 504].
	OnStatus []int `yaml:"on_status" json:"on_status,omitempty"`
}

// ProxyOutlier ejects an instance whose own traffic fails: connect errors, resets,
// try timeouts and 5xx answers count as failures. An ejected instance is out of
// rotation (breaker open); when the ejection time ends one trial request is let
// through (half-open) and its success closes the breaker, as does a readiness edge.
type ProxyOutlier struct {
	// Consecutive failures that eject at once. Default 3.
	ConsecutiveErrors int `yaml:"consecutive_errors" json:"consecutive_errors,omitempty"`
	// Failure ratio over window that ejects, once min_requests were seen. Default 0.5; 0 disables the rule.
	ErrorRate *float64 `yaml:"error_rate" json:"error_rate,omitempty"`
	// Requests within window before error_rate applies. Default 10.
	MinRequests int `yaml:"min_requests" json:"min_requests,omitempty"`
	// Sliding window of the error-rate rule. Default 10s.
	Window Duration `yaml:"window" json:"window,omitempty"`
	// First ejection time; it doubles on each ejection that follows within max_ejection. Default 5s.
	BaseEjection Duration `yaml:"base_ejection" json:"base_ejection,omitempty"`
	// Upper bound of the ejection time. Default 5m.
	MaxEjection Duration `yaml:"max_ejection" json:"max_ejection,omitempty"`
	// Never eject more than this percentage of ready instances (one is always allowed).
	// If no instance is left, all ready ones serve (panic mode). Default 50.
	MaxEjectionPercent *int `yaml:"max_ejection_percent" json:"max_ejection_percent,omitempty"`
}

// ProxyShed is the adaptive concurrency limit: requests over the limit are
// answered 503 with Retry-After at once instead of queueing. While requests
// are refused, the limit settles at tolerance × throughput × the no-queue
// latency of successful tries (Little's law: the concurrency the instances
// serve without queueing), so admitted requests keep their normal latency;
// latency that rises while nothing is refused never lowers it.
type ProxyShed struct {
	// Off switch. Default true.
	Enabled *bool `yaml:"enabled" json:"enabled,omitempty"`
	// Limit at start. Default 100.
	InitialLimit int `yaml:"initial_limit" json:"initial_limit,omitempty"`
	// The limit never falls below this. Default 16.
	MinLimit int `yaml:"min_limit" json:"min_limit,omitempty"`
	// The limit never grows above this. Default 1000.
	MaxLimit int `yaml:"max_limit" json:"max_limit,omitempty"`
	// How far latency may rise over its no-queue baseline, as a ratio, before it counts as
	// queueing; the limit then falls to the knee (throughput × baseline) and admitted requests keep
	// their normal latency. Default 1.1.
	Tolerance float64 `yaml:"tolerance" json:"tolerance,omitempty"`
}

// ProxyRateLimit gives each client its own token bucket, so that one client
// retrying in a loop gets 429 with Retry-After while the others are served.
type ProxyRateLimit struct {
	// Requests per second per client. Default 0: no rate limit.
	Rate float64 `yaml:"rate" json:"rate,omitempty"`
	// Requests a client may send at once above the rate. Default max(1, rate).
	Burst int `yaml:"burst" json:"burst,omitempty"`
	// Request header naming the client (an API key). It names the client only when the key is
	// verified against clients.keys_file; otherwise the client is its IP address, so that a
	// made-up key per request gains nothing. Default X-API-Key.
	KeyHeader string `yaml:"key_header" json:"key_header,omitempty"`
	// Clients tracked at once; the least recently seen is forgotten first. Default 10000.
	MaxClients int `yaml:"max_clients" json:"max_clients,omitempty"`
	// A client idle this long is forgotten. Default 10m.
	Idle Duration `yaml:"idle" json:"idle,omitempty"`
}

// Proxy modes.
const (
	ProxyModeHTTP = "http"
	ProxyModeTCP  = "tcp"
)

// Proxy data planes (http mode).
const (
	ProxyDataPlaneFast    = "fast"
	ProxyDataPlaneNetHTTP = "net_http"
)

// SetDefaults fills every unset field with its documented default.
func (p *Proxy) SetDefaults() {
	if p.Mode == "" {
		p.Mode = ProxyModeHTTP
	}
	if p.DataPlane == "" {
		p.DataPlane = ProxyDataPlaneFast
	}
	proxyDefaultDur(&p.ConnectTimeout, 1e9)
	proxyDefaultDur(&p.TryTimeout, 5e9)
	proxyDefaultDur(&p.Timeout, 30e9)
	proxyDefaultDur(&p.DrainTimeout, 10e9)
	proxyDefaultDur(&p.HandoverDrain, 300e9)

	r := &p.Retries
	proxyDefaultPtr(&r.Max, 2)
	proxyDefaultPtr(&r.Budget, 0.2)
	proxyDefaultPtr(&r.MinPerSecond, 3.0)
	if r.MaxBody == 0 {
		r.MaxBody = 64 << 10
	}
	if r.OnStatus == nil {
		r.OnStatus = []int{502, 503, 504}
	}

	o := &p.Outlier
	proxyDefaultInt(&o.ConsecutiveErrors, 3)
	proxyDefaultPtr(&o.ErrorRate, 0.5)
	proxyDefaultInt(&o.MinRequests, 10)
	proxyDefaultDur(&o.Window, 10e9)
	proxyDefaultDur(&o.BaseEjection, 5e9)
	proxyDefaultDur(&o.MaxEjection, 300e9)
	proxyDefaultPtr(&o.MaxEjectionPercent, 50)

	s := &p.Shed
	proxyDefaultPtr(&s.Enabled, true)
	proxyDefaultInt(&s.InitialLimit, 100)
	proxyDefaultInt(&s.MinLimit, 16)
	proxyDefaultInt(&s.MaxLimit, 1000)
	if s.Tolerance == 0 {
		s.Tolerance = 1.1
	}

	l := &p.RateLimit
	if l.Burst == 0 && l.Rate > 0 {
		l.Burst = max(1, int(l.Rate))
	}
	if l.KeyHeader == "" {
		l.KeyHeader = "X-API-Key"
	}
	proxyDefaultInt(&l.MaxClients, 10000)
	proxyDefaultDur(&l.Idle, 600e9)
	if p.Clients != nil {
		p.Clients.setDefaults(*r.Budget)
	}
	def := DefaultProxyLimits
	if p.Mode == ProxyModeTCP {
		def.HeaderTimeout = Duration(DefaultTCPSilence)
	}
	p.Limits.SetDefaults(def)
	proxyDefaultInt(&p.MaxSilent, DefaultMaxSilent)
}

// DefaultMaxSilent is max_silent's default.
const DefaultMaxSilent = 128

// DefaultTCPSilence is limits.header_timeout's default in tcp mode: how
// long a client connection waiting beyond max_silent may stay silent before
// it is closed (PgBouncer's client_login_timeout is 60s too). The wait holds
// one descriptor and no instance connection, so a longer one costs nothing
// the per-source caps do not already bound, while each close of a flood's
// waiting connections is followed by their redial in one wave (the 10s of
// http mode made one every 10s in bench/flood.sh's TCP phase, and the
// client's slow requests fell in those seconds).
const DefaultTCPSilence = 60 * time.Second

// Validate reports semantic problems; call it after SetDefaults.
func (p *Proxy) Validate() []FieldIssue {
	var is []FieldIssue
	bad := func(field, format string, args ...any) {
		is = append(is, FieldIssue{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if p.Listen == "" {
		bad("listen", "required: the host:port clients connect to")
	} else if host, port, err := net.SplitHostPort(p.Listen); err != nil {
		bad("listen", "want host:port, such as 127.0.0.1:8080: %v", err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		bad("listen", "port %q is not a number from 0 to 65535", port)
	} else if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		bad("listen", "host %q must be an IP address or localhost", host)
	}
	if p.DataPlane != ProxyDataPlaneFast && p.DataPlane != ProxyDataPlaneNetHTTP {
		bad("data_plane", "must be fast or net_http, not %q", p.DataPlane)
	}
	if p.Mode != ProxyModeHTTP && p.Mode != ProxyModeTCP {
		bad("mode", "must be http or tcp, not %q", p.Mode)
	}
	if p.TryTimeout > p.Timeout {
		bad("try_timeout", "%v exceeds timeout %v: no try could use it", p.TryTimeout, p.Timeout)
	}
	if r := p.Retries; r.Max != nil && (*r.Max < 0 || *r.Max > 10) {
		bad("retries.max", "must be 0 to 10, not %d", *r.Max)
	}
	if r := p.Retries; r.Budget != nil && (*r.Budget < 0 || *r.Budget > 1) {
		bad("retries.budget", "must be a fraction from 0 to 1, not %v", *r.Budget)
	}
	if r := p.Retries; r.MinPerSecond != nil && *r.MinPerSecond < 0 {
		bad("retries.min_per_second", "must not be negative")
	}
	if p.Retries.MaxBody < 0 {
		bad("retries.max_body", "must not be negative")
	}
	for i, s := range p.Retries.OnStatus {
		if s < 500 || s > 599 {
			bad(fmt.Sprintf("retries.on_status[%d]", i), "%d is not a 5xx status", s)
		}
	}
	o := p.Outlier
	if o.ConsecutiveErrors < 0 {
		bad("outlier.consecutive_errors", "must not be negative")
	}
	if o.ErrorRate != nil && (*o.ErrorRate < 0 || *o.ErrorRate > 1) {
		bad("outlier.error_rate", "must be a fraction from 0 to 1, not %v", *o.ErrorRate)
	}
	if o.MinRequests < 0 {
		bad("outlier.min_requests", "must not be negative")
	}
	if o.MaxEjection < o.BaseEjection {
		bad("outlier.max_ejection", "%v is below base_ejection %v", o.MaxEjection, o.BaseEjection)
	}
	if o.MaxEjectionPercent != nil && (*o.MaxEjectionPercent < 0 || *o.MaxEjectionPercent > 100) {
		bad("outlier.max_ejection_percent", "must be 0 to 100, not %d", *o.MaxEjectionPercent)
	}
	s := p.Shed
	if s.MinLimit < 1 {
		bad("shed.min_limit", "must be at least 1")
	}
	if s.MaxLimit < s.MinLimit {
		bad("shed.max_limit", "%d is below min_limit %d", s.MaxLimit, s.MinLimit)
	}
	if s.InitialLimit < s.MinLimit || s.InitialLimit > s.MaxLimit {
		bad("shed.initial_limit", "%d is outside min_limit..max_limit (%d..%d)", s.InitialLimit, s.MinLimit, s.MaxLimit)
	}
	if s.Tolerance < 1 {
		bad("shed.tolerance", "must be at least 1 (a ratio to the baseline latency), not %v", s.Tolerance)
	}
	l := p.RateLimit
	if l.Rate < 0 {
		bad("rate_limit.rate", "must not be negative")
	}
	if l.Burst < 0 {
		bad("rate_limit.burst", "must not be negative")
	}
	if l.MaxClients < 1 {
		bad("rate_limit.max_clients", "must be at least 1")
	}
	if p.MaxSilent < 1 {
		bad("max_silent", "must be at least 1, not %d", p.MaxSilent)
	}
	if p.Clients != nil {
		if p.Mode == ProxyModeTCP {
			bad("clients", "client classes need mode http")
		}
		p.Clients.validate(bad)
	}
	return is
}

func proxyDefaultDur(d *Duration, def int64) {
	if *d == 0 {
		*d = Duration(def)
	}
}

func proxyDefaultInt(n *int, def int) {
	if *n == 0 {
		*n = def
	}
}

func proxyDefaultPtr[T any](p **T, def T) {
	if *p == nil {
		*p = &def
	}
}
