package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/sqlite"
)

// Log is the audit chain stored in the embedded store (table audit, schema in
// internal/sqlite), with its head kept twice apart from the records: in the
// audit_head table, updated in the same transaction as each insert, and in
// the file audit.head next to the database, rewritten after each commit.
//
// Rows are only ever inserted: no code path updates or deletes one.
//
// A Log is safe for concurrent use; appends are serialised. Two processes
// appending to one store stay consistent too (each append reads the head
// inside a write transaction), though medic runs one writer per data dir.
type Log struct {
	db    *sqlite.DB
	clock clock.Clock
	sem   chan struct{} // one token: the right to append

	mu   sync.Mutex
	head Head // as of the last append or Open
}

// Open returns the Log stored in db, loading its head. clk stamps records
// that arrive without a Time; nil means the wall clock. The Log does not own
// db: close db after the last Append has returned.
func Open(db *sqlite.DB, clk clock.Clock) (*Log, error) {
	l := &Log{db: db, clock: clock.Or(clk), sem: make(chan struct{}, 1)}
	removeStaleHeadTemps(db.Dir())
	ctx, cancel := context.WithTimeout(context.Background(), sqlite.BusyTimeout)
	defer cancel()
	tx, err := db.SQL().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	pos, err := position(ctx, tx, db.Dir())
	if err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	l.head = pos
	return l, nil
}

// Head returns the head as of the last Append or Open.
func (l *Log) Head() Head {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head
}

// Append assigns r its Seq, Prev and Hash, and its Time from the clock when
// r.Time is zero, stores it, and returns the stored record. It returns only
// once the record is committed with synchronous=FULL, i.e. fsynced: an
// acknowledged record survives a crash of medic or of the machine.
//
// r must name an Actor and a Kind. Strings are stored as valid UTF-8
// (invalid bytes become U+FFFD) so the stored record hashes the same when it
// is read back. The caller's Fields map is copied, not retained.
//
// If the commit succeeded but rewriting audit.head failed, Append returns
// the stored record (Seq > 0) together with the error: the record is durable
// and must not be appended again.
func (l *Log) Append(ctx context.Context, r Record) (Record, error) {
	rs, err := l.AppendBatch(ctx, []Record{r})
	if len(rs) == 1 {
		return rs[0], err
	}
	return Record{}, err
}

