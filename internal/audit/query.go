package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Filter selects records for List. Zero fields match everything.
type Filter struct {
	Target string
	Actor  string
	Kind   string
	Since  time.Time // Time >= Since
	Until  time.Time // Time < Until
	// AfterSeq selects records with Seq > AfterSeq: a caller following the
	// log passes the last Seq it has seen.
	AfterSeq int64
	// Limit caps the number of records; 0 means no cap. With AfterSeq == 0
	// the newest Limit records are kept (a tail); with AfterSeq > 0 the
	// oldest Limit records after it (the next page).
	Limit int
	// Forward pages from AfterSeq even when it is 0: the oldest Limit
	// records after it (a reader walking the log from its first record).
	Forward bool
}

const recordColumns = "seq, time_ns, actor, kind, target, reason, correlation, fields, prev, hash"

// List returns the records matching f in seq order, oldest first.
func (l *Log) List(ctx context.Context, f Filter) ([]Record, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if f.Target != "" {
		add("target = ?", f.Target)
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.Kind != "" {
		add("kind = ?", f.Kind)
	}
	if !f.Since.IsZero() {
		add("time_ns >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add("time_ns < ?", f.Until.UnixNano())
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	q := "SELECT " + recordColumns + " FROM audit"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	switch {
	case f.Limit <= 0:
		q += " ORDER BY seq"
	case f.AfterSeq > 0 || f.Forward:
		q += " ORDER BY seq LIMIT ?"
		args = append(args, f.Limit)
	default: // the newest Limit, returned oldest first
		q = "SELECT * FROM (" + q + " ORDER BY seq DESC LIMIT ?) ORDER BY seq"
		args = append(args, f.Limit)
	}
	rows, err := l.db.SQL().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("audit: list: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	return out, nil
}

// At returns the record at seq; ok is false when the log has none.
func (l *Log) At(ctx context.Context, seq int64) (r Record, ok bool, err error) {
	rows, err := l.db.SQL().QueryContext(ctx, "SELECT "+recordColumns+" FROM audit WHERE seq = ?", seq)
	if err != nil {
		return r, false, fmt.Errorf("audit: read record %d: %w", seq, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return r, false, rows.Err()
	}
	r, err = scanRecord(rows)
	if err != nil {
		return r, false, fmt.Errorf("audit: read record %d: %w", seq, err)
	}
	return r, true, nil
}

// Verify reads every record in seq order and checks the chain (see the
// package Verify), then that the log ends where the audit_head table says,
// and that the head file agrees with it. The head file may lag the log (a
// crash between commit and rewrite) but must then name a record that exists
// with that hash. n is the number of records read; err is the first problem
// found, wrapping one of the Err* sentinels in a *ChainError, or an I/O error.
//
// Verify reads one consistent snapshot and does not block Append.
func (l *Log) Verify(ctx context.Context) (n int, err error) {
	// Read the head file before the snapshot: it is written after each
	// commit, so it can then only be behind the snapshot, never ahead.
	file, fileErr := readHeadFile(l.db.Dir())

	tx, err := l.db.SQL().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("audit: verify: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	table, tableOK, tableErr := readHeadRow(ctx, tx)
	if tableErr != nil && !errors.Is(tableErr, errMalformedHead) {
		return 0, fmt.Errorf("audit: verify: %w", tableErr)
	}
	rows, err := tx.QueryContext(ctx, "SELECT "+recordColumns+" FROM audit ORDER BY seq")
	if err != nil {
		return 0, fmt.Errorf("audit: verify: %w", err)
	}
	defer rows.Close()

	var last Head
	var fileHashSeen *Hash // the stored hash at seq file.Seq
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return n, err // a ChainError for undecodable rows
		}
		n++
		if r.Seq != last.Seq+1 {
			return n, seqError(n, last.Seq, r.Seq, false) // ORDER BY seq: a jump is a gap
		}
		if err := checkLink(last, r); err != nil {
			return n, err
		}
		last = r.Head()
		if fileErr == nil && r.Seq == file.Seq {
			fileHashSeen = &r.Hash
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("audit: verify: %w", err)
	}

	switch {
	case tableErr != nil:
		return n, chainErr(table.Seq, ErrEdited, "head table: %v", tableErr)
	case tableOK:
		if err := checkEnd(last, table, "head table"); err != nil {
			return n, err
		}
	case last.Seq > 0:
		return n, chainErr(last.Seq+1, ErrHeadMissing, "the head table is empty")
	}

	switch {
	case errors.Is(fileErr, errNoHeadFile):
		if last.Seq > 0 {
			return n, chainErr(last.Seq+1, ErrHeadMissing, "%s is missing: cannot rule out removal of records after seq %d", HeadFile, last.Seq)
		}
	case fileErr != nil:
		return n, chainErr(last.Seq+1, ErrHeadMissing, "%v", fileErr)
	case file.Seq > last.Seq:
		return n, chainErr(last.Seq+1, ErrTruncated, "log ends at seq %d, but %s records seq %d", last.Seq, HeadFile, file.Seq)
	case fileHashSeen == nil || *fileHashSeen != file.Hash:
		return n, chainErr(file.Seq, ErrEdited, "hash differs from the %.12s… that %s records", file.Hash, HeadFile)
	}
	return n, nil
}

// scanRecord decodes one row. A row that cannot be decoded (a hash that is
// not hex, fields that are not JSON) was written by something other than
// Append: it is reported as ErrEdited.
func scanRecord(rows *sql.Rows) (Record, error) {
	var r Record
	var ns int64
	var fields, prev, hash string
	if err := rows.Scan(&r.Seq, &ns, &r.Actor, &r.Kind, &r.Target, &r.Reason, &r.Correlation, &fields, &prev, &hash); err != nil {
		return Record{}, fmt.Errorf("scan record: %w", err)
	}
	r.Time = time.Unix(0, ns).UTC()
	var err error
	if r.Prev, err = ParseHash(prev); err != nil {
		return Record{}, chainErr(r.Seq, ErrEdited, "stored prev: %v", err)
	}
	if r.Hash, err = ParseHash(hash); err != nil {
		return Record{}, chainErr(r.Seq, ErrEdited, "stored hash: %v", err)
	}
	if fields != "{}" {
		if err := json.Unmarshal([]byte(fields), &r.Fields); err != nil {
			return Record{}, chainErr(r.Seq, ErrEdited, "stored fields: %v", err)
		}
		if len(r.Fields) == 0 {
			r.Fields = nil
		}
	}
	return r, nil
}
