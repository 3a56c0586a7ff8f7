package pgha

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// failsafeMaxBody bounds a failsafe request's and answer's body (docs/security.md).
const failsafeMaxBody = 16 << 10

// failsafeState is the agent's side of the failsafe (under Agent.mu).
type failsafeState struct {
	key   string    // this agent's HMAC key, written in the failsafe key while it leads
	seq   uint64    // last request sent
	until time.Time // leader: fence deadline the last confirmed round allows (zero: none)
	why   string    // leader: outcome of the last round, for the fence reason and status
	// another member: the promise it gave (no campaign before promUntil)
	promLeader string
	promRev    int64
	promUntil  time.Time
	lastSeq    uint64 // last request accepted, with its token
	lastRev    int64
	etcdOK     bool // the last etcd request of the loop was answered (see serveFailsafe)
	// a member the failsafe key does not list: the key (leader, token)
	// every listed member is done with, and why (DecideRelease)
	relLeader string
	relRev    int64
	relWhy    string
	relAt     time.Time // last release round (one per loop_wait at most)
}

func newFailsafeKey() string {
	b := make([]byte, 32)
	rand.Read(b) // crypto/rand never fails on Linux
	return hex.EncodeToString(b)
}

// failsafeRound asks every member the failsafe key lists whether this
// leader may stay writable while etcd does not answer, and moves the fence
// deadline (timer and watchdog) when all confirm. It runs after a renewal
// that got no answer.
func (a *Agent) failsafeRound(ctx context.Context) {
	a.mu.Lock()
	v, el, me := a.view, a.election, a.o.Member
	a.fs.seq++
	seq := a.fs.seq
	a.mu.Unlock()
	fi := v.FailsafeKey
	if el == nil || fi == nil || fi.Leader != me || fi.Rev != el.Rev() {
		return
	}
	req := FailsafeRequest{Cluster: a.o.Cluster, Leader: me, Rev: el.Rev(), Seq: seq}
	body := []byte(mustJSON(req))
	mac, err := failsafeMAC(fi.Key, body)
	if err != nil {
		return
	}
	sent := a.clock.Now()
	rctx, cancel := context.WithTimeout(ctx, a.pol.RetryTimeout)
	defer cancel()
	answers := map[string]PeerAnswer{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, rest := range fi.Members {
		if name == me {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pa := a.askFailsafe(rctx, fi.Key, rest, body, mac)
			mu.Lock()
			answers[name] = pa
			mu.Unlock()
		}()
	}
	wg.Wait()
	d := DecideFailsafe(a.pol, me, *fi, req, sent, answers)
	a.o.Metrics.failsafeRound(a.o.Cluster, me, !d.Until.IsZero())
	a.mu.Lock()
	was := a.fs.until
	a.fs.why = d.Why
	extend := !d.Until.IsZero() && d.Until.After(a.fs.until) && a.election == el
	if extend {
		a.fs.until = d.Until
	}
	s := a.session
	a.mu.Unlock()
	if !extend {
		a.log.Warn("failsafe not confirmed: the fence deadline stays", "why", d.Why)
		return
	}
	if s != nil {
		a.armFenceAt(Lease{SafeUntil: s.SafeUntil(), FailsafeUntil: d.Until}.FenceAt(a.pol))
	}
	a.o.Metrics.failsafeState(a.o.Cluster, me, true)
	if was.IsZero() || !sent.Before(was) {
		a.record(ctx, "db.failsafe", fmt.Sprintf("etcd does not answer: postgres stays writable until %s at the latest, %s",
			d.Until.Format("15:04:05.000"), d.Why))
	}
}

// readFailsafe reads a signed request's body (at most failsafeMaxBody) and
// decodes it into v; on failure it answers 400 and returns false. The
// caller checks the signature over the body returned.
func readFailsafe(w http.ResponseWriter, r *http.Request, what string, v any) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, failsafeMaxBody))
	if err != nil {
		http.Error(w, what+": read the request: "+err.Error(), http.StatusBadRequest)
		return nil, false
	}
	if err := json.Unmarshal(body, v); err != nil {
		http.Error(w, what+": decode the request: "+err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return body, true
}

// writeFailsafe answers with ans signed with key; false when it could not sign.
func writeFailsafe(w http.ResponseWriter, key string, ans any) bool {
	out := []byte(mustJSON(ans))
	mac, err := failsafeMAC(key, out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return false
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(FailsafeMACHeader, mac)
	w.Write(out)
	return true
}

// askFailsafe sends one authenticated request to the agent at rest.
func (a *Agent) askFailsafe(ctx context.Context, key, rest string, body []byte, mac string) PeerAnswer {
	b, err := a.postFailsafe(ctx, key, rest, "/failsafe", body, mac)
	if err != nil {
		return PeerAnswer{Err: err.Error()}
	}
	var ans FailsafeAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return PeerAnswer{Err: fmt.Sprintf("decode the answer: %v", err)}
	}
	return PeerAnswer{Answer: ans}
}

// serveFailsafe answers POST /failsafe: a leader in failsafe asks this
// member to confirm it.
func (a *Agent) serveFailsafe(w http.ResponseWriter, r *http.Request) {
	var req FailsafeRequest
	body, ok := readFailsafe(w, r, "failsafe", &req)
	if !ok {
		return
	}
	now := a.clock.Now()
	a.mu.Lock()
	fi := a.view.FailsafeKey
	if fi == nil || !failsafeVerify(fi.Key, body, r.Header.Get(FailsafeMACHeader)) || req.Cluster != a.o.Cluster {
		a.mu.Unlock()
		http.Error(w, "failsafe: the request is not signed with the failsafe key this member knows", http.StatusForbidden)
		return
	}
	// "Reaches etcd": the last request was answered, or one was within
	// loop_wait + retry_timeout — a single renewal that etcd, slow under
	// load, did not answer in time is no outage, and a member that
	// accepted then would delay the failover from a leader cut off alone.
	reaches := a.fs.etcdOK || (!a.lastOK.IsZero() && now.Sub(a.lastOK) < a.pol.LoopWait+a.pol.RetryTimeout)
	st := FailsafeState{Now: now, Self: a.o.Member, View: a.view, EtcdOK: reaches, Leading: a.election != nil || a.campaigning,
		Writable: a.local.Writable, LastSeq: a.fs.lastSeq, LastRev: a.fs.lastRev, PromiseMS: a.pol.TTL.Milliseconds()}
	ans := AnswerFailsafe(st, req)
	fresh := false
	if ans.Accepted {
		fresh = a.fs.promLeader != req.Leader || a.fs.promRev != req.Rev || !now.Before(a.fs.promUntil)
		a.fs.promLeader, a.fs.promRev, a.fs.promUntil = req.Leader, req.Rev, now.Add(a.pol.TTL)
		a.fs.lastSeq, a.fs.lastRev = req.Seq, req.Rev
	}
	key := fi.Key
	a.mu.Unlock()
	if !writeFailsafe(w, key, ans) {
		return
	}
	if ans.Accepted {
		a.o.Metrics.failsafeState(a.o.Cluster, a.o.Member, true)
		a.poke()
		if fresh {
			a.record(r.Context(), "db.failsafe_promised", fmt.Sprintf("etcd does not answer: %s (token %d) asked to stay writable; "+
				"this member confirmed it and does not campaign for %v after each confirmation", req.Leader, req.Rev, a.pol.TTL))
		}
	} else {
		a.log.Info("failsafe request refused", "leader", req.Leader, "why", ans.Reason)
	}
}

// endFailsafe forgets the leader's failsafe once etcd answers again.
func (a *Agent) endFailsafe(ctx context.Context) {
	a.mu.Lock()
	was := a.fs.until
	a.fs.until, a.fs.why = time.Time{}, ""
	a.mu.Unlock()
	if !was.IsZero() {
		a.o.Metrics.failsafeState(a.o.Cluster, a.o.Member, false)
		a.record(ctx, "db.failsafe_ended", "etcd answers again: the lease is renewed, the failsafe is no longer needed")
	}
}

// writeFailsafe writes (or, without members, deletes) the failsafe key, fenced.
func (a *Agent) writeFailsafe(ctx context.Context, act Action) error {
	a.mu.Lock()
	el := a.election
	if a.fs.key == "" {
		a.fs.key = newFailsafeKey()
	}
	key := a.fs.key
	a.mu.Unlock()
	if el == nil {
		return errors.New("pgha: write the failsafe key: not leading")
	}
	if act.Members == nil {
		return el.DeleteIfLeader(ctx, a.k.failsafe())
	}
	fi := FailsafeInfo{Leader: a.o.Member, Rev: el.Rev(), Members: act.Members, Key: key}
	if err := el.PutIfLeader(ctx, a.k.failsafe(), mustJSON(fi)); err != nil {
		return err
	}
	a.log.Info(act.Reason)
	return nil
}

// checkRelease runs, on a member the failsafe key does not list while its
// fresh view holds no leader key, a release round: it asks every other
// member the key lists whether it is done with the key's leader. Once all
// are, the answer holds for good (DecideRelease): it is kept.
func (a *Agent) checkRelease(ctx context.Context) {
	now := a.clock.Now()
	a.mu.Lock()
	v, me := a.snapshot, a.o.Member
	fresh := v.Rev != 0 && !a.lastOK.IsZero() && now.Sub(a.lastOK) < a.pol.TTL-a.pol.RetryTimeout
	fi := v.FailsafeKey
	need := fresh && v.Leader == nil && fi != nil && !fi.listed(me) && a.election == nil &&
		(a.fs.relLeader != fi.Leader || a.fs.relRev != fi.Rev) && now.Sub(a.fs.relAt) >= a.pol.LoopWait
	if need {
		a.fs.relAt = now
	}
	a.mu.Unlock()
	if !need {
		return
	}
	q := ReleaseQuery{Cluster: a.o.Cluster, Leader: fi.Leader, Rev: fi.Rev, From: me}
	body := []byte(mustJSON(q))
	mac, err := failsafeMAC(fi.Key, body)
	if err != nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, a.pol.RetryTimeout)
	defer cancel()
	answers := map[string]PeerRelease{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range ReleaseTargets(me, *fi) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pr PeerRelease
			b, err := a.postFailsafe(rctx, fi.Key, fi.Members[name], "/failsafe/release", body, mac)
			if err == nil {
				err = json.Unmarshal(b, &pr.Answer)
			}
			if err != nil {
				pr.Err = err.Error()
			}
			mu.Lock()
			answers[name] = pr
			mu.Unlock()
		}()
	}
	wg.Wait()
	ok, why := DecideRelease(me, *fi, answers)
	if !ok {
		a.log.Info("not listed in the failsafe key: its leader may still be in failsafe", "leader", fi.Leader, "why", why)
		return
	}
	a.mu.Lock()
	a.fs.relLeader, a.fs.relRev, a.fs.relWhy = fi.Leader, fi.Rev, why
	a.mu.Unlock()
	a.record(ctx, "db.failsafe_released", why)
}

