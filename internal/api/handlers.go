package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/supervise"
)

func actorOf(r *http.Request) string {
	if id, ok := auth.IdentityFrom(r.Context()); ok {
		return "api:" + id.Name
	}
	return "api:" + clientOf(r)
}

func (s *Server) action(r *http.Request, target, what string, err error) {
	reason := what + " requested"
	if err != nil {
		reason = what + " failed: " + err.Error()
	}
	s.Record(r.Context(), medic.Event{Kind: medic.EventAPIAction, Target: target, Actor: actorOf(r), Reason: reason})
}

func statusFor(err error) int {
	switch {
	case errors.Is(err, supervise.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, supervise.ErrBudget), errors.Is(err, supervise.ErrNoPrevious), errors.Is(err, supervise.ErrPortTaken):
		return http.StatusConflict
	case errors.Is(err, supervise.ErrInProgress):
		return http.StatusAccepted
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func (s *Server) instanceAction(w http.ResponseWriter, r *http.Request) {
	idx, err := strconv.Atoi(r.PathValue("index"))
	if err != nil || idx < 0 {
		writeError(w, http.StatusBadRequest, "instance index %q: want a number ≥ 0", r.PathValue("index"))
		return
	}
	id := medic.InstanceID{Service: r.PathValue("service"), Index: idx}
	var do func(context.Context, medic.InstanceID, string, string) error
	switch r.PathValue("action") {
	case "restart":
		do = s.Supervisor.RestartInstance
	case "stop":
		do = s.Supervisor.StopInstance
	case "start":
		do = s.Supervisor.StartInstance
	default:
		writeError(w, http.StatusNotFound, "action %q: want restart, stop or start", r.PathValue("action"))
		return
	}
	var body actionBody
	if err := decodeBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	reason := body.Reason
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	err = do(ctx, id, actorOf(r), reason)
	s.action(r, id.String(), r.PathValue("action"), err)
	if err != nil {
		writeError(w, statusFor(err), "%s %s: %v", r.PathValue("action"), id, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"instance": id.String(), "action": r.PathValue("action"), "result": "done"})
}

func (s *Server) restartService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var body actionBody
	if err := decodeBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	timeout, err := body.readyTimeout(2 * time.Minute)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if t := r.URL.Query().Get("ready_timeout"); t != "" {
		if timeout, err = (actionBody{ReadyTimeout: t}).readyTimeout(timeout); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	err = s.Supervisor.RollingRestart(r.Context(), name, actorOf(r), timeout)
	s.action(r, name, "rolling restart", err)
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"service": name, "action": "rolling restart", "result": "done"})
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if err := s.Reload(r.Context(), actorOf(r)); err != nil {
		writeError(w, http.StatusUnprocessableEntity, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"result": "reloaded"})
}

// events streams the event history and then live events as server-sent events.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	sub, hist := s.Hub.Subscribe(256)
	defer sub.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	send := func(ev medic.Event) error {
		b, _ := json.Marshal(ev)
		_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Kind, b)
		return err
	}
	if r.URL.Query().Get("history") != "0" {
		for _, ev := range hist {
			if send(ev) != nil {
				return
			}
		}
	}
	fl.Flush()
	if r.URL.Query().Get("follow") == "0" {
		return
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stop:
			return
		case <-keepalive.C:
			io.WriteString(w, ": keepalive\n\n")
			fl.Flush()
		case ev := <-sub.C:
			if send(ev) != nil {
				return
			}
			fl.Flush()
		}
	}
}

func (s *Server) auditList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := audit.Filter{Target: q.Get("target"), Actor: q.Get("actor"), Kind: q.Get("kind")}
	for _, p := range []struct {
		name string
		dst  *int
	}{{"limit", &f.Limit}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				writeError(w, http.StatusBadRequest, "%s %q: want a number ≥ 0", p.name, v)
				return
			}
			*p.dst = n
		}
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "after %q: want a sequence number", v)
			return
		}
		f.AfterSeq, f.Forward = n, true // after=0 pages from the first record
	}
	if v := q.Get("since"); v != "" {
		t, err := parseSince(v, s.Clock.Now())
		if err != nil {
			writeError(w, http.StatusBadRequest, "since %q: %v", v, err)
			return
		}
		f.Since = t
	}
	recs, err := s.Audit.List(r.Context(), f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list audit records: %v", err)
		return
	}
	if recs == nil {
		recs = []audit.Record{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": recs})
}

func parseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, errors.New("want a duration such as 1h or an RFC 3339 time")
	}
	return t, nil
}

