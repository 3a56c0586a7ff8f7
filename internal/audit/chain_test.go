package audit_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/audit"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

// chain builds n linked records with distinct contents.
func chain(n int) []audit.Record {
	var out []audit.Record
	var head audit.Head
	for i := range n {
		r := audit.Next(head, audit.Record{
			Time:   t0.Add(time.Duration(i) * time.Second),
			Actor:  "runbook:restart-web",
			Kind:   "action.start",
			Target: "web/1",
			Reason: "liveness failed 3 times",
			Fields: map[string]string{"attempt": string(rune('a' + i))},
		})
		out = append(out, r)
		head = r.Head()
	}
	return out
}

func TestVerifyNamesTheFault(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func([]audit.Record) ([]audit.Record, audit.Head) // returns records and the separately kept head
		want    error
		wantSeq int64
	}{
		{"intact", keep, nil, 0},
		{"empty", func([]audit.Record) ([]audit.Record, audit.Head) { return nil, audit.Head{} }, nil, 0},
		{"edit one field of record 3", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			rs[2].Reason = "operator asked"
			return rs, rs[4].Head()
		}, audit.ErrEdited, 3},
		{"edit a field value of record 3", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			rs[2].Fields = map[string]string{"attempt": "z"}
			return rs, rs[4].Head()
		}, audit.ErrEdited, 3},
		{"edit record 3's time", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			rs[2].Time = rs[2].Time.Add(time.Nanosecond)
			return rs, rs[4].Head()
		}, audit.ErrEdited, 3},
		{"edit record 3 and recompute its hash", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			rs[2].Actor = "someone-else"
			rs[2] = audit.Next(rs[1].Head(), rs[2])
			return rs, rs[4].Head()
		}, audit.ErrEdited, 3},
		{"delete record 2", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			return append(rs[:1:1], rs[2:]...), rs[4].Head()
		}, audit.ErrMissing, 2},
		{"delete records 2 and 3", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			return append(rs[:1:1], rs[3:]...), rs[4].Head()
		}, audit.ErrMissing, 2},
		{"delete record 1", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			return rs[1:], rs[4].Head()
		}, audit.ErrMissing, 1},
		{"swap 2 and 3", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			rs[1], rs[2] = rs[2], rs[1]
			return rs, rs[4].Head()
		}, audit.ErrReordered, 3},
		{"record 2 twice", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			return append(rs[:2:2], rs[1:]...), rs[4].Head()
		}, audit.ErrReordered, 2},
		{"drop last", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			return rs[:4], rs[4].Head()
		}, audit.ErrTruncated, 5},
		{"drop all", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			return nil, rs[4].Head()
		}, audit.ErrTruncated, 1},
		{"head rolled back", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			return rs, rs[2].Head()
		}, audit.ErrEdited, 4},
		{"last record rewritten with its hash", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			head := rs[4].Head()
			rs[4].Reason = "nothing to see"
			rs[4] = audit.Next(rs[3].Head(), rs[4])
			return rs, head
		}, audit.ErrEdited, 5},
		{"first record not anchored at zero", func(rs []audit.Record) ([]audit.Record, audit.Head) {
			rs[0] = audit.Next(audit.Head{Seq: 0, Hash: audit.Hash{1}}, rs[0])
			return rs[:1], rs[0].Head()
		}, audit.ErrEdited, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			records, head := tt.mutate(chain(5))
			err := audit.VerifyHead(records, head)
			checkChainErr(t, err, tt.want, tt.wantSeq)
		})
	}
}

func keep(rs []audit.Record) ([]audit.Record, audit.Head) { return rs, rs[len(rs)-1].Head() }

func checkChainErr(t *testing.T, err, want error, wantSeq int64) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("err = %v, want nil", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	var ce *audit.ChainError
	if !errors.As(err, &ce) || ce.Seq != wantSeq {
		t.Fatalf("err = %v, want it at seq %d", err, wantSeq)
	}
}

// Verify alone cannot see a dropped tail; that is what the head is for.
func TestVerifyWithoutHeadMissesTruncation(t *testing.T) {
	if err := audit.Verify(chain(5)[:3]); err != nil {
		t.Fatalf("Verify of a prefix: %v", err)
	}
}

func TestRecordHashEncoding(t *testing.T) {
	base := audit.Record{Seq: 1, Time: t0, Actor: "ab", Kind: "c"}
	h := func(r audit.Record) audit.Hash { return audit.RecordHash(audit.Hash{}, r) }

	shifted := base
	shifted.Actor, shifted.Kind = "a", "bc"
	if h(base) == h(shifted) {
		t.Error("actor/kind boundary is ambiguous")
	}
	inFields := base
	inFields.Fields = map[string]string{"ab": "c"}
	inKeys := base
	inKeys.Fields = map[string]string{"a": "bc"}
	if h(inFields) == h(inKeys) {
		t.Error("field key/value boundary is ambiguous")
	}
	emptyFields := base
	emptyFields.Fields = map[string]string{}
	if h(base) != h(emptyFields) {
		t.Error("nil and empty Fields hash differently")
	}
	otherZone := base
	otherZone.Time = t0.In(time.FixedZone("X", 3600))
	if h(base) != h(otherZone) {
		t.Error("the time zone changes the hash")
	}
	if audit.RecordHash(audit.Hash{1}, base) == h(base) {
		t.Error("prev does not change the hash")
	}
	// Pin the encoding: a change here breaks every stored log.
	// Computed independently (Python, from the RecordHash doc comment).
	const golden = "d8a013c8d2f5c8cbd80a25770e4738d30df58a56cc3c1873be5a9f6bd9c817fe"
	got := audit.RecordHash(audit.Hash{}, audit.Record{
		Seq: 7, Time: t0, Actor: "tok:alice", Kind: "approve", Target: "web/2",
		Reason: "ok", Correlation: "inc-1", Fields: map[string]string{"b": "2", "a": "1"},
	}).String()
	if got != golden {
		t.Errorf("RecordHash of the golden record = %s, want %s", got, golden)
	}
}

func TestHashText(t *testing.T) {
	r := chain(1)[0]
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back audit.Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Hash != r.Hash || back.Prev != r.Prev || !back.Time.Equal(r.Time) {
		t.Fatalf("JSON round trip: %s", b)
	}
	if _, err := audit.ParseHash("zz"); err == nil {
		t.Error("ParseHash accepted a short string")
	}
	if _, err := audit.ParseHash(string(make([]byte, 64))); err == nil {
		t.Error("ParseHash accepted non-hex")
	}
}