// AppendBatch is Append for several records at once, in order: one
// transaction (one fsync of the store) and one rewrite of audit.head for
// all of them (a group commit). Either every record is committed or none
// is; it returns only once they are. If the commit succeeded but rewriting
// audit.head failed, it returns the stored records together with the
// error, as Append does. A batch of none is no error.
func (l *Log) AppendBatch(ctx context.Context, in []Record) ([]Record, error) {
	if len(in) == 0 {
		return nil, nil
	}
	rs := make([]Record, len(in))
	for i, r := range in {
		n, err := normalize(r)
		if err != nil {
			return nil, err
		}
		rs[i] = n
	}
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("audit: append %s: %w", rs[0].Kind, ctx.Err())
	}
	defer func() { <-l.sem }()

	err := l.db.WithTx(ctx, func(tx *sql.Tx) error {
		pos, err := position(ctx, tx, l.db.Dir())
		if err != nil {
			return err
		}
		for i := range rs {
			r := rs[i]
			if r.Time.IsZero() {
				r.Time = canonicalTime(l.clock.Now())
			}
			r = Next(pos, r)
			fields, err := encodeFields(r.Fields)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO audit
			(seq, time_ns, actor, kind, target, reason, correlation, fields, prev, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.Seq, r.Time.UnixNano(), r.Actor, r.Kind, r.Target, r.Reason, r.Correlation,
				fields, r.Prev.String(), r.Hash.String()); err != nil {
				return fmt.Errorf("insert seq %d: %w", r.Seq, err)
			}
			rs[i], pos = r, r.Head()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)
			ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`,
			pos.Seq, pos.Hash.String()); err != nil {
			return fmt.Errorf("update head to seq %d: %w", pos.Seq, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: append %s: %w", batchKinds(rs), err)
	}
	last := rs[len(rs)-1]
	l.mu.Lock()
	l.head = last.Head()
	l.mu.Unlock()
	// After the commit, never before: a head file ahead of the table would
	// read as truncation after a crash; one behind is tolerated (see Verify).
	if err := writeHeadFile(l.db.Dir(), last.Head()); err != nil {
		if len(rs) == 1 {
			return rs, fmt.Errorf("audit: record %d is stored, but: %w", last.Seq, err)
		}
		return rs, fmt.Errorf("audit: records %d to %d are stored, but: %w", rs[0].Seq, last.Seq, err)
	}
	return rs, nil
}

// batchKinds names a batch's records in an error: the kind of one, or the
// first kind and how many.
func batchKinds(rs []Record) string {
	if len(rs) == 1 {
		return rs[0].Kind
	}
	return fmt.Sprintf("%s and %d more", rs[0].Kind, len(rs)-1)
}

// position returns where the next record goes: after the furthest of the
// head table, the head file and the last row. They agree unless someone
// removed records; continuing after the furthest one turns such a removal
// into a permanent gap that Verify reports, instead of chaining over it.
func position(ctx context.Context, q querier, dir string) (Head, error) {
	pos, _, err := readHeadRow(ctx, q)
	switch {
	case errors.Is(err, errMalformedHead):
		// A garbled row must not stop appends: go by the other two (Verify reports it).
		pos = Head{}
	case err != nil:
		return Head{}, err
	}
	var last Head
	var hash string
	err = q.QueryRowContext(ctx, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").Scan(&last.Seq, &hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return Head{}, fmt.Errorf("read last record: %w", err)
	default:
		// An unparsable hash leaves last.Hash zero: the next record then
		// fails to link, and Verify names this record as edited.
		last.Hash, _ = ParseHash(hash)
		if last.Seq > pos.Seq {
			pos = last
		}
	}
	// A missing or unreadable head file must not stop appends; Verify reports it.
	if file, err := readHeadFile(dir); err == nil && file.Seq > pos.Seq {
		pos = file
	}
	return pos, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// errMalformedHead marks an audit_head row whose hash does not parse.
var errMalformedHead = errors.New("malformed head row")

// readHeadRow returns the audit_head row; ok is false when there is none.
func readHeadRow(ctx context.Context, q querier) (h Head, ok bool, err error) {
	var hash string
	err = q.QueryRowContext(ctx, "SELECT seq, hash FROM audit_head WHERE id = 1").Scan(&h.Seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return Head{}, false, nil
	}
	if err != nil {
		return Head{}, false, fmt.Errorf("read head: %w", err)
	}
	if h.Hash, err = ParseHash(hash); err != nil {
		return Head{Seq: h.Seq}, false, fmt.Errorf("read head at seq %d: %w: %w", h.Seq, errMalformedHead, err)
	}
	return h, true, nil
}

// normalize checks r and puts it in the form it will have when read back.
func normalize(r Record) (Record, error) {
	if r.Actor == "" || r.Kind == "" {
		return Record{}, fmt.Errorf("audit: append %q: a record needs an actor and a kind", r.Kind)
	}
	if !r.Time.IsZero() {
		if y := r.Time.Year(); y < 1678 || y > 2261 { // the range of UnixNano
			return Record{}, fmt.Errorf("audit: append %s: time %v out of range", r.Kind, r.Time)
		}
		r.Time = canonicalTime(r.Time)
	}
	for _, s := range []*string{&r.Actor, &r.Kind, &r.Target, &r.Reason, &r.Correlation} {
		*s = validUTF8(*s)
	}
	if len(r.Fields) == 0 {
		r.Fields = nil
	} else {
		fields := make(map[string]string, len(r.Fields))
		for k, v := range r.Fields {
			fields[validUTF8(k)] = validUTF8(v)
		}
		r.Fields = fields
	}
	r.Seq, r.Prev, r.Hash = 0, Hash{}, Hash{}
	return r, nil
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// canonicalTime is t as it reads back from the store: UTC, no monotonic reading.
func canonicalTime(t time.Time) time.Time { return time.Unix(0, t.UnixNano()).UTC() }

func encodeFields(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m) // sorts keys
	if err != nil {
		return "", fmt.Errorf("encode fields: %w", err)
	}
	return string(b), nil
}
