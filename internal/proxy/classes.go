package proxy

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"sort"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/config"
)

// Client is who sent a request, as far as the proxy can verify it.
type Client struct {
	// Class is the index of the request's class (ClassNames); 0 without classes.
	Class int
	// Key names the client for the per-client rate limit: "key:<name>" for a
	// verified key, else "ip:<address>". An unverified header never names a
	// client, so a fresh made-up key per request lands in the same bucket.
	Key string
}

// classes are the client classes of one proxy (config.ProxyClients): who is
// in which class, each class's rate, seats of the concurrency limit and
// retry budget. The seat rule is a pure function of the in-flight counts and
// the limit (seat), tested by tables.
type classes struct {
	list   []class
	byName map[string]int
	def    int
	header string
	keys   atomic.Pointer[auth.ClientKeys]
	// extra are keys made for drills (AddKey), by SHA-256; copied on write.
	extra    atomic.Pointer[map[[sha256.Size]byte]auth.ClientKey]
	sumShare float64
}

type class struct {
	name     string
	priority int
	share    float64
	lendable float64       // fraction of its seats others may borrow while idle
	bucket   *rate.Limiter // nil: no class rate
	inflight int           // requests holding a seat; under Decision.limMu
	breaker  *classBreaker // nil: the class has no breaker of its own

	admitted, shed, limited atomic.Uint64
}

func newClasses(c *config.ProxyClients) *classes {
	names := c.ClassNames()
	cs := &classes{byName: map[string]int{}, header: c.KeyHeader, list: make([]class, len(names))}
	for i, name := range names {
		cc := c.Classes[name]
		cl := &cs.list[i]
		cl.name, cl.priority, cl.share, cl.lendable = name, cc.Priority, *cc.Share, float64(*cc.Lendable)/100
		cl.breaker = newClassBreaker(cc.Breaker)
		if cc.Rate > 0 {
			cl.bucket = rate.NewLimiter(rate.Limit(cc.Rate), max(cc.Burst, 1))
		}
		cs.byName[name] = i
		cs.sumShare += cl.share
	}
	cs.def = cs.byName[c.Default]
	return cs
}

