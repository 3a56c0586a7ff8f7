package remedy_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/remedy"
)

// auditLog is a recorder in front of an audit log that fails from a point
// on: like audit.Writer, it turns degraded when a record cannot be stored,
// and remembers which records were durable.
type auditLog struct {
	rec      recorder
	failFrom atomic.Value // medic.EventKind: the first record kind that fails (then everything fails)
	mu       sync.Mutex
	down     bool
	durable  []medic.Event
}

func (a *auditLog) Record(ctx context.Context, ev medic.Event) {
	a.rec.Record(ctx, ev)
	a.mu.Lock()
	defer a.mu.Unlock()
	if k, _ := a.failFrom.Load().(medic.EventKind); k != "" && k == ev.Kind {
		a.down = true
	}
	if !a.down {
		a.durable = append(a.durable, ev)
	}
}

func (a *auditLog) Degraded() (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.down, "audit degraded since 2026-01-01T00:00:00Z: no space left on device"
}

// TestNoActionWithoutAuditRecord: while the audit log cannot store records,
// a trigger is decided "blocked" by the audit guard and nothing acts; when
// the log fails at a step's start record, the step does not run and no
// rollback runs either. Before, a failed append was only logged: the
// restart happened without a record.
func TestNoActionWithoutAuditRecord(t *testing.T) {
	t.Run("degraded before the decision", func(t *testing.T) {
		sup := newFakeSup(map[string][2]int{"web": {3, 1}})
		al := &auditLog{}
		al.down = true
		h := start(t, restartStuck("act"), sup, func(o *remedy.Options) { o.Recorder = al; o.Audit = al })
		h.rec = &al.rec
		h.fire("stuck", "instance", "web/1", "service", "web")
		d := h.wait(remedy.EventDecision, "runbook", "restart_stuck")
		if d.Fields["outcome"] != "blocked" || d.Fields["guard"] != remedy.GuardAudit || !strings.Contains(d.Reason, "no space left on device") {
			t.Fatalf("decision %+v", d)
		}
		h.wait(remedy.EventEscalated, "guard", remedy.GuardAudit)
		if calls := sup.Calls(); len(calls) != 0 {
			t.Fatalf("acted while the audit log was degraded: %v", calls)
		}
	})
	t.Run("degraded at the step's start record", func(t *testing.T) {
		sup := newFakeSup(map[string][2]int{"web": {3, 1}})
		al := &auditLog{}
		al.failFrom.Store(remedy.EventStepStart)
		cfg := restartStuck("act")
		cfg.Runbooks["restart_stuck"].Rollback = cfg.Runbooks["restart_stuck"].Steps
		h := start(t, cfg, sup, func(o *remedy.Options) { o.Recorder = al; o.Audit = al })
		h.rec = &al.rec
		h.fire("stuck", "instance", "web/1", "service", "web")
		end := h.wait(remedy.EventRunEnd, "runbook", "restart_stuck")
		if end.Fields["result"] != "aborted" || !strings.Contains(end.Reason, "audit degraded") {
			t.Fatalf("run end %+v", end)
		}
		if calls := sup.Calls(); len(calls) != 0 {
			t.Fatalf("a step (or its rollback) ran without its start record: %v", calls)
		}
	})
}
