// Package audit is medic's tamper-evident record of every decision: an
// append-only log of Records, each chained to the one before it by SHA-256,
// in the spirit of golang.org/x/mod/sumdb/tlog but linear.
//
// This file is the pure part: the record, its canonical encoding, the hash and
// Verify. It does no I/O. log.go stores the chain in the embedded store.
//
// What the chain detects: any change to a stored record (its hash no longer
// matches), a record removed from the middle (a gap in Seq), records out of
// order, and — with the head kept apart from the records — records removed
// from the end. What it cannot detect: someone who rewrites a record, every
// record after it, and both copies of the head. The chain has no secret; only
// copying the head somewhere the attacker cannot write (a notification, a
// ticket) makes such a rewrite visible.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// HashSize is the size of a Hash in bytes.
const HashSize = sha256.Size

// Hash is a SHA-256 digest. It renders as lower-case hex in JSON and text.
// The zero Hash is the Prev of the first record.
type Hash [HashSize]byte

// String returns the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText encodes the hash as lower-case hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes 64 hex digits.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// ParseHash decodes 64 hex digits (either case).
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*HashSize {
		return h, fmt.Errorf("audit: malformed hash %q: want %d hex digits", s, 2*HashSize)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("audit: malformed hash %q: %w", s, err)
	}
	return h, nil
}

// Record is one audit entry. Seq, Prev and Hash are assigned by Log.Append;
// Time is too when it is zero.
type Record struct {
	Seq  int64     `json:"seq"`  // 1, 2, 3 … without gaps
	Time time.Time `json:"time"` // UTC, nanosecond precision
	// Actor is who decided: a runbook id for automation, a token's name for a human.
	Actor string `json:"actor"`
	// Kind names what happened ("action.start", "decision.blocked", "auth.denied" …).
	Kind   string `json:"kind"`
	Target string `json:"target,omitempty"` // what it happened to ("web/2")
	Reason string `json:"reason,omitempty"` // the same string the log line and the API show
	// Correlation groups the records of one incident.
	Correlation string            `json:"correlation,omitempty"`
	Fields      map[string]string `json:"fields,omitempty"`
	Prev        Hash              `json:"prev"` // Hash of record Seq-1; zero for Seq 1
	Hash        Hash              `json:"hash"` // RecordHash(Prev, this record)
}

// Head is the position of the end of the log: the last record's Seq and Hash.
// The zero Head is an empty log.
type Head struct {
	Seq  int64 `json:"seq"`
	Hash Hash  `json:"hash"`
}

// recordPrefix separates record hashes from any other use of SHA-256 over
// similar bytes (RFC 6962 §2.1 uses 0x00 for leaves, 0x01 for nodes; medic
// keeps 0x00 for records and reserves the rest).
const recordPrefix = 0x00

// encodingVersion is the first byte of the encoding, so that a future format
// can be told apart from this one inside the hash.
const encodingVersion = 1

// RecordHash returns SHA-256(0x00 ‖ prev ‖ encode(r)), where encode is:
//
//	version   1 byte, = 1
//	seq       8 bytes, big-endian two's complement
//	time      8 bytes, big-endian Unix nanoseconds (r.Time.UnixNano(); the zone is irrelevant)
//	actor, kind, target, reason, correlation
//	          each as a 4-byte big-endian length followed by the bytes
//	fields    4-byte big-endian count, then for each key in byte order:
//	          key and value, each length-prefixed as above
//
// Every variable-length part carries its length, so no two different records
// share an encoding ("ab"+"c" ≠ "a"+"bc"). r.Prev and r.Hash are not part of
// the encoding: the link comes from prev. A nil and an empty Fields encode
// the same.
func RecordHash(prev Hash, r Record) Hash {
	b := make([]byte, 0, 1+HashSize+128)
	b = append(b, recordPrefix)
	b = append(b, prev[:]...)
	b = appendRecord(b, r)
	return sha256.Sum256(b)
}

func appendRecord(b []byte, r Record) []byte {
	b = append(b, encodingVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	for _, s := range [...]string{r.Actor, r.Kind, r.Target, r.Reason, r.Correlation} {
		b = appendString(b, s)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Fields)))
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, r.Fields[k])
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// Next returns r placed after prev: Seq = prev.Seq+1, Prev = prev.Hash and
// Hash computed. r.Time must already be set.
func Next(prev Head, r Record) Record {
	r.Seq = prev.Seq + 1
	r.Prev = prev.Hash
	r.Hash = RecordHash(prev.Hash, r)
	return r
}

// Head returns the head of a log that ends with r.
func (r Record) Head() Head { return Head{Seq: r.Seq, Hash: r.Hash} }
