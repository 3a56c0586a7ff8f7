package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Dependency is one outbound dependency of a service. medic listens on Listen
// and forwards every call to URL (HTTP) or Address (TCP) inside a timeout,
// retries with a budget, a circuit breaker and a bulkhead; the instances get
// its address in DEP_<NAME>_URL (HTTP) or DEP_<NAME>_ADDR (TCP) and point
// their client at it. All instances of the service share the one breaker:
// one instance's failures protect the others.
type Dependency struct {
	// internal | external | cache | model | database: picks the defaults of timeout, retries and
	// breaker (the table in docs/dependencies.md). Default internal.
	Kind string `yaml:"kind" json:"kind,omitempty" jsonschema:"enum=internal,enum=external,enum=cache,enum=model,enum=database"`
	// Base URL of an HTTP dependency (http or https); the path the instance calls is appended.
	// Exactly one of url and address is set.
	URL string `yaml:"url" json:"url,omitempty"`
	// host:port of a TCP dependency (a database, a cache): each connection is spliced to it.
	Address string `yaml:"address" json:"address,omitempty"`
	// Loopback host:port medic listens on for the instances. Required; the port must be fixed
	// (not 0), since the instances get it in their environment before they start.
	Listen string `yaml:"listen" json:"listen"`
	// HTTP: time one try may wait for the response headers (the body then streams).
	// TCP: time to connect to the dependency. Default by kind: internal 3s, external 5s,
	// cache 500ms, model 15s, database 2s.
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
	// TCP: a connection with no bytes either way for this long is closed. Default 10m.
	IdleTimeout Duration `yaml:"idle_timeout" json:"idle_timeout,omitempty"`
	// Retries of a failed try (HTTP: idempotent methods, and requests with an Idempotency-Key header).
	Retries DependencyRetries `yaml:"retries" json:"retries,omitempty"`
	// The circuit breaker shared by all instances of the service.
	Breaker DependencyBreaker `yaml:"breaker" json:"breaker,omitempty"`
	// Bounds on calls (HTTP) or connections (TCP) in flight to the dependency.
	Bulkhead DependencyBulkhead `yaml:"bulkhead" json:"bulkhead,omitempty"`
	// What an HTTP call gets when the dependency fails, the breaker is open or the bulkhead is
	// full. Without it the instance gets 503 (open, full) or 504 (timeout) or 502 (other failures).
	Fallback *DependencyFallback `yaml:"fallback" json:"fallback,omitempty"`
	// HTTP: the largest request body an instance may send and response body it may get through
	// the listener. A larger request is refused with 413; a larger answer with 502 when its length
	// is declared, else it is cut where it passes the cap. Default 32MiB.
	MaxBody ByteSize `yaml:"max_body" json:"max_body,omitempty"`
	// Connection caps and timeouts of the listener (docs/security.md); TCP uses the caps only.
	Limits Limits `yaml:"limits" json:"limits,omitempty"`
}

// DefaultDependencyLimits are a dependency listener's defaults: its clients
// are the service's own instances, all from 127.0.0.1, so the per-source cap
// is the whole cap.
var DefaultDependencyLimits = Limits{MaxConnections: 1024, MaxPerSource: 1024, HeaderTimeout: Duration(10 * time.Second), IdleTimeout: Duration(2 * time.Minute)}

// DefaultDependencyMaxBody is the default of dependencies.*.max_body.
const DefaultDependencyMaxBody = 32 << 20

// DependencyRetries repeats a failed HTTP try after a backoff, within a budget.
type DependencyRetries struct {
	// Retries after the first try. Default by kind: internal and external 2, model 1; TCP 0 (must be 0).
	Max *int `yaml:"max" json:"max,omitempty"`
	// Delay before the first retry; it doubles for each further one. Default 100ms.
	Backoff Duration `yaml:"backoff" json:"backoff,omitempty"`
	// Random spread of each delay, as a fraction of it. Default 0.2.
	Jitter *float64 `yaml:"jitter" json:"jitter,omitempty" jsonschema:"minimum=0,maximum=1"`
	// Retries may be at most this fraction of the calls in flight (at least 3 are always allowed).
	// Default 0.2.
	Budget *float64 `yaml:"budget" json:"budget,omitempty" jsonschema:"minimum=0,maximum=1"`
}

