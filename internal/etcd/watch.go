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
// snapshot of its own (a copy of the prefix per delivery: O(keys); a prefix
// of many keys that changes often wants WatchChanges); it runs on Watch's
// goroutine and should not block. clk paces the retries after a failed read
// (nil: wall clock).
func (c *Client) Watch(ctx context.Context, prefix string, clk clock.Clock, fn func(Snapshot)) error {
	var kvs map[string]KV
	return c.WatchChanges(ctx, prefix, clk, func(u Update) {
		if u.Reset {
			kvs = u.KVs
		} else {
			for _, ch := range u.Changes {
				if ch.Deleted {
					delete(kvs, ch.Key)
				} else {
					kvs[ch.Key] = ch.KV
				}
			}
		}
		fn(Snapshot{Rev: u.Rev, KVs: maps.Clone(kvs)})
	})
}

// Change is one key's new state in a watch: its value, or Deleted.
type Change struct {
	Key     string // the full key
	KV      KV     // zero when Deleted
	Deleted bool
}

// Update is one delivery of WatchChanges: the whole prefix (Reset, with
// KVs: the first read, and the read again after a lost watch: keys may
// have gone or changed in between), or the changes of one watch response in
// the order etcd applied them (Changes). Rev is the revision the receiver's
// copy is at once it applied the update.
type Update struct {
	Rev     int64
	Reset   bool
	KVs     map[string]KV // Reset only, by full key; the receiver owns it
	Changes []Change      // not Reset
}

// WatchChanges calls fn with the content of prefix (an Update with Reset),
// then with every change (an Update with Changes), until ctx ends; it
// returns ctx's error. It reads the prefix once and follows it with a watch
// from the revision of that read (never a poll); when the watch is lost (a
// compaction, no etcd leader) it reads again, delivers that as a Reset and
// watches from its revision. A receiver that applies each change to what it
// keeps does O(changed keys) work per event, where Watch's snapshot costs
// O(keys). fn runs on WatchChanges' goroutine and should not block. clk
// paces the retries after a failed read (nil: wall clock): 50ms doubling to
// 1s.
func (c *Client) WatchChanges(ctx context.Context, prefix string, clk clock.Clock, fn func(Update)) error {
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
		fn(Update{Rev: snap.Rev, Reset: true, KVs: snap.KVs})
		if err := c.follow(ctx, prefix, snap.Rev, fn); ctx.Err() != nil {
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

// follow delivers the watch events after rev until the watch ends.
func (c *Client) follow(ctx context.Context, prefix string, rev int64, fn func(Update)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range c.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("etcd: watch %s: %w", prefix, err)
		}
		if len(wr.Events) == 0 {
			continue
		}
		u := Update{Rev: wr.Header.Revision, Changes: make([]Change, 0, len(wr.Events))}
		for _, ev := range wr.Events {
			ch := Change{Key: string(ev.Kv.Key)}
			switch ev.Type {
			case mvccpb.PUT:
				ch.KV = KV{Value: ev.Kv.Value, CreateRev: ev.Kv.CreateRevision, ModRev: ev.Kv.ModRevision, Lease: ev.Kv.Lease}
			case mvccpb.DELETE:
				ch.Deleted = true
			}
			u.Changes = append(u.Changes, ch)
		}
		fn(u)
	}
	return fmt.Errorf("etcd: watch %s: closed", prefix)
}
