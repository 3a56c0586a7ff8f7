package etcd

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Election is one session's candidacy in the election at a key prefix
// (concurrency.Election: the candidate whose key was created first leads).
// While it leads, Rev is the creation revision of its key: the fencing
// token. Every write the leader makes with PutIfLeader or DeleteIfLeader is
// a transaction that succeeds only while that key still exists with that
// revision, so a leader that lost its lease cannot overwrite the state its
// successor wrote.
type Election struct {
	s      *Session
	prefix string
	e      *concurrency.Election
}

// Election returns the session's candidacy at prefix (no trailing slash).
func (s *Session) Election(prefix string) *Election {
	return &Election{s: s, prefix: prefix, e: concurrency.NewElection(s.conc, prefix)}
}

// Campaign blocks until this session leads, or ctx ends (then its key is
// withdrawn and ctx's error returned). val is the leader value others read.
func (e *Election) Campaign(ctx context.Context, val string) error {
	if err := e.e.Campaign(ctx, val); err != nil {
		return fmt.Errorf("etcd: campaign at %s: %w", e.prefix, err)
	}
	return nil
}

// Rev is the creation revision of the leader key while this session leads, else 0.
func (e *Election) Rev() int64 {
	if e.e.Key() == "" {
		return 0
	}
	return e.e.Rev()
}

// Key is the leader key while this session leads, else "".
func (e *Election) Key() string { return e.e.Key() }

// Proclaim replaces the leader value without a new election. It returns
// ErrNotLeader when the key is gone.
func (e *Election) Proclaim(ctx context.Context, val string) error {
	if err := e.e.Proclaim(ctx, val); err != nil {
		if errors.Is(err, concurrency.ErrElectionNotLeader) {
			return fmt.Errorf("etcd: proclaim at %s: %w", e.prefix, ErrNotLeader)
		}
		return fmt.Errorf("etcd: proclaim at %s: %w", e.prefix, err)
	}
	return nil
}

// Resign deletes the leader key (if it is still ours) so that the next
// candidate leads at once.
func (e *Election) Resign(ctx context.Context) error {
	if err := e.e.Resign(ctx); err != nil {
		return fmt.Errorf("etcd: resign at %s: %w", e.prefix, err)
	}
	return nil
}

// PutIfLeader writes key (without a lease) only while this session leads
// with the same revision; ErrNotLeader otherwise.
func (e *Election) PutIfLeader(ctx context.Context, key, value string) error {
	return e.fenced(ctx, "put "+key, clientv3.OpPut(key, value))
}

// DeleteIfLeader deletes key only while this session leads; ErrNotLeader otherwise.
func (e *Election) DeleteIfLeader(ctx context.Context, key string) error {
	return e.fenced(ctx, "delete "+key, clientv3.OpDelete(key))
}

func (e *Election) fenced(ctx context.Context, what string, op clientv3.Op) error {
	key, rev := e.e.Key(), e.e.Rev()
	if key == "" {
		return fmt.Errorf("etcd: %s: %w", what, ErrNotLeader)
	}
	resp, err := e.s.c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
		Then(op).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd: %s: %w", what, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd: %s: leader key %s (revision %d) is gone: %w", what, key, rev, ErrNotLeader)
	}
	return nil
}

// Leader is the current holder of an election.
type Leader struct {
	Key string
	KV
}

// Leader reads who leads the election at prefix; ErrNoLeader when nobody does.
func (c *Client) Leader(ctx context.Context, prefix string) (Leader, error) {
	resp, err := c.cli.Get(ctx, prefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return Leader{}, fmt.Errorf("etcd: read the leader of %s: %w", prefix, err)
	}
	if len(resp.Kvs) == 0 {
		return Leader{}, fmt.Errorf("etcd: read the leader of %s: %w", prefix, ErrNoLeader)
	}
	k := resp.Kvs[0]
	return Leader{Key: string(k.Key), KV: KV{Value: k.Value, CreateRev: k.CreateRevision, ModRev: k.ModRevision, Lease: k.Lease}}, nil
}

// ResumeElection is the session's candidacy that already leads with the
// leader key key created at revision rev (handed over by the process that
// won it). It checks that the key still exists with that revision and is
// bound to the session's lease; ErrNotLeader otherwise.
func (s *Session) ResumeElection(ctx context.Context, prefix, key string, rev int64) (*Election, error) {
	resp, err := s.c.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("etcd: resume the election at %s: read %s: %w", prefix, key, err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != rev || resp.Kvs[0].Lease != int64(s.id) {
		return nil, fmt.Errorf("etcd: resume the election at %s: key %s (revision %d, lease %x) is gone: %w", prefix, key, rev, s.id, ErrNotLeader)
	}
	return &Election{s: s, prefix: prefix, e: concurrency.ResumeElection(s.conc, prefix, key, rev)}, nil
}