// DependencyBreaker opens after Failures failed tries within Window: calls then
// fail at once (or get the fallback) for OpenFor, after which HalfOpenTrials
// trial calls go through; their success closes it, a failure opens it again.
// A failure is a connect error, a timeout, a reset or a 5xx answer (HTTP), or a
// failed connect (TCP).
type DependencyBreaker struct {
	// Failures within window that open the breaker. Default 5 (model: 3).
	Failures int `yaml:"failures" json:"failures,omitempty" jsonschema:"minimum=1"`
	// Sliding window the failures are counted in. Default 30s (model: 60s).
	Window Duration `yaml:"window" json:"window,omitempty"`
	// Time the breaker stays open before the trial calls. Default 30s.
	OpenFor Duration `yaml:"open_for" json:"open_for,omitempty"`
	// Trial calls let through when half-open; all must succeed to close. Default 1.
	HalfOpenTrials int `yaml:"half_open_trials" json:"half_open_trials,omitempty" jsonschema:"minimum=1"`
}

// DependencyBulkhead bounds what is in flight, so that a hanging dependency
// holds at most MaxConcurrent of the application's threads or connections.
type DependencyBulkhead struct {
	// Calls (HTTP) or connections (TCP) in flight at once. Default 100.
	MaxConcurrent int `yaml:"max_concurrent" json:"max_concurrent,omitempty" jsonschema:"minimum=1"`
	// Calls or connections waiting for a slot; more are refused at once. Default 100; 0 means none wait.
	MaxQueue *int `yaml:"max_queue" json:"max_queue,omitempty" jsonschema:"minimum=0"`
	// A waiting call or connection is refused after this long. Default 1s.
	QueueTimeout Duration `yaml:"queue_timeout" json:"queue_timeout,omitempty"`
}

// DependencyFallback answers an HTTP call that failed. The answer carries
// the header X-Medic-Fallback: last-good, file or static.
type DependencyFallback struct {
	// Status of a static or file answer. Default 503.
	Status int `yaml:"status" json:"status,omitempty" jsonschema:"minimum=200,maximum=599"`
	// A static body.
	Body string `yaml:"body" json:"body,omitempty"`
	// A file whose content is the body, relative to the config file; read when medic starts.
	File string `yaml:"file" json:"file,omitempty"`
	// Serve the last good (2xx) answer to the same GET (method, path and query) seen within ttl;
	// when there is none, body or file answer if set.
	LastGood *LastGood `yaml:"last_good" json:"last_good,omitempty"`
}

// LastGood keeps the last 2xx answer per GET request (bodies up to 256 KiB, 1000 keys).
type LastGood struct {
	// How long a kept answer may be served. Default 5m.
	TTL Duration `yaml:"ttl" json:"ttl,omitempty"`
}

// Dependency kinds.
const (
	DependencyInternal = "internal"
	DependencyExternal = "external"
	DependencyCache    = "cache"
	DependencyModel    = "model"
	DependencyDatabase = "database"
)

var depName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// IsTCP reports whether the dependency is spliced as TCP (it has an address, not a URL).
func (d *Dependency) IsTCP() bool { return d.URL == "" && d.Address != "" }

// DependencyEnv is the environment variable an instance finds the dependency
// NAME in: DEP_<NAME>_URL for HTTP, DEP_<NAME>_ADDR for TCP, NAME upper-cased
// with - turned into _.
func DependencyEnv(name string, d *Dependency) string {
	n := "DEP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	if d.IsTCP() {
		return n + "_ADDR"
	}
	return n + "_URL"
}

// DependencyEnvValue is the value of DependencyEnv: http://LISTEN or LISTEN.
func DependencyEnvValue(d *Dependency) string {
	if d.IsTCP() {
		return d.Listen
	}
	return "http://" + d.Listen
}