// setKeys installs the verified keys; every class they name must exist.
func (cs *classes) setKeys(k *auth.ClientKeys) error {
	var missing []string
	for c := range k.Classes() {
		if _, ok := cs.byName[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("client keys name classes not defined under proxy.clients.classes: %v", missing)
	}
	cs.keys.Store(k)
	return nil
}

// addKey lets key stand for class until the returned func is called.
func (cs *classes) addKey(key []byte, name, class string) (func(), error) {
	if _, ok := cs.byName[class]; !ok {
		return nil, fmt.Errorf("no client class %q", class)
	}
	d := sha256.Sum256(key)
	edit := func(f func(m map[[sha256.Size]byte]auth.ClientKey)) {
		for {
			old := cs.extra.Load()
			m := map[[sha256.Size]byte]auth.ClientKey{}
			if old != nil {
				maps.Copy(m, *old)
			}
			f(m)
			if cs.extra.CompareAndSwap(old, &m) {
				return
			}
		}
	}
	edit(func(m map[[sha256.Size]byte]auth.ClientKey) { m[d] = auth.ClientKey{Name: name, Class: class} })
	return func() { edit(func(m map[[sha256.Size]byte]auth.ClientKey) { delete(m, d) }) }, nil
}

// identify maps a presented key (possibly empty) and the client's address to
// a Client. Only a key found in the keys file names a client or a class;
// anything else is the default class, keyed by address.
func (cs *classes) identify(key []byte, ip string, needKey bool) Client {
	ck, ok := cs.keys.Load().Verify(key)
	if m := cs.extra.Load(); !ok && m != nil && len(key) > 0 && len(key) <= auth.MaxClientKeyLen {
		ck, ok = (*m)[sha256.Sum256(key)]
	}
	if ok {
		c := Client{Class: cs.byName[ck.Class]}
		if needKey {
			c.Key = "key:" + ck.Name
		}
		return c
	}
	c := Client{Class: cs.def}
	if needKey {
		c.Key = "ip:" + ip
	}
	return c
}

// seats returns class i's nominal seats (its share of limit) and its
// guaranteed seats (the part it does not lend).
func (cs *classes) seats(i, limit int) (nominal, guaranteed int) {
	cl := &cs.list[i]
	nominal = max(1, int(float64(limit)*cl.share/cs.sumShare))
	guaranteed = nominal - int(math.Floor(float64(nominal)*cl.lendable))
	return nominal, guaranteed
}

// seat decides whether a request of class i gets a seat when total requests
// hold seats of the concurrency limit (Kubernetes API Priority and
// Fairness, without queues):
//
//   - within its guaranteed seats, always: nobody may borrow them;
//   - otherwise while total stays below the limit minus the guaranteed
//     seats other classes leave idle (it borrows what they lend);
//   - a class within its nominal share takes back, beyond the limit, as many
//     seats as lower-priority classes hold over their own shares: those
//     borrowers are refused until they are back within theirs, so under
//     overload the lowest priority is shed first.
func (cs *classes) seat(i, limit, total int) bool {
	n, g := cs.seats(i, limit)
	in := cs.list[i].inflight
	if in < g {
		return true
	}
	allow := limit
	for j := range cs.list {
		if j == i {
			continue
		}
		nj, gj := cs.seats(j, limit)
		ij := cs.list[j].inflight
		allow -= max(0, gj-ij)
		if in < n && cs.list[j].priority < cs.list[i].priority {
			allow += max(0, ij-nj)
		}
	}
	return total < allow
}

// allowBucket takes a token from b at now, or says how long to wait.
func allowBucket(b *rate.Limiter, now time.Time) (bool, time.Duration) {
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// ClassStats is one client class as the proxy sees it.
type ClassStats struct {
	Name     string  `json:"name"`
	Priority int     `json:"priority"`
	Share    float64 `json:"share"`
	// Seats of the current concurrency limit: its share, and the part it does not lend.
	NominalSeats    int `json:"nominal_seats"`
	GuaranteedSeats int `json:"guaranteed_seats"`
	Inflight        int `json:"inflight"`
	// Requests admitted, refused with 503 for want of a seat, refused with 429 by the class rate.
	Admitted    uint64 `json:"admitted"`
	Shed        uint64 `json:"shed"`
	RateLimited uint64 `json:"rate_limited"`
	Default     bool   `json:"default,omitempty"`
	// The class's own breaker (clients.classes.*.breaker): closed, open or half-open; the
	// times it opened and the requests it refused (503). Empty without one.
	Breaker        string `json:"breaker,omitempty"`
	BreakerOpened  uint64 `json:"breaker_opened,omitempty"`
	BreakerRefused uint64 `json:"breaker_refused,omitempty"`
}

// ClientKey makes a random key that stands for a client of class until
// remove is called; the drills send their classes' traffic with it.
func (p *Proxy) ClientKey(name, class string) (key string, remove func(), err error) {
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", nil, err
	}
	key = "medic_drill_" + hex.EncodeToString(raw[:])
	remove, err = p.d.AddClientKey([]byte(key), name, class)
	if err != nil {
		return "", nil, fmt.Errorf("proxy %s: %w", p.service, err)
	}
	return key, remove, nil
}

// KeyHeader is the header that carries a client's API key.
func (p *Proxy) KeyHeader() string { return p.d.KeyHeader() }

// KeysFile is the client keys file the proxy verifies keys against; "" without one.
func (p *Proxy) KeysFile() string { return p.keysFile }

// ReloadClientKeys reads the client keys file again (`medic reload`, SIGHUP)
// and puts its keys in force at once: a removed key is refused (served in the
// default class) from the next request on. added and removed name the keys
// that changed. On any error — the file does not parse (file:line:col), its
// group or others may write it, it names a class the proxy does not have —
// the keys in force stay. Without a keys file it does nothing.
func (p *Proxy) ReloadClientKeys() (added, removed []string, err error) {
	if p.keysFile == "" {
		return nil, nil, nil
	}
	next, err := loadClientKeys(&config.ProxyClients{KeysFile: p.keysFile, Signature: sigOn(p.keysSigned)})
	if err != nil {
		return nil, nil, err
	}
	prev := p.d.classes.keys.Load()
	if err := p.d.SetClientKeys(next); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", p.keysFile, err)
	}
	added, removed = prev.Changes(next)
	return added, removed, nil
}

// identifySigned is identify for a request that carries a signature header
// (auth.Signature) instead of its key: a signature that does not parse, is
// outside window of now, does not verify or was already used (seen) is an
// error (the request is refused with 401), never the default class: a client
// that signs means to be someone.
func (cs *classes) identifySigned(sig, method, target []byte, now time.Time, window time.Duration, seen *auth.SeenSignatures, needKey bool) (Client, error) {
	s, err := auth.ParseSignature(sig)
	if err != nil {
		return Client{Class: cs.def}, err
	}
	ck, err := cs.keys.Load().VerifySigned(s, method, target, now, window)
	if err != nil {
		return Client{Class: cs.def}, err
	}
	// Only a verified signature is remembered: a made-up one takes no room.
	if seen != nil {
		if err := seen.Use(s, now); err != nil {
			return Client{Class: cs.def}, err
		}
	}
	c := Client{Class: cs.byName[ck.Class]}
	if needKey {
		c.Key = "key:" + ck.Name
	}
	return c, nil
}

// loadClientKeys reads c's keys file; with signed requests on it must be
// unreadable by group and others too.
func loadClientKeys(c *config.ProxyClients) (*auth.ClientKeys, error) {
	if c.Signature != nil {
		if err := auth.CheckPrivate(c.KeysFile); err != nil {
			return nil, err
		}
	}
	return auth.LoadClientKeys(c.KeysFile)
}

func sigOn(on bool) *config.ProxySignature {
	if on {
		return &config.ProxySignature{}
	}
	return nil
}
