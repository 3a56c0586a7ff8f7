package config

import (
	"regexp"
	"sort"
	"time"
)

// ProxyClients sorts a service's inbound clients into classes (human,
// agent, internal, or any name) by their verified API key, and gives each
// class its own rate, its own share of the concurrency limit (borrowing what
// other classes leave idle, as Kubernetes API Priority and Fairness does) and
// its own retry budget. A request without a key, or with a key that is not
// in keys_file, is served in the default class: one shared bucket however many
// different keys are made up.
type ProxyClients struct {
	// File of hashed client keys: `keys: [{name, class, sha256}]`, the sha256 being the hex
	// SHA-256 of the key. Relative to the config file. Like api.tokens_file it must not be
	// writable by its group or others. Without it every request is in the default class.
	KeysFile string `yaml:"keys_file" json:"keys_file,omitempty"`
	// Request header that carries the key; `Authorization: Bearer <key>` is read too. Default X-API-Key.
	KeyHeader string `yaml:"key_header" json:"key_header,omitempty"`
	// Class of requests without a verified key (none, unknown, spoofed). Must be one of classes. Default "default".
	Default string `yaml:"default" json:"default,omitempty"`
	// The classes by name.
	Classes map[string]*ProxyClass `yaml:"classes" json:"classes,omitempty"`
	// Lets clients sign each request with their key (HMAC-SHA256) instead of sending the
	// key: `<header>: <key name>:<unix seconds>:<hex HMAC>` (docs/dependencies.md). Off
	// without it. The keys file then holds what verifies a signature: keep it unreadable by
	// group and others (it is refused otherwise).
	Signature *ProxySignature `yaml:"signature" json:"signature,omitempty"`
}

// ProxySignature is the signed-request option of client classes.
type ProxySignature struct {
	// Request header that carries the signature. Default X-Medic-Signature.
	Header string `yaml:"header" json:"header,omitempty"`
	// A signature whose time is further than this from the proxy's clock, either way, is
	// refused (401): a captured request cannot be replayed after it. Default 60s, at most 15m.
	Window Duration `yaml:"window" json:"window,omitempty"`
	// Signatures remembered within the window, so that each is accepted once (a replayed one
	// is refused, 401). When this many are remembered, a new signature is refused (503,
	// Retry-After) rather than let through unremembered. Default 100000 (about 10 MB), at
	// most 10000000.
	MaxSeen int `yaml:"max_seen" json:"max_seen,omitempty"`
}

// MaxSignatureWindow bounds clients.signature.window.
const MaxSignatureWindow = 15 * time.Minute

// DefaultSignatureMaxSeen and MaxSignatureMaxSeen: clients.signature.max_seen's default and bound.
const (
	DefaultSignatureMaxSeen = 100_000
	MaxSignatureMaxSeen     = 10_000_000
)

// ProxyClassBreaker is a class's own circuit breaker on the service: when the
// class's failed requests (5xx answers, no answer, timeouts) reach failures
// within window, the class's requests are refused at once (503) for open_for,
// then half_open_trials requests are let through; their success closes it.
// Other classes are not affected: each class has its own breaker.
type ProxyClassBreaker struct {
	// Failed requests of the class within window that open its breaker. Default 5.
	Failures int `yaml:"failures" json:"failures,omitempty"`
	// The window in which failures are counted. Default 30s.
	Window Duration `yaml:"window" json:"window,omitempty"`
	// How long the breaker stays open before it lets trial requests through. Default 30s.
	OpenFor Duration `yaml:"open_for" json:"open_for,omitempty"`
	// Trial requests let through when half-open; all must succeed to close it. Default 1.
	HalfOpenTrials int `yaml:"half_open_trials" json:"half_open_trials,omitempty"`
}

// ProxyClass is one class of clients.
type ProxyClass struct {
	// Higher is more important. When the concurrency limit is reached, a class within its
	// share takes back the seats that lower-priority classes borrowed: they are shed first. Default 0.
	Priority int `yaml:"priority" json:"priority,omitempty"`
	// Weight of the class in the concurrency limit: its seats are limit × share / the sum of
	// the shares. Default 1.
	Share *float64 `yaml:"share" json:"share,omitempty"`
	// Percentage of its seats that other classes may borrow while this class leaves them idle;
	// the rest is kept free for it. Default 50.
	Lendable *int `yaml:"lendable" json:"lendable,omitempty"`
	// Requests per second of the whole class (all its keys together); over it, 429 with
	// Retry-After. Default 0: no class rate.
	Rate float64 `yaml:"rate" json:"rate,omitempty"`
	// Requests the class may send at once above its rate. Default max(1, rate).
	Burst int `yaml:"burst" json:"burst,omitempty"`
	// The class's own retry budget: its retries may add at most this fraction of its own
	// request rate (over 10 s). Default: the proxy's retries.budget.
	RetryBudget *float64 `yaml:"retry_budget" json:"retry_budget,omitempty"`
	// The class's own breaker on the service (failures within window open it for open_for).
	// Without it the class has no breaker of its own.
	Breaker *ProxyClassBreaker `yaml:"breaker" json:"breaker,omitempty"`
}

// validHeaderName is an HTTP header name (RFC 9110 token), bounded.
var validHeaderName = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")