// kindDefaults is the table of the issue's seeds: timeouts by kind, the
// model provider's breaker (3 timeouts in 60 s).
var kindDefaults = map[string]struct {
	timeout  time.Duration
	retries  int
	failures int
	window   time.Duration
}{
	DependencyInternal: {3 * time.Second, 2, 5, 30 * time.Second},
	DependencyExternal: {5 * time.Second, 2, 5, 30 * time.Second},
	DependencyCache:    {500 * time.Millisecond, 0, 5, 30 * time.Second},
	DependencyModel:    {15 * time.Second, 1, 3, 60 * time.Second},
	DependencyDatabase: {2 * time.Second, 0, 5, 30 * time.Second},
}

// SetDefaults fills every unset field with its documented default.
func (d *Dependency) SetDefaults() {
	if d.Kind == "" {
		d.Kind = DependencyInternal
	}
	k, ok := kindDefaults[d.Kind]
	if !ok {
		k = kindDefaults[DependencyInternal]
	}
	if d.IsTCP() {
		k.retries = 0
	}
	proxyDefaultDur(&d.Timeout, int64(k.timeout))
	proxyDefaultDur(&d.IdleTimeout, int64(10*time.Minute))
	r := &d.Retries
	proxyDefaultPtr(&r.Max, k.retries)
	proxyDefaultDur(&r.Backoff, int64(100*time.Millisecond))
	proxyDefaultPtr(&r.Jitter, 0.2)
	proxyDefaultPtr(&r.Budget, 0.2)
	b := &d.Breaker
	proxyDefaultInt(&b.Failures, k.failures)
	proxyDefaultDur(&b.Window, int64(k.window))
	proxyDefaultDur(&b.OpenFor, int64(30*time.Second))
	proxyDefaultInt(&b.HalfOpenTrials, 1)
	if d.MaxBody == 0 {
		d.MaxBody = DefaultDependencyMaxBody
	}
	d.Limits.SetDefaults(DefaultDependencyLimits)
	h := &d.Bulkhead
	proxyDefaultInt(&h.MaxConcurrent, 100)
	proxyDefaultPtr(&h.MaxQueue, 100)
	proxyDefaultDur(&h.QueueTimeout, int64(time.Second))
	if f := d.Fallback; f != nil {
		proxyDefaultInt(&f.Status, 503)
		if f.LastGood != nil {
			proxyDefaultDur(&f.LastGood.TTL, int64(5*time.Minute))
		}
	}
}

