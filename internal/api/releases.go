package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/medic-dev/medic/internal/bluegreen"
	"github.com/medic-dev/medic/internal/release"
)

// Releases is the releases' side: deploys, rollbacks to a kept release and
// the history (nil: rollback falls back to the supervisor's previous spec).
type Releases interface {
	Deploy(ctx context.Context, service string, c release.Changes, actor string) (release.Release, error)
	Rollback(ctx context.Context, service, to, actor string) (release.Release, error)
	List(ctx context.Context, service string) ([]release.Release, error)
}

// releaseWait is how long a deploy or rollback request waits for its
// rollout; past it the rollout goes on and the answer is 202.
const releaseWait = 2 * time.Minute

func releaseStatus(err error) int {
	switch {
	case errors.Is(err, release.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, release.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, release.ErrNothingToRollBack), errors.Is(err, bluegreen.ErrWindowOpen):
		return http.StatusConflict
	}
	return statusFor(err)
}

// deployService: POST /v1/services/{name}/deploy {"version": "v2", "set": {"command": "...", "env.K": "v"}}.
func (s *Server) deployService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var body release.Changes
	if err := decodeBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if len(body.Set) == 0 && body.Version == "" {
		writeError(w, http.StatusBadRequest, "body.set: nothing to change (want command, dir, instances or env.NAME)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), releaseWait)
	defer cancel()
	rel, err := s.Releases.Deploy(ctx, name, body, actorOf(r))
	s.action(r, name, "deploy "+rel.Version, err)
	s.answerRelease(w, rel, err)
}

func (s *Server) answerRelease(w http.ResponseWriter, rel release.Release, err error) {
	code := http.StatusOK
	if err != nil {
		code = releaseStatus(err)
		if code != http.StatusAccepted {
			writeError(w, code, "%v", err)
			return
		}
	}
	writeJSON(w, code, rel)
}

// listReleases: GET /v1/services/{name}/releases, newest first.
func (s *Server) listReleases(w http.ResponseWriter, r *http.Request) {
	list, err := s.Releases.List(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if list == nil {
		list = []release.Release{}
	}
	writeJSON(w, http.StatusOK, list)
}
