package etcd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/medic-dev/medic/internal/clock"
)

// Session is a lease with an explicit TTL that its owner renews by calling
// Renew. concurrency.Session renews in the background and reports a loss
// only once the lease is gone; a primary must instead know, before that, the
// earliest moment its lease could expire, so that it can demote itself
// first. The server renews a lease on receipt of the request, so the lease
// lives at least until (time the request was sent + TTL): SafeUntil. Using
// the send time, never the time of the answer, keeps the bound on the safe
// side whatever the network delay.
//
// Renewals are only ever made by Renew: a stuck owner loses its lease,
// which is what lets the cluster replace it.
type Session struct {
	c     *Client
	clock clock.Clock
	id    clientv3.LeaseID
	conc  *concurrency.Session

	mu        sync.Mutex
	ttl       time.Duration
	safeUntil time.Time
	expired   bool
}

// NewSession grants a lease of ttl (rounded up to whole seconds, as etcd
// grants them) and returns its session. clk may be nil (wall clock).
func (c *Client) NewSession(ctx context.Context, ttl time.Duration, clk clock.Clock) (*Session, error) {
	clk = clock.Or(clk)
	secs := int64(math.Ceil(ttl.Seconds()))
	if secs < 1 {
		return nil, fmt.Errorf("etcd: session TTL %v: must be at least 1s", ttl)
	}
	sent := clk.Now()
	resp, err := c.cli.Grant(ctx, secs)
	if err != nil {
		return nil, fmt.Errorf("etcd: grant a lease of %ds: %w", secs, err)
	}
	// The concurrency session only carries the lease for Election; its own
	// keep-alive is switched off by a context that is already done (see the
	// type's doc for why renewals must be explicit).
	off, cancel := context.WithCancel(context.Background())
	cancel()
	conc, err := concurrency.NewSession(c.cli, concurrency.WithLease(resp.ID), concurrency.WithContext(off))
	if err != nil {
		c.cli.Revoke(context.WithoutCancel(ctx), resp.ID)
		return nil, fmt.Errorf("etcd: session on lease %x: %w", resp.ID, err)
	}
	granted := time.Duration(resp.TTL) * time.Second
	return &Session{c: c, clock: clk, id: resp.ID, conc: conc, ttl: granted, safeUntil: sent.Add(granted)}, nil
}

// Lease is the session's lease id.
func (s *Session) Lease() int64 { return int64(s.id) }

// TTL is the lease's time to live as etcd granted it.
func (s *Session) TTL() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ttl
}

// SafeUntil is the earliest moment the lease can expire given the
// renewals that succeeded so far.
func (s *Session) SafeUntil() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.safeUntil
}

// Expired reports whether a renewal found the lease gone.
func (s *Session) Expired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expired
}

// Renew renews the lease once and returns the new SafeUntil. It returns
// ErrLeaseExpired when the lease is gone (the session is then useless:
// make another), and ctx's error or the transport's when etcd did not
// answer, in which case SafeUntil is unchanged.
func (s *Session) Renew(ctx context.Context) (time.Time, error) {
	sent := s.clock.Now()
	resp, err := s.c.cli.KeepAliveOnce(ctx, s.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.expired = true
			return s.safeUntil, fmt.Errorf("etcd: renew lease %x: %w", s.id, ErrLeaseExpired)
		}
		return s.safeUntil, fmt.Errorf("etcd: renew lease %x: %w", s.id, err)
	}
	s.ttl = time.Duration(resp.TTL) * time.Second
	if until := sent.Add(s.ttl); until.After(s.safeUntil) {
		s.safeUntil = until
	}
	return s.safeUntil, nil
}

// Put writes key bound to the session's lease: it disappears with the session.
func (s *Session) Put(ctx context.Context, key, value string) error {
	if _, err := s.c.cli.Put(ctx, key, value, clientv3.WithLease(s.id)); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("etcd: put %s: %w", key, ErrLeaseExpired)
		}
		return fmt.Errorf("etcd: put %s: %w", key, err)
	}
	return nil
}

// Close revokes the lease, deleting every key bound to it (a leader's key
// among them: the clean way to hand over). A lease already gone is not an
// error.
func (s *Session) Close(ctx context.Context) error {
	_, err := s.c.cli.Revoke(ctx, s.id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd: revoke lease %x: %w", s.id, err)
	}
	s.mu.Lock()
	s.expired = true
	s.mu.Unlock()
	return nil
}

// ResumeSession takes over a lease another process granted and handed over
// (a medic upgrade: the old medic stopped renewing it, the new one carries
// on): it renews the lease once, so that the session starts with a
// SafeUntil of its own, and fails with ErrLeaseExpired when the lease is
// gone. etcd lets any client renew any lease it knows the id of; the
// caller must make sure the previous owner no longer renews or revokes it.
func (c *Client) ResumeSession(ctx context.Context, id int64, clk clock.Clock) (*Session, error) {
	clk = clock.Or(clk)
	off, cancel := context.WithCancel(context.Background())
	cancel()
	conc, err := concurrency.NewSession(c.cli, concurrency.WithLease(clientv3.LeaseID(id)), concurrency.WithContext(off))
	if err != nil {
		return nil, fmt.Errorf("etcd: session on lease %x: %w", id, err)
	}
	s := &Session{c: c, clock: clk, id: clientv3.LeaseID(id), conc: conc}
	if _, err := s.Renew(ctx); err != nil {
		return nil, fmt.Errorf("etcd: resume lease %x: %w", id, err)
	}
	return s, nil
}