// Validate reports semantic problems; call it after SetDefaults.
func (d *Dependency) Validate() []FieldIssue {
	var is []FieldIssue
	bad := func(field, format string, args ...any) {
		is = append(is, FieldIssue{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if _, ok := kindDefaults[d.Kind]; !ok {
		bad("kind", "must be internal, external, cache, model or database, not %q", d.Kind)
	}
	if d.MaxBody < 0 {
		bad("max_body", "must not be negative")
	}
	switch {
	case d.URL == "" && d.Address == "":
		bad("url", "required: the dependency's base URL (HTTP), or set address (TCP)")
	case d.URL != "" && d.Address != "":
		bad("address", "set url (HTTP) or address (TCP), not both")
	case d.URL != "":
		if u, err := url.Parse(d.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("url", "want an absolute http:// or https:// URL, got %q", d.URL)
		} else if u.RawQuery != "" || u.Fragment != "" {
			bad("url", "must not carry a query or fragment: the instance's path and query are appended")
		}
	default:
		if _, port, err := net.SplitHostPort(d.Address); err != nil || port == "" || port == "0" {
			bad("address", "want host:port, such as 10.0.0.5:5432, got %q", d.Address)
		}
	}
	if d.Listen == "" {
		bad("listen", "required: the loopback host:port the instances call, such as 127.0.0.1:9701")
	} else if host, port, err := net.SplitHostPort(d.Listen); err != nil {
		bad("listen", "want host:port, such as 127.0.0.1:9701: %v", err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		bad("listen", "port %q must be a number from 1 to 65535 (the instances get it before they start)", port)
	} else if !isLoopback(host) {
		bad("listen", "host %q must be a loopback address: the listener opens the dependency to whoever reaches it", host)
	}
	if d.Timeout <= 0 {
		bad("timeout", "must be positive: every call is bounded")
	}
	if d.IdleTimeout <= 0 {
		bad("idle_timeout", "must be positive")
	}
	r := d.Retries
	if r.Max != nil && (*r.Max < 0 || *r.Max > 10) {
		bad("retries.max", "must be 0 to 10, not %d", *r.Max)
	} else if r.Max != nil && *r.Max > 0 && d.IsTCP() {
		bad("retries.max", "must be 0 for a TCP dependency: medic cannot replay a connection")
	}
	if r.Jitter != nil && (*r.Jitter < 0 || *r.Jitter > 1) {
		bad("retries.jitter", "must be a fraction from 0 to 1, not %v", *r.Jitter)
	}
	if r.Budget != nil && (*r.Budget < 0 || *r.Budget > 1) {
		bad("retries.budget", "must be a fraction from 0 to 1, not %v", *r.Budget)
	}
	b := d.Breaker
	if b.Failures < 1 {
		bad("breaker.failures", "must be at least 1")
	}
	if b.Window <= 0 {
		bad("breaker.window", "must be positive")
	}
	if b.OpenFor <= 0 {
		bad("breaker.open_for", "must be positive")
	}
	if b.HalfOpenTrials < 1 {
		bad("breaker.half_open_trials", "must be at least 1")
	}
	h := d.Bulkhead
	if h.MaxConcurrent < 1 {
		bad("bulkhead.max_concurrent", "must be at least 1")
	}
	if h.MaxQueue != nil && *h.MaxQueue < 0 {
		bad("bulkhead.max_queue", "must not be negative")
	}
	if f := d.Fallback; f != nil {
		if d.IsTCP() {
			bad("fallback", "applies to HTTP dependencies only (a TCP connection has no answer to fake)")
		}
		if f.Body != "" && f.File != "" {
			bad("fallback.file", "set body or file, not both")
		}
		if f.Body == "" && f.File == "" && f.LastGood == nil {
			bad("fallback", "set body, file or last_good")
		}
		if f.Status < 200 || f.Status > 599 {
			bad("fallback.status", "must be an HTTP status from 200 to 599, not %d", f.Status)
		}
	}
	return is
}

// FlagEnv is the environment variable holding flag NAME at an instance's
// start: FLAG_<NAME>, upper-cased, - turned into _.
func FlagEnv(name string) string {
	return "FLAG_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// validateDependencies checks the dependency and flag names of one service
// and that no two listeners share an address.
func (s *Service) validateDependencies(ck *checker, p string) {
	for _, f := range sortedKeys(s.Flags) {
		if !depName.MatchString(f) {
			ck.add(p+".flags."+f, "invalid flag name %q: use lowercase letters, digits, - and _", f)
		}
		if _, ok := s.Env[FlagEnv(f)]; ok {
			ck.add(p+".flags."+f, "%s is set by medic for this flag; remove it from env", FlagEnv(f))
		}
	}
	seen := map[string]string{}
	for _, name := range sortedKeys(s.Dependencies) {
		dp := p + ".dependencies." + name
		if !depName.MatchString(name) {
			ck.add(dp, "invalid dependency name %q: use lowercase letters, digits, - and _", name)
		}
		d := s.Dependencies[name]
		if d == nil {
			ck.add(dp, "empty: set url or address, and listen")
			continue
		}
		if other, ok := seen[d.Listen]; ok && d.Listen != "" {
			ck.add(dp+".listen", "%s is already the listener of dependency %s", d.Listen, other)
		}
		seen[d.Listen] = name
		if _, ok := s.Env[DependencyEnv(name, d)]; ok {
			ck.add(dp, "%s is set by medic for this dependency; remove it from env", DependencyEnv(name, d))
		}
	}
}
