package audit

import (
	"errors"
	"fmt"
)

// The ways a log can fail verification. Errors returned by Verify,
// VerifyHead and Log.Verify wrap exactly one of them in a *ChainError that
// names the seq; match them with errors.Is.
var (
	// ErrEdited: a record's contents no longer match its hash, or a record was
	// rewritten with a recomputed hash so the next record no longer links to it.
	ErrEdited = errors.New("audit: record edited")
	// ErrMissing: a seq is absent from the middle of the log.
	ErrMissing = errors.New("audit: record missing")
	// ErrReordered: records are not in seq order (or a seq appears twice).
	ErrReordered = errors.New("audit: record out of order")
	// ErrTruncated: the log ends before the head that was recorded with the
	// last append: records were removed from the end.
	ErrTruncated = errors.New("audit: log truncated")
	// ErrHeadMissing: the log holds records but a copy of its head is gone,
	// so removal of the last records could not be ruled out.
	ErrHeadMissing = errors.New("audit: head missing")
)

// ChainError locates a verification failure.
type ChainError struct {
	// Seq is the record at fault; for ErrMissing and ErrTruncated, the first
	// seq that is absent.
	Seq    int64
	Err    error  // one of the Err* sentinels above
	Detail string // what was found, for people
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("%v at seq %d: %s", e.Err, e.Seq, e.Detail)
}

// Unwrap returns the sentinel, so errors.Is(err, ErrEdited) works.
func (e *ChainError) Unwrap() error { return e.Err }

func chainErr(seq int64, sentinel error, format string, args ...any) error {
	return &ChainError{Seq: seq, Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}

// Verify checks that records, in slice order, form the chain 1, 2, 3 …:
// each Seq is the previous plus one, each Prev is the previous Hash (zero
// for seq 1) and each Hash is RecordHash(Prev, record). It returns nil for an
// empty slice, and otherwise the first problem as a *ChainError.
//
// Verify cannot see records removed from the end; VerifyHead can, given the
// head recorded separately.
func Verify(records []Record) error {
	var present map[int64]bool // built on the first mismatch only
	var prev Head
	for i, r := range records {
		if want := prev.Seq + 1; r.Seq != want {
			if present == nil {
				present = make(map[int64]bool, len(records))
				for _, x := range records {
					present[x.Seq] = true
				}
			}
			return seqError(i+1, prev.Seq, r.Seq, present[want])
		}
		if err := checkLink(prev, r); err != nil {
			return err
		}
		prev = r.Head()
	}
	return nil
}

// VerifyHead is Verify followed by a check that the log ends exactly at
// head: a head beyond the last record means records were removed from the
// end (ErrTruncated); one before it, or with another hash, means the head or
// the last records were rewritten (ErrEdited).
func VerifyHead(records []Record, head Head) error {
	if err := Verify(records); err != nil {
		return err
	}
	var last Head
	if len(records) > 0 {
		last = records[len(records)-1].Head()
	}
	return checkEnd(last, head, "head")
}

// seqError explains why seq got appears where want = after+1 was expected,
// at 1-based position pos; laterPresent says whether want appears elsewhere.
func seqError(pos int, after, got int64, laterPresent bool) error {
	want := after + 1
	switch {
	case got < want:
		return chainErr(got, ErrReordered, "found at position %d, after seq %d", pos, after)
	case laterPresent:
		return chainErr(got, ErrReordered, "found at position %d, before seq %d", pos, want)
	case got == want+1:
		return chainErr(want, ErrMissing, "seq %d is followed by seq %d", after, got)
	default:
		return chainErr(want, ErrMissing, "seqs %d to %d are absent: seq %d is followed by seq %d", want, got-1, after, got)
	}
}

// checkLink checks r's own hash, then that r links to prev. A record that
// hashes correctly but does not link means prev was rewritten with a
// recomputed hash: the fault is at prev, not at r.
func checkLink(prev Head, r Record) error {
	if h := RecordHash(r.Prev, r); h != r.Hash {
		return chainErr(r.Seq, ErrEdited, "stored hash %.12s… does not match the contents (%.12s…)", r.Hash, h)
	}
	if r.Prev != prev.Hash {
		if prev.Seq == 0 {
			return chainErr(r.Seq, ErrEdited, "first record has prev %.12s…, want zero", r.Prev)
		}
		return chainErr(prev.Seq, ErrEdited, "hash %.12s… is not the %.12s… that seq %d was chained to", prev.Hash, r.Prev, r.Seq)
	}
	return nil
}

// checkEnd compares the last record with a separately stored head, named by
// what for the message.
func checkEnd(last, head Head, what string) error {
	switch {
	case head.Seq > last.Seq:
		return chainErr(last.Seq+1, ErrTruncated, "log ends at seq %d, but the %s records seq %d", last.Seq, what, head.Seq)
	case head.Seq < last.Seq:
		return chainErr(head.Seq+1, ErrEdited, "log continues to seq %d, but the %s records seq %d (records added outside Append, or the %s rolled back)", last.Seq, what, head.Seq, what)
	case head.Hash != last.Hash:
		return chainErr(last.Seq, ErrEdited, "hash %.12s… differs from the %s's %.12s…", last.Hash, what, head.Hash)
	}
	return nil
}
