package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/audit"
)

// TestOperatorActionsRefusedWhileAuditDegraded: an operator's action, like a
// runbook's, never runs without its durable record. Before the gate the API
// restarted, scaled and rolled back with the log unable to store a thing.
func TestOperatorActionsRefusedWhileAuditDegraded(t *testing.T) {
	f := newFixture(t)
	degraded := true
	f.srv.AuditHealth = func() audit.Health {
		if !degraded {
			return audit.Health{}
		}
		return audit.Health{Degraded: true, Reason: "append: database or disk is full (13)", Since: time.Now(), Held: 3}
	}
	actions := []struct{ method, path, body string }{
		{"POST", "/v1/instances/web/0/restart", ""},
		{"POST", "/v1/instances/web/0/stop", ""},
		{"POST", "/v1/instances/web/0/start", ""},
		{"POST", "/v1/services/web/restart", ""},
		{"POST", "/v1/services/web/scale", `{"instances": 3}`},
		{"POST", "/v1/services/web/rollback", ""},
		{"PUT", "/v1/instances/web/0/fault", `{"kind": "error", "rate": 1}`},
	}
	for _, a := range actions {
		w := f.do(a.method, a.path, f.op, a.body)
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "audit degraded: append: database or disk is full (13)") {
			t.Errorf("%s %s with the audit log degraded: HTTP %d %s; want 503 naming the reason", a.method, a.path, w.Code, strings.TrimSpace(w.Body.String()))
		}
	}
	if len(f.sup.calls) != 0 {
		t.Fatalf("the supervisor acted while the audit log was degraded: %q", f.sup.calls)
	}
	// Authentication comes first: a viewer still gets 403, not the audit state.
	if w := f.do("POST", "/v1/instances/web/0/restart", f.view, ""); w.Code != http.StatusForbidden {
		t.Errorf("viewer: HTTP %d, want 403", w.Code)
	}
	// Reads and undoing go on: status, clearing a fault.
	if w := f.do("GET", "/v1/status", f.view, ""); w.Code != http.StatusOK {
		t.Errorf("status while degraded: HTTP %d", w.Code)
	}
	if w := f.do("DELETE", "/v1/instances/web/0/fault", f.op, ""); w.Code == http.StatusServiceUnavailable {
		t.Errorf("clearing a fault was refused while degraded: %s", w.Body)
	}
	degraded = false
	if w := f.do("POST", "/v1/instances/web/0/restart", f.op, ""); w.Code != http.StatusOK {
		t.Fatalf("restart once the log is healthy: HTTP %d %s", w.Code, w.Body)
	}
	if len(f.sup.calls) != 1 {
		t.Fatalf("supervisor calls = %q, want the one restart", f.sup.calls)
	}
}
