package audit_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/sqlite"
)

// tamper edits the store as someone with the file and a sqlite shell would:
// drop the append-only triggers, then run plain SQL.
func tamper(t *testing.T, db *sqlite.DB, stmts ...string) {
	t.Helper()
	stmts = append([]string{
		"DROP TRIGGER audit_no_update",
		"DROP TRIGGER audit_no_delete",
	}, stmts...)
	for _, q := range stmts {
		if _, err := db.SQL().Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// hashOf returns the hex hash that record seq would have if its reason were
// reason, for an attacker who recomputes hashes.
func hashOf(r audit.Record, reason string) string {
	r.Reason = reason
	return audit.Next(audit.Head{Seq: r.Seq - 1, Hash: r.Prev}, r).Hash.String()
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name    string
		attack  func(t *testing.T, db *sqlite.DB, rs []audit.Record)
		want    error
		wantSeq int64
	}{
		{"nothing", func(*testing.T, *sqlite.DB, []audit.Record) {}, nil, 0},
		{"UPDATE reason of seq 3", func(t *testing.T, db *sqlite.DB, _ []audit.Record) {
			tamper(t, db, "UPDATE audit SET reason = 'nothing happened' WHERE seq = 3")
		}, audit.ErrEdited, 3},
		{"UPDATE fields of seq 3", func(t *testing.T, db *sqlite.DB, _ []audit.Record) {
			tamper(t, db, `UPDATE audit SET fields = '{"n":"9"}' WHERE seq = 3`)
		}, audit.ErrEdited, 3},
		{"UPDATE seq 3 with a recomputed hash", func(t *testing.T, db *sqlite.DB, rs []audit.Record) {
			tamper(t, db, "UPDATE audit SET reason = 'x', hash = '"+hashOf(rs[2], "x")+"' WHERE seq = 3")
		}, audit.ErrEdited, 3},
		{"UPDATE hash to garbage", func(t *testing.T, db *sqlite.DB, _ []audit.Record) {
			tamper(t, db, "UPDATE audit SET hash = 'zz' WHERE seq = 2")
		}, audit.ErrEdited, 2},
		{"swap seq 2 and 3", func(t *testing.T, db *sqlite.DB, _ []audit.Record) {
			tamper(t, db,
				"UPDATE audit SET seq = 100 WHERE seq = 2",
				"UPDATE audit SET seq = 2 WHERE seq = 3",
				"UPDATE audit SET seq = 3 WHERE seq = 100")
		}, audit.ErrEdited, 2},
		{"DELETE seq 2", func(t *testing.T, db *sqlite.DB, _ []audit.Record) {
			tamper(t, db, "DELETE FROM audit WHERE seq = 2")
		}, audit.ErrMissing, 2},
		{"DELETE the last record", func(t *testing.T, db *sqlite.DB, _ []audit.Record) {
			tamper(t, db, "DELETE FROM audit WHERE seq = 5")
		}, audit.ErrTruncated, 5},
		{"DELETE the last record and roll the head table back", func(t *testing.T, db *sqlite.DB, rs []audit.Record) {
			tamper(t, db, "DELETE FROM audit WHERE seq = 5",
				"UPDATE audit_head SET seq = 4, hash = '"+rs[3].Hash.String()+"'")
		}, audit.ErrTruncated, 5},
		{"DELETE everything", func(t *testing.T, db *sqlite.DB, _ []audit.Record) {
			tamper(t, db, "DELETE FROM audit", "DELETE FROM audit_head")
		}, audit.ErrTruncated, 1},
		{"empty the head table", func(t *testing.T, db *sqlite.DB, _ []audit.Record) {
			tamper(t, db, "DELETE FROM audit_head")
		}, audit.ErrHeadMissing, 6},
		{"garble the head table", func(t *testing.T, db *sqlite.DB, _ []audit.Record) {
			tamper(t, db, "UPDATE audit_head SET hash = 'zz'")
		}, audit.ErrEdited, 5},
		{"remove the head file", func(t *testing.T, db *sqlite.DB, _ []audit.Record) {
			if err := os.Remove(filepath.Join(db.Dir(), audit.HeadFile)); err != nil {
				t.Fatal(err)
			}
		}, audit.ErrHeadMissing, 6},
		{"garble the head file", func(t *testing.T, db *sqlite.DB, _ []audit.Record) {
			if err := os.WriteFile(filepath.Join(db.Dir(), audit.HeadFile), []byte("v1 5 beef\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, audit.ErrHeadMissing, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, db, _ := MustOpenLog(t, "")
			var rs []audit.Record
			for i := range 5 {
				r := rec("runbook:r", "action", "web/1")
				r.Fields = map[string]string{"n": string(rune('0' + i))}
				rs = append(rs, mustAppend(t, l, r))
			}
			tt.attack(t, db, rs)
			_, err := l.Verify(context.Background())
			checkChainErr(t, err, tt.want, tt.wantSeq)
		})
	}
}

// Tampering with the heads must not stop medic from auditing.
func TestAppendAfterGarbledHeads(t *testing.T) {
	l, db, _ := MustOpenLog(t, "")
	mustAppend(t, l, rec("a", "k", ""))
	tamper(t, db, "UPDATE audit_head SET hash = 'zz'")
	if err := os.WriteFile(filepath.Join(db.Dir(), audit.HeadFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := mustAppend(t, l, rec("a", "k", "")); r.Seq != 2 {
		t.Fatalf("appended at seq %d, want 2", r.Seq)
	}
	mustVerify(t, l, 2) // the append rewrote both heads
}

// After the tail was deleted, appends continue after the recorded head, so
// the deletion stays visible as a gap instead of being chained over.
func TestAppendAfterTruncationLeavesAGap(t *testing.T) {
	l, db, _ := MustOpenLog(t, "")
	for range 3 {
		mustAppend(t, l, rec("a", "k", ""))
	}
	tamper(t, db, "DELETE FROM audit WHERE seq = 3")
	// Reopen the Log too, as a restarted medic would.
	l, err := audit.Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := mustAppend(t, l, rec("a", "k", "")); r.Seq != 4 {
		t.Fatalf("appended at seq %d, want 4", r.Seq)
	}
	_, err = l.Verify(context.Background())
	checkChainErr(t, err, audit.ErrMissing, 3)
}