// validClassName is what a class name may look like: it is a metric label.
var validClassName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// MaxProxyClasses bounds the classes of one proxy (metric cardinality, per-request work).
const MaxProxyClasses = 16

// Enabled reports whether classes are configured.
func (c *ProxyClients) Enabled() bool { return c != nil && len(c.Classes) > 0 }

// setDefaults fills the unset fields; retryBudget is the proxy's retries.budget.
func (c *ProxyClients) setDefaults(retryBudget float64) {
	if c.KeyHeader == "" {
		c.KeyHeader = "X-API-Key"
	}
	if c.Default == "" {
		c.Default = "default"
	}
	if sg := c.Signature; sg != nil {
		if sg.Header == "" {
			sg.Header = "X-Medic-Signature"
		}
		if sg.Window == 0 {
			sg.Window = Duration(time.Minute)
		}
		if sg.MaxSeen == 0 {
			sg.MaxSeen = DefaultSignatureMaxSeen
		}
	}
	for _, cl := range c.Classes {
		if cl == nil {
			continue
		}
		proxyDefaultPtr(&cl.Share, 1.0)
		proxyDefaultPtr(&cl.Lendable, 50)
		if cl.Burst == 0 && cl.Rate > 0 {
			cl.Burst = max(1, int(cl.Rate))
		}
		proxyDefaultPtr(&cl.RetryBudget, retryBudget)
		if b := cl.Breaker; b != nil {
			if b.Failures == 0 {
				b.Failures = 5
			}
			if b.Window == 0 {
				b.Window = Duration(30 * time.Second)
			}
			if b.OpenFor == 0 {
				b.OpenFor = Duration(30 * time.Second)
			}
			if b.HalfOpenTrials == 0 {
				b.HalfOpenTrials = 1
			}
		}
	}
}

// validate reports problems, with fields relative to the proxy section.
func (c *ProxyClients) validate(bad func(field, format string, args ...any)) {
	if len(c.Classes) == 0 {
		bad("clients.classes", "define at least one class (and the default class %q)", c.Default)
		return
	}
	if len(c.Classes) > MaxProxyClasses {
		bad("clients.classes", "%d classes; at most %d", len(c.Classes), MaxProxyClasses)
	}
	if _, ok := c.Classes[c.Default]; !ok {
		bad("clients.default", "class %q is not defined under clients.classes (%v)", c.Default, c.ClassNames())
	}
	if sg := c.Signature; sg != nil {
		if sg.Window.D() < time.Second || sg.Window.D() > MaxSignatureWindow {
			bad("clients.signature.window", "must be from 1s to %v, not %v", MaxSignatureWindow, sg.Window.D())
		}
		if sg.MaxSeen < 1 || sg.MaxSeen > MaxSignatureMaxSeen {
			bad("clients.signature.max_seen", "must be from 1 to %d, not %d", MaxSignatureMaxSeen, sg.MaxSeen)
		}
		if c.KeysFile == "" {
			bad("clients.signature", "signed requests are verified against clients.keys_file: set it")
		}
		if !validHeaderName.MatchString(sg.Header) {
			bad("clients.signature.header", "invalid header name %q", sg.Header)
		}
	}
	for _, name := range c.ClassNames() {
		cl := c.Classes[name]
		f := "clients.classes." + name
		if !validClassName.MatchString(name) {
			bad(f, "invalid class name: want lower-case letters, digits, '_' or '-', at most 32, starting with a letter")
		}
		if cl == nil {
			bad(f, "empty class: give it at least a share or a rate")
			continue
		}
		if cl.Share != nil && (*cl.Share <= 0 || *cl.Share > 1000) {
			bad(f+".share", "must be above 0 and at most 1000, not %v", *cl.Share)
		}
		if cl.Lendable != nil && (*cl.Lendable < 0 || *cl.Lendable > 100) {
			bad(f+".lendable", "must be a percentage from 0 to 100, not %d", *cl.Lendable)
		}
		if cl.Rate < 0 {
			bad(f+".rate", "must not be negative")
		}
		if cl.Burst < 0 {
			bad(f+".burst", "must not be negative")
		}
		if cl.RetryBudget != nil && (*cl.RetryBudget < 0 || *cl.RetryBudget > 1) {
			bad(f+".retry_budget", "must be a fraction from 0 to 1, not %v", *cl.RetryBudget)
		}
		if b := cl.Breaker; b != nil {
			if b.Failures < 1 || b.Failures > 100000 {
				bad(f+".breaker.failures", "must be from 1 to 100000, not %d", b.Failures)
			}
			if b.Window.D() < 100*time.Millisecond || b.Window.D() > time.Hour {
				bad(f+".breaker.window", "must be from 100ms to 1h, not %v", b.Window.D())
			}
			if b.OpenFor.D() < 100*time.Millisecond || b.OpenFor.D() > time.Hour {
				bad(f+".breaker.open_for", "must be from 100ms to 1h, not %v", b.OpenFor.D())
			}
			if b.HalfOpenTrials < 1 || b.HalfOpenTrials > 1000 {
				bad(f+".breaker.half_open_trials", "must be from 1 to 1000, not %d", b.HalfOpenTrials)
			}
		}
	}
}

// ClassNames returns the class names in sorted order.
func (c *ProxyClients) ClassNames() []string {
	names := make([]string, 0, len(c.Classes))
	for n := range c.Classes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
