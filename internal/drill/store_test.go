package drill_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/sqlite"
)

func result(id int64, mode string, passed bool, ttr float64, start time.Time) drill.Result {
	r := drill.Result{ID: id, Scenario: "kill", FailureMode: mode, Service: "web", Subject: drill.Subject{Service: "web", Instance: "web/1"},
		State: drill.StateFailed, Marks: drill.Marks{Start: start, End: start.Add(5 * time.Second)}}
	r.Passed = passed
	if passed {
		r.State = drill.StatePassed
		r.TTR = &ttr
	}
	r.Requests, r.ClientErrors = 100, 1
	r.Timeline = []drill.Observation{{Time: start, Seq: 7, Kind: "instance.restart", Target: "web/1"}}
	return r
}

func TestStores(t *testing.T) {
	db, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for name, st := range map[string]drill.Store{"sql": drill.NewSQLStore(db.SQL()), "mem": drill.NewMemStore()} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if n, err := st.MaxID(ctx); err != nil || n != 0 {
				t.Fatalf("empty max id: %d %v", n, err)
			}
			base := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
			for _, r := range []drill.Result{
				result(1, "process crashes", true, 0.5, base),
				result(2, "process crashes", false, 0, base.Add(time.Hour)),
				result(3, "process hangs", true, 2.5, base.Add(2*time.Hour)),
			} {
				if err := st.Save(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			got, err := st.Get(ctx, 1)
			if err != nil || got.Timeline[0].Seq != 7 || *got.TTR != 0.5 || !got.Marks.Start.Equal(base) {
				t.Fatalf("get: %+v %v", got, err)
			}
			if _, err := st.Get(ctx, 9); !errors.Is(err, drill.ErrNotFound) {
				t.Fatalf("get unknown: %v", err)
			}
			list, err := st.List(ctx, 2)
			if err != nil || len(list) != 2 || list[0].ID != 3 || list[1].TTR != nil || list[0].Target != "web/1" {
				t.Fatalf("list: %+v %v", list, err)
			}
			modes, err := st.Modes(ctx)
			if err != nil || len(modes) != 2 {
				t.Fatalf("modes: %+v %v", modes, err)
			}
			// The last drill of "process crashes" failed; its last TTR is the passed one's.
			crash := modes[0]
			if crash.ID != 2 || crash.Passed || crash.LastTTR == nil || *crash.LastTTR != 0.5 || !crash.LastPassed.Equal(base) {
				t.Fatalf("process crashes: %+v", crash)
			}
			if n, _ := st.MaxID(ctx); n != 3 {
				t.Fatalf("max id %d", n)
			}
		})
	}
}
