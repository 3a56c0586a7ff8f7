package etcd

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/medic-dev/medic/internal/clock"
)

// Snapshot is the content of a key prefix at one revision.
type Snapshot struct {
	Rev int64
	KVs map[string]KV // by full key
}

// First returns the key directly under prefix+"/" created first: the
// leader of an election at prefix (concurrency.Election's rule).
func (s Snapshot) First(prefix string) (Leader, bool) {
	var best Leader
	found := false
	for k, kv := range s.KVs {
		rest, ok := strings.CutPrefix(k, prefix+"/")
		if !ok || rest == "" || strings.Contains(rest, "/") {
			continue
		}
		if !found || kv.CreateRev < best.CreateRev {
			best, found = Leader{Key: k, KV: kv}, true
		}
	}
	return best, found
}

// Under returns the keys directly under prefix+"/", by their last segment.
func (s Snapshot) Under(prefix string) map[string]KV {
	out := map[string]KV{}
	for k, kv := range s.KVs {
		if rest, ok := strings.CutPrefix(k, prefix+"/"); ok && rest != "" && !strings.Contains(rest, "/") {
			out[rest] = kv
		}
	}
	return out
}

// Watch calls fn with the content of prefix, then again after every change,
// until ctx ends; it returns ctx's error. It reads the prefix once and
// follows it with a watch (never a poll). When the watch is lost (a
// compaction, no etcd leader), it reads again and carries on. fn gets a
// snapshot of its own; it runs on Watch's goroutine and should not block.
// clk paces the retries after a failed read (nil: wall clock).
func (c *Client) Watch(ctx context.Context, prefix string, clk clock.Clock, fn func(Snapshot)) error {
	clk = clock.Or(clk)
	delay := 50 * time.Millisecond
	for {
		snap, err := c.list(ctx, prefix)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			t := clk.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C():
			}
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 50 * time.Millisecond
		fn(Snapshot{Rev: snap.Rev, KVs: maps.Clone(snap.KVs)})
		if err := c.follow(ctx, prefix, snap, fn); ctx.Err() != nil {
			return ctx.Err()
		} else if err != nil {
			continue // read again
		}
	}
}

func (c *Client) list(ctx context.Context, prefix string) (Snapshot, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.cli.Get(rctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return Snapshot{}, fmt.Errorf("etcd: list %s: %w", prefix, err)
	}
	s := Snapshot{Rev: resp.Header.Revision, KVs: make(map[string]KV, len(resp.Kvs))}
	for _, k := range resp.Kvs {
		s.KVs[string(k.Key)] = KV{Value: k.Value, CreateRev: k.CreateRevision, ModRev: k.ModRevision, Lease: k.Lease}
	}
	return s, nil
}

// follow applies watch events to snap until the watch ends.
func (c *Client) follow(ctx context.Context, prefix string, snap Snapshot, fn func(Snapshot)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range c.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(snap.Rev+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("etcd: watch %s: %w", prefix, err)
		}
		if len(wr.Events) == 0 {
			continue
		}
		for _, ev := range wr.Events {
			k := string(ev.Kv.Key)
			switch ev.Type {
			case mvccpb.PUT:
				snap.KVs[k] = KV{Value: ev.Kv.Value, CreateRev: ev.Kv.CreateRevision, ModRev: ev.Kv.ModRevision, Lease: ev.Kv.Lease}
			case mvccpb.DELETE:
				delete(snap.KVs, k)
			}
		}
		snap.Rev = wr.Header.Revision
		fn(Snapshot{Rev: snap.Rev, KVs: maps.Clone(snap.KVs)})
	}
	return fmt.Errorf("etcd: watch %s: closed", prefix)
}
