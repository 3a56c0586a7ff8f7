package proxy

import (
	"container/list"
	"time"

	"golang.org/x/time/rate"
)

// ClientLimits holds one token bucket per client key, so that one client
// retrying in a loop is refused while the others are served. It remembers at
// most max clients: the least recently seen is forgotten first, and a client
// idle for longer than idle is forgotten when next looked at. A forgotten
// client starts again with a full bucket, which bounds memory at the price of
// letting an evicted client burst once more. Every method takes now (x/time/rate's
// AllowN style); callers serialise access.
type ClientLimits struct {
	rate  rate.Limit
	burst int
	max   int
	idle  time.Duration
	byKey map[string]*list.Element
	lru   list.List // of *client, most recent at the front
}

type client struct {
	key  string
	lim  *rate.Limiter
	seen time.Time
}

// NewClientLimits allows each client perSecond requests with the given burst,
// tracking at most maxClients and forgetting clients idle for idle.
func NewClientLimits(perSecond float64, burst, maxClients int, idle time.Duration) *ClientLimits {
	return &ClientLimits{
		rate: rate.Limit(perSecond), burst: max(burst, 1), max: max(maxClients, 1), idle: idle,
		byKey: make(map[string]*list.Element),
	}
}

// Allow takes a token for key at now. When none is left it returns false and
// how long the client should wait before its next request.
func (c *ClientLimits) Allow(now time.Time, key string) (ok bool, retryAfter time.Duration) {
	c.expire(now)
	e, found := c.byKey[key]
	if found {
		c.lru.MoveToFront(e)
	} else {
		if c.lru.Len() >= c.max {
			c.remove(c.lru.Back())
		}
		e = c.lru.PushFront(&client{key: key, lim: rate.NewLimiter(c.rate, c.burst)})
		c.byKey[key] = e
	}
	cl := e.Value.(*client)
	cl.seen = now
	r := cl.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Len is the number of clients remembered.
func (c *ClientLimits) Len() int { return c.lru.Len() }

// expire forgets idle clients from the back of the list; amortised O(1).
func (c *ClientLimits) expire(now time.Time) {
	for e := c.lru.Back(); e != nil; e = c.lru.Back() {
		if now.Sub(e.Value.(*client).seen) < c.idle {
			return
		}
		c.remove(e)
	}
}

func (c *ClientLimits) remove(e *list.Element) {
	delete(c.byKey, e.Value.(*client).key)
	c.lru.Remove(e)
}