// auditVerify checks the stored chain. While appends fail it is not ok even
// when the stored chain verifies: records are being held or lost, and an
// "ok" would claim a completeness the log does not have.
func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request) {
	n, err := s.Audit.Verify(r.Context())
	if err != nil {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "records": n, "error": err.Error()})
		return
	}
	if s.AuditHealth != nil {
		if h := s.AuditHealth(); h.Degraded {
			writeJSON(w, http.StatusOK, map[string]any{"ok": false, "records": n, "degraded": true, "error": h.String()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "records": n})
}

// logs serves an instance's log file: the last `tail` lines, then (with
// follow=1) new lines as they are written.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	svc, idx := r.PathValue("service"), r.PathValue("index")
	if _, err := strconv.Atoi(idx); err != nil || filepath.Base(svc) != svc || svc == "." || svc == ".." {
		writeError(w, http.StatusBadRequest, "bad instance %s/%s", svc, idx)
		return
	}
	path := filepath.Join(s.LogDir, svc+"-"+idx+".log")
	f, err := os.Open(path)
	if err != nil {
		writeError(w, http.StatusNotFound, "no log for %s/%s", svc, idx)
		return
	}
	defer f.Close()
	n := 100
	if v := r.URL.Query().Get("tail"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "tail %q: want a number ≥ 0", v)
			return
		}
	}
	off := tailOffset(f, n)
	f.Seek(off, io.SeekStart)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.Copy(w, f)
	if r.URL.Query().Get("follow") != "1" {
		return
	}
	fl, _ := w.(http.Flusher)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if fl != nil {
			fl.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.stop:
			return
		case <-t.C:
		}
		pos, _ := f.Seek(0, io.SeekCurrent)
		if st, err := os.Stat(path); err == nil && st.Size() < pos { // rotated: reopen
			if nf, err := os.Open(path); err == nil {
				f.Close()
				f = nf
			}
		}
		io.Copy(w, f)
	}
}

// tailOffset returns the offset of the start of the last n lines.
func tailOffset(f *os.File, n int) int64 {
	st, err := f.Stat()
	if err != nil || n == 0 {
		if err == nil {
			return st.Size()
		}
		return 0
	}
	size := st.Size()
	const chunk = 64 << 10
	start := size - chunk*4
	if start < 0 {
		start = 0
	}
	f.Seek(start, io.SeekStart)
	var offs []int64
	sc := bufio.NewReader(f)
	pos := start
	for {
		line, err := sc.ReadBytes('\n')
		if len(line) > 0 {
			offs = append(offs, pos)
			pos += int64(len(line))
		}
		if err != nil {
			break
		}
	}
	if len(offs) <= n {
		return start
	}
	return offs[len(offs)-n]
}

func (s *Server) scaleService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var body actionBody
	if err := decodeBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if body.Instances == nil || *body.Instances < 1 || *body.Instances > 1000 {
		writeError(w, http.StatusBadRequest, "body.instances: want a number from 1 to 1000")
		return
	}
	// Scaling in waits for the disruption budget; past this the change goes
	// on and the answer is 202.
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	err := s.Supervisor.Scale(ctx, name, *body.Instances, actorOf(r))
	s.action(r, name, fmt.Sprintf("scale to %d", *body.Instances), err)
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"service": name, "instances": *body.Instances, "result": "done"})
}

func (s *Server) rollbackService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var body actionBody
	if err := decodeBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	if s.Releases != nil {
		rel, err := s.Releases.Rollback(ctx, name, body.To, actorOf(r))
		s.action(r, name, "rollback to "+rel.Version, err)
		s.answerRelease(w, rel, err)
		return
	}
	if body.To != "" {
		writeError(w, http.StatusBadRequest, "body.to: this agent keeps no release history")
		return
	}
	err := s.Supervisor.Rollback(ctx, name, actorOf(r))
	s.action(r, name, "rollback", err)
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"service": name, "action": "rollback", "result": "done"})
}

// setFault injects a drill fault into one instance's proxied traffic (PUT, body
// {"latency": "200ms", "error_rate": 0.5, "reset_rate": 0.1}) or clears it (DELETE).
func (s *Server) setFault(w http.ResponseWriter, r *http.Request) {
	idx, err := strconv.Atoi(r.PathValue("index"))
	if err != nil || idx < 0 {
		writeError(w, http.StatusBadRequest, "instance index %q: want a number ≥ 0", r.PathValue("index"))
		return
	}
	id := medic.InstanceID{Service: r.PathValue("service"), Index: idx}
	var f proxy.Fault
	if r.Method == http.MethodPut {
		if err := decodeBody(r, &f); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if err := f.Validate(); err != nil {
			writeError(w, http.StatusBadRequest, "body: %v", err)
			return
		}
	}
	if s.Traffic == nil {
		writeError(w, http.StatusNotFound, "no proxy is configured")
		return
	}
	err = s.Traffic.SetFault(id, f)
	what := "clear fault"
	if !f.IsZero() {
		what = fmt.Sprintf("inject fault latency=%v error_rate=%v reset_rate=%v", f.Latency, f.ErrorRate, f.ResetRate)
	}
	s.action(r, id.String(), what, err)
	if err != nil {
		writeError(w, http.StatusNotFound, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"instance": id.String(), "fault": f})
}