// released is the FailsafeReleased of an observation of view v (under a.mu).
func (a *Agent) released(v View) string {
	if fi := v.FailsafeKey; fi != nil && fi.Leader == a.fs.relLeader && fi.Rev == a.fs.relRev {
		return a.fs.relWhy
	}
	return ""
}

// postFailsafe sends one request signed with key to the agent at rest and
// returns the authenticated body of its answer.
func (a *Agent) postFailsafe(ctx context.Context, key, rest, path string, body []byte, mac string) ([]byte, error) {
	if rest == "" {
		return nil, errors.New("it has no REST endpoint (databases.NAME.rest)")
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+rest+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(FailsafeMACHeader, mac)
	resp, err := a.fsClient.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, failsafeMaxBody))
	if err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, bytes.TrimSpace(b))
	}
	if !failsafeVerify(key, b, resp.Header.Get(FailsafeMACHeader)) {
		return nil, errors.New("the answer is not signed with the failsafe key")
	}
	return b, nil
}

// serveRelease answers POST /failsafe/release: a member the failsafe key
// does not list asks whether this member is done with the key's leader.
func (a *Agent) serveRelease(w http.ResponseWriter, r *http.Request) {
	var q ReleaseQuery
	body, ok := readFailsafe(w, r, "failsafe release", &q)
	if !ok {
		return
	}
	now := a.clock.Now()
	a.mu.Lock()
	// The key the question is signed with is the one in this member's
	// freshest view: the acted-on view may predate it.
	fi := a.snapshot.FailsafeKey
	if fi == nil || fi.Leader != q.Leader || fi.Rev != q.Rev || !failsafeVerify(fi.Key, body, r.Header.Get(FailsafeMACHeader)) || q.Cluster != a.o.Cluster {
		a.mu.Unlock()
		http.Error(w, "failsafe release: the request is not signed with the failsafe key this member knows", http.StatusForbidden)
		return
	}
	ans := AnswerRelease(ReleaseState{Now: now, Self: a.o.Member, Started: a.started, TTL: a.pol.TTL, View: a.view,
		PromLeader: a.fs.promLeader, PromRev: a.fs.promRev, PromUntil: a.fs.promUntil}, q)
	key := fi.Key
	a.mu.Unlock()
	if !writeFailsafe(w, key, ans) {
		return
	}
	a.log.Info("failsafe release asked", "by", q.From, "leader", q.Leader, "released", ans.Released, "why", ans.Reason)
}
