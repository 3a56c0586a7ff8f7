package app

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/canary"
	"github.com/medic-dev/medic/internal/remedy"
)

// canaryApprovalPrefix names a canary's pending promotion in the approval
// list: "canary:SERVICE" (a service has at most one canary at a time).
const canaryApprovalPrefix = "canary:"

// canaryApprovals lists the canaries whose promotion waits for an approval
// (trust propose) as approvals, beside the remedy engine's: the dashboard,
// `medic approvals` and POST /v1/approvals/{id}/approve|deny act on both.
func canaryApprovals(r *canary.Runner) []remedy.Approval {
	if r == nil {
		return nil
	}
	var out []remedy.Approval
	for _, rep := range r.Awaiting() {
		next := "the promotion"
		if s := rep.State.Step + 1; s < len(rep.Steps) {
			next = fmt.Sprintf("step %d%%", rep.Steps[s])
			if rep.Steps[s] >= 100 {
				next = "the promotion (every stable instance to " + rep.To + ")"
			}
		}
		out = append(out, remedy.Approval{
			ID: canaryApprovalPrefix + rep.Service, Runbook: "deploy.canary", Target: rep.Service,
			Summary: fmt.Sprintf("canary %s → %s at %d%%: move to %s? %s", rep.From, rep.To, rep.Steps[rep.State.Step], next, rep.State.Verdict.Reason),
			State:   "pending", Created: rep.State.StepStart,
		})
	}
	return out
}

// canaryApprovalService returns the service of a canary approval's id.
func canaryApprovalService(id string) (string, bool) {
	svc, ok := strings.CutPrefix(id, canaryApprovalPrefix)
	return svc, ok && svc != ""
}

// decidedCanary answers a canary's pending promotion through the approval
// routes, as POST /v1/services/S/canary/approve|deny does.
func (a *automation) decidedCanary(w http.ResponseWriter, r *http.Request, service string, ok bool) {
	if a.m.canaries == nil {
		api.WriteError(w, http.StatusNotFound, "approval %s%s: no canary runner", canaryApprovalPrefix, service)
		return
	}
	err := a.m.canaries.Answer(service, api.ActorOf(r), ok)
	switch {
	case errors.Is(err, canary.ErrNoCanary):
		api.WriteError(w, http.StatusNotFound, "approval %s%s: %v", canaryApprovalPrefix, service, err)
	case err != nil:
		api.WriteError(w, http.StatusBadRequest, "%v", err)
	case ok:
		api.WriteJSON(w, http.StatusOK, map[string]string{"result": "approved"})
	default:
		api.WriteJSON(w, http.StatusOK, map[string]string{"result": "denied"})
	}
}
