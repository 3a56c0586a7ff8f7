package fleetview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/etcd"
)

// Anchor is a host's audit chain heads as anchored in etcd, at
// <prefix>/fleet/<fleet>/audit/<host>, without a lease: the anchor outlives
// the host, so that its log can be checked after it died too.
type Anchor struct {
	Host string    `json:"host"`
	API  string    `json:"api,omitempty"` // where the host's audit can be read (Summary.API)
	At   time.Time `json:"at"`            // when the newest head was anchored (the host's clock)
	// Heads are the last MaxAnchors heads anchored, oldest first: one per
	// append batch. Between two of them lie the records of one batch, which
	// is how far a rewrite can be located.
	Heads []audit.Head `json:"heads"`
}

// Newest is the newest anchored head; the zero Head when none.
func (a Anchor) Newest() audit.Head {
	if len(a.Heads) == 0 {
		return audit.Head{}
	}
	return a.Heads[len(a.Heads)-1]
}

// Extend returns a with h appended (the oldest heads dropped beyond
// MaxAnchors). It does not change a.
func (a Anchor) Extend(h audit.Head, api string, now time.Time) Anchor {
	heads := append(append([]audit.Head(nil), a.Heads...), h)
	if len(heads) > MaxAnchors {
		heads = heads[len(heads)-MaxAnchors:]
	}
	return Anchor{Host: a.Host, API: api, At: now, Heads: heads}
}

// AnchorsPrefix is where the hosts of fleet anchor their audit heads.
func AnchorsPrefix(prefix, fleet string) string { return prefix + "/fleet/" + fleet + "/audit" }

// ErrRewritten is wrapped by every error that finds a host's records
// different from what it anchored.
var ErrRewritten = errors.New("audit records differ from the heads anchored in etcd")

// Checker compares one host's records, read in order from the first, with
// its anchor. Add each record, then call Done.
type Checker struct {
	a    Anchor
	prev audit.Head // the last record added
	next int        // index in a.Heads of the next head to meet
	good int64      // seq of the last anchored head that matched
	n    int
}

// NewChecker starts a check of a host's records against a.
func NewChecker(a Anchor) *Checker { return &Checker{a: a} }

// Want is the seq up to which records must be read: the newest anchored head.
func (c *Checker) Want() int64 { return c.a.Newest().Seq }

// Records is how many records were added.
func (c *Checker) Records() int { return c.n }

// Add checks the next record: it must follow the previous one (seq and
// prev hash), its hash must match its content, and where a head is
// anchored at its seq its hash must be the anchored one. The error names
// the record (or the range of records) and the host.
func (c *Checker) Add(r audit.Record) error {
	return c.AddLink(LinkOf(r))
}

// Link is what `medic audit verify --fleet` reads of a peer's record: its
// place in the chain, without its content. Content is the hash the serving
// agent recomputed from the stored content (audit.RecordHash): it differs
// from Hash when the record was changed after it was written. Links are
// served without a token (GET /v1/fleet/audit/chain), so that verifying the
// fleet never sends the operator's token to an address read from etcd.
type Link struct {
	Seq     int64      `json:"seq"`
	Prev    audit.Hash `json:"prev"`
	Hash    audit.Hash `json:"hash"`
	Content audit.Hash `json:"content"`
}

// LinkOf is r's link, its content hash recomputed.
func LinkOf(r audit.Record) Link {
	return Link{Seq: r.Seq, Prev: r.Prev, Hash: r.Hash, Content: audit.RecordHash(r.Prev, r)}
}

// AddLink is Add for a record read as its link.
func (c *Checker) AddLink(r Link) error {
	c.n++
	host := c.a.Host
	switch {
	case r.Seq != c.prev.Seq+1:
		what := fmt.Sprintf("records %d–%d were removed or reordered", c.prev.Seq+1, r.Seq-1)
		if r.Seq == c.prev.Seq+2 {
			what = fmt.Sprintf("record %d was removed", r.Seq-1)
		}
		return fmt.Errorf("host %s: record %d follows record %d: %s: %w", host, r.Seq, c.prev.Seq, what, ErrRewritten)
	case r.Prev != c.prev.Hash:
		return fmt.Errorf("host %s: record %d does not link to record %d (its prev hash differs): %w", host, r.Seq, c.prev.Seq, ErrRewritten)
	case r.Content != r.Hash:
		return fmt.Errorf("host %s: record %d was changed after it was written (its hash does not match its content): %w", host, r.Seq, ErrRewritten)
	}
	for c.next < len(c.a.Heads) && c.a.Heads[c.next].Seq < r.Seq {
		c.next++ // heads older than the records read (cannot happen from seq 1)
	}
	if c.next < len(c.a.Heads) && c.a.Heads[c.next].Seq == r.Seq {
		h := c.a.Heads[c.next]
		if h.Hash != r.Hash {
			from := c.good + 1
			if c.next == 0 {
				if len(c.a.Heads) == MaxAnchors { // older anchors were dropped: the rewrite may be older
					return fmt.Errorf("host %s: record %d differs from the head anchored in etcd at %d (a record at or before %d was rewritten, and the chain recomputed after it): %w",
						host, r.Seq, r.Seq, r.Seq, ErrRewritten)
				}
			}
			what := fmt.Sprintf("record %d was rewritten", r.Seq)
			if from < r.Seq {
				what = fmt.Sprintf("a record in %d–%d was rewritten", from, r.Seq)
			}
			return fmt.Errorf("host %s: %s (record %d's hash %.12s differs from the %.12s anchored in etcd; the chain after it was recomputed): %w",
				host, what, r.Seq, r.Hash, h.Hash, ErrRewritten)
		}
		c.good = r.Seq
		c.next++
	}
	c.prev = audit.Head{Seq: r.Seq, Hash: r.Hash}
	return nil
}

