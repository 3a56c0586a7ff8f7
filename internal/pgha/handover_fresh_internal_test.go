package pgha

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A handover record written before the agent was made (a previous
// upgrade's, never read) must not end the wait for the medic being
// replaced, nor be adopted by; one written since must.
func TestHandoverRecordFreshness(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pg-handover.json")
	a := &Agent{born: time.Now()}
	if a.freshRecord(path) {
		t.Fatal("no record reads as fresh")
	}
	a.o.StateDir, a.o.Cluster = filepath.Dir(path), "pg"
	// A dead medic's record (pid 0 is never a medic's; a huge pid is unused).
	if err := os.WriteFile(path, []byte(`{"medic_pid": 4194000}`), 0o600); err != nil {
		t.Fatal(err)
	}
	old := a.born.Add(-time.Minute)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if a.freshRecord(path) {
		t.Fatal("a record from before the agent was made, by a medic gone, reads as fresh")
	}
	// The same record by a medic still running (this test) is fresh.
	if err := os.WriteFile(path, []byte(fmt.Sprintf(`{"medic_pid": %d}`, os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if !a.freshRecord(path) {
		t.Fatal("an older record by a medic that still runs reads as stale")
	}
	if err := os.WriteFile(path, []byte(`{"medic_pid": 4194000}`), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Second)
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	if !a.freshRecord(path) {
		t.Fatal("a record written since the agent was made reads as stale")
	}
}
