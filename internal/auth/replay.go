package auth

import (
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// DefaultMaxSeen is the default bound of a SeenSignatures: 100 000
// signatures within the window (about 10 MB when full), that is 1 666 signed
// requests a second for the default 60 s window.
const DefaultMaxSeen = 100_000

// ErrSignatureReplayed: the same signature was already presented within its
// window. Refused with 401 like every signature that does not verify.
var ErrSignatureReplayed = errors.New("signature already used (a replay): sign each request afresh")

// ErrSeenFull: the cache of seen signatures is full, so a new signature
// cannot be remembered, and is refused (503) rather than let through
// unremembered, which would let it be replayed.
var ErrSeenFull = errors.New("too many signed requests within the signature window to remember them all; try again shortly")

// SeenSignatures remembers the signatures verified within the window, so
// that each is good once: a captured request cannot be sent again while its
// time is still inside the window (after that, VerifySigned refuses it as
// stale, and it is forgotten). It holds at most max signatures; when full it
// refuses new ones (ErrSeenFull) instead of forgetting some that could then
// be replayed. The caller gives the time (an injected clock); it is safe for
// concurrent use.
//
// A signature is keyed by its HMAC, which covers the key, the method, the
// target and the time: two honest requests to the same target within the
// same second with the same key have the same signature, so the second is
// refused as a replay. A client that sends such requests must make their
// targets differ (a request id in the query) or wait a second.
//
// Each proxy keeps its own: the same signed request sent to two medic hosts'
// proxies is accepted by each once.
type SeenSignatures struct {
	mu     sync.Mutex
	max    int
	window int64 // seconds
	seen   map[[sha256.Size]byte]struct{}
	// byExpiry lists the signatures by the last second in which they are
	// within the window (s.Unix + window); swept up to now.
	byExpiry map[int64][][sha256.Size]byte
	swept    int64 // seconds before this one have been swept
}

// NewSeenSignatures makes a cache for signatures accepted within window of
// the clock, holding at most max (DefaultMaxSeen when max <= 0).
func NewSeenSignatures(window time.Duration, max int) *SeenSignatures {
	if max <= 0 {
		max = DefaultMaxSeen
	}
	return &SeenSignatures{
		max:      max,
		window:   int64(window / time.Second),
		seen:     map[[sha256.Size]byte]struct{}{},
		byExpiry: map[int64][][sha256.Size]byte{},
	}
}

// Use records s as used at now. It returns ErrSignatureReplayed when s was
// used before and is still within the window, ErrSeenFull when max
// signatures within the window are remembered already. Call it only for a
// signature that verified: an unverified one must not take room.
func (c *SeenSignatures) Use(s Signature, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep(now.Unix())
	if _, ok := c.seen[s.MAC]; ok {
		return ErrSignatureReplayed
	}
	if len(c.seen) >= c.max {
		return ErrSeenFull
	}
	exp := s.Unix + c.window
	if exp < c.swept {
		// Outside the window already (VerifySigned refuses it): nothing to keep.
		return nil
	}
	c.seen[s.MAC] = struct{}{}
	c.byExpiry[exp] = append(c.byExpiry[exp], s.MAC)
	return nil
}

// Len is how many signatures are remembered.
func (c *SeenSignatures) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// RetryAfter is how long until the oldest remembered signature is forgotten
// (at least 1 s): the Retry-After of an ErrSeenFull refusal.
func (c *SeenSignatures) RetryAfter(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	oldest := int64(-1)
	for exp := range c.byExpiry {
		if oldest < 0 || exp < oldest {
			oldest = exp
		}
	}
	if d := oldest + 1 - now.Unix(); oldest >= 0 && d > 1 {
		return time.Duration(d) * time.Second
	}
	return time.Second
}

// sweep forgets the signatures whose window ended before second now: they
// are stale for VerifySigned. Its work is bounded by the signatures
// forgotten plus the seconds elapsed, and the first sweep (or one after a
// long quiet spell) only visits the buckets that exist.
func (c *SeenSignatures) sweep(now int64) {
	if now <= c.swept {
		return // the clock stood still or went back: keep everything
	}
	if now-c.swept > int64(len(c.byExpiry)) {
		for exp, macs := range c.byExpiry {
			if exp < now {
				c.forget(exp, macs)
			}
		}
	} else {
		for sec := c.swept; sec < now; sec++ {
			if macs, ok := c.byExpiry[sec]; ok {
				c.forget(sec, macs)
			}
		}
	}
	c.swept = now
}

func (c *SeenSignatures) forget(exp int64, macs [][sha256.Size]byte) {
	for _, m := range macs {
		delete(c.seen, m)
	}
	delete(c.byExpiry, exp)
}