// Done checks that the records reached the newest anchored head.
func (c *Checker) Done() error {
	if w := c.Want(); c.prev.Seq < w {
		return fmt.Errorf("host %s: its log ends at record %d but record %d was anchored in etcd at %s: records were removed: %w",
			c.a.Host, c.prev.Seq, w, c.a.At.UTC().Format(time.RFC3339), ErrRewritten)
	}
	return nil
}

// Anchorer anchors this host's audit head in etcd at most once per Every,
// whenever the head moved (each append batch). It never overwrites an
// anchor its own log does not extend: a store replaced or rewritten under
// a running fleet keeps the old anchor, which then fails `medic audit
// verify --fleet`.
type Anchorer struct {
	Etcd *etcd.Client
	Key  string // AnchorsPrefix(...)+"/"+host
	Host string
	API  string
	Head func() audit.Head
	// At returns this host's record at seq (ok false when the log has no such record).
	At     func(ctx context.Context, seq int64) (r audit.Record, ok bool, err error)
	Every  time.Duration // default 1s
	Clock  clock.Clock
	Logger *slog.Logger
	// Refused is called once when the anchor in etcd is not extended by this
	// host's log (audit it, tell a human); the Anchorer then stops.
	Refused func(ctx context.Context, err error)
}

// Run anchors until ctx ends or the anchor is refused. Each etcd request is
// bounded by Every (at least 1s).
func (an *Anchorer) Run(ctx context.Context) {
	clk := clock.Or(an.Clock)
	logger := an.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	every := an.Every
	if every <= 0 {
		every = time.Second
	}
	bound := max(every, time.Second)
	var cur Anchor
	var rev int64 // mod revision of the anchor key as read; 0 = absent
	read := false
	for {
		if !read {
			if err := an.read(ctx, bound, &cur, &rev); err != nil {
				if errors.Is(err, ErrRewritten) {
					logger.Error("fleet: this host's audit log does not extend the head anchored in etcd; anchoring stops", "err", err)
					if an.Refused != nil {
						an.Refused(ctx, err)
					}
					return
				}
				if ctx.Err() == nil {
					logger.Warn("fleet: cannot read this host's audit anchor", "key", an.Key, "err", err)
				}
			} else {
				read = true
			}
		}
		if h := an.Head(); read && h.Seq > cur.Newest().Seq {
			next := cur.Extend(h, an.API, clk.Now())
			next.Host = an.Host
			b, err := json.Marshal(next)
			if err != nil {
				panic(err) // plain data
			}
			wctx, cancel := context.WithTimeout(ctx, bound)
			resp, err := an.Etcd.Raw().Txn(wctx).If(clientv3.Compare(clientv3.ModRevision(an.Key), "=", rev)).
				Then(clientv3.OpPut(an.Key, string(b))).Commit()
			cancel()
			switch {
			case err != nil:
				if ctx.Err() == nil {
					logger.Warn("fleet: cannot anchor this host's audit head", "key", an.Key, "err", err)
				}
			case !resp.Succeeded:
				read = false // written elsewhere meanwhile: read it and check it again
			default:
				cur, rev = next, resp.Header.Revision
			}
		}
		t := clk.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// read loads the anchor and checks that this host's log extends it.
func (an *Anchorer) read(ctx context.Context, bound time.Duration, cur *Anchor, rev *int64) error {
	rctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	kv, ok, err := an.Etcd.Get(rctx, an.Key)
	if err != nil {
		return err
	}
	if !ok {
		*cur, *rev = Anchor{Host: an.Host}, 0
		return nil
	}
	var a Anchor
	if err := json.Unmarshal(kv.Value, &a); err != nil {
		return fmt.Errorf("anchor %s is not valid JSON (%v): %w", an.Key, err, ErrRewritten)
	}
	if h := a.Newest(); h.Seq > 0 {
		r, ok, err := an.At(rctx, h.Seq)
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("etcd anchors record %d of host %s at %s, and this log has no such record: %w",
				h.Seq, an.Host, a.At.UTC().Format(time.RFC3339), ErrRewritten)
		case r.Hash != h.Hash:
			return fmt.Errorf("etcd anchors record %d of host %s with hash %.12s, and this log's record %d has %.12s: %w",
				h.Seq, an.Host, h.Hash, h.Seq, r.Hash, ErrRewritten)
		}
	}
	*cur, *rev = a, kv.ModRev
	return nil
}

// ReadAnchors reads every host's anchor.
func ReadAnchors(ctx context.Context, cli *etcd.Client, prefix string) (map[string]Anchor, error) {
	resp, err := cli.Raw().Get(ctx, prefix+"/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read the audit anchors under %s: %w", prefix, err)
	}
	out := map[string]Anchor{}
	for _, kv := range resp.Kvs {
		var a Anchor
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			return nil, fmt.Errorf("audit anchor %s: %w", kv.Key, err)
		}
		host := string(kv.Key[len(prefix)+1:])
		a.Host = host
		out[host] = a
	}
	return out, nil
}
