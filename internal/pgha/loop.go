package pgha

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/medic-dev/medic/internal/etcd"
)

// iterate is one pass of the loop: keep the lease, observe, decide, act, publish.
func (a *Agent) iterate(ctx context.Context) {
	a.keepLease(ctx)
	local := a.observe(ctx)
	a.checkRelease(ctx)
	now := a.clock.Now()

	a.mu.Lock()
	v := a.snapshot
	// Fresh: etcd answered within the fence margin, and the watch delivered
	// at least one snapshot (an empty view is not "no cluster").
	v.Fresh = v.Rev != 0 && !a.lastOK.IsZero() && now.Sub(a.lastOK) < a.pol.TTL-a.pol.RetryTimeout
	lease := Lease{}
	if a.session != nil {
		lease.ID, lease.SafeUntil = a.session.Lease(), a.session.SafeUntil()
	}
	if a.election != nil {
		lease.Rev, lease.FailsafeUntil = a.election.Rev(), a.fs.until
	}
	// While etcd does not answer, the failsafe vouches for the leader the
	// view shows: on the leader, until the deadline its peers confirmed;
	// elsewhere, while this member's promise to that leader holds.
	if L := v.Leader; !v.Fresh && L != nil {
		if a.election != nil {
			v.Failsafe = L.Member == a.o.Member && L.Rev == lease.Rev && now.Before(a.fs.until)
		} else {
			v.Failsafe = L.Member == a.fs.promLeader && L.Rev == a.fs.promRev && now.Before(a.fs.promUntil)
		}
	}
	promised := a.fs.promUntil
	a.o.Metrics.failsafeState(a.o.Cluster, a.o.Member, (a.election != nil && now.Before(a.fs.until)) || (a.election == nil && now.Before(promised)))
	if v.Leader != nil {
		if mi, ok := v.Members[v.Leader.Member]; ok && mi.Role == RolePrimary && mi.LSN > v.Optime {
			v.Optime = mi.LSN // fresher than the optime key
		}
	}
	a.view, a.local = v, local
	var acts []Action
	a.member, acts = a.member.Step(Observation{Now: now, Local: local, View: v, Lease: lease, NoCampaignUntil: promised,
		FailsafeReleased: a.released(v)})
	a.mu.Unlock()
	if a.o.OnView != nil {
		a.o.OnView(v) // routes first: they depend on the view only
	}
	for _, act := range acts {
		if err := a.do(ctx, act, v, local); err != nil {
			a.log.Warn("action failed", "action", act.Kind.String(), "target", act.Target, "err", err)
			break
		}
	}
	a.publish(ctx, v)
	a.watchRedundancy(ctx, local, v)
	a.mu.Lock()
	a.loopAt = a.clock.Now()
	a.mu.Unlock()
}

// keepLease makes a session when there is none and renews it once per
// loop_wait. While leading, it arms the fence: a timer that kills postgres
// at the fence deadline even if the loop is stuck, and the watchdog that
// does the same if the agent itself is.
func (a *Agent) keepLease(ctx context.Context) {
	now := a.clock.Now()
	a.mu.Lock()
	s, due := a.session, now.Sub(a.lastRenew) >= a.pol.LoopWait-a.pol.LoopWait/10
	a.mu.Unlock()
	// A lease dropped while etcd could not be reached is revoked on every
	// pass until etcd answers, whether or not a new session was made since:
	// retried only while there was no session, it stayed pending for good
	// once a session was granted in the same pass as a failed revoke (the
	// connection came back in between), and etcd, which extends every lease
	// it holds when it restarts, kept the fenced leader's key for a whole
	// TTL more (issue 14: the write outage was etcd's outage + ~5 s).
	if s == nil || s.Expired() {
		if s != nil {
			a.dropLeadership()
		}
		if err := a.revokePending(ctx); err != nil && unanswered(err) {
			a.setEtcdOK(false)
			// etcd did not answer the revoke: a session now would be
			// granted, at best, by the same etcd a moment later; the next
			// pass tries both again without spending retry_timeout twice
			// (a pass ends sooner, so the first one after etcd returns
			// starts sooner). An etcd that answers with an error does not
			// hold the session back: the revoke is retried beside it.
			a.o.Metrics.inc(cntRenewFail, a.o.Cluster, a.o.Member)
			return
		}
		rctx, cancel := context.WithTimeout(ctx, a.pol.RetryTimeout)
		ns, err := a.o.Etcd.NewSession(rctx, a.pol.TTL, a.clock)
		cancel()
		a.mu.Lock()
		a.lastRenew = now
		if err == nil {
			a.session, a.lastOK = ns, now
		}
		a.fs.etcdOK = err == nil
		a.mu.Unlock()
		if err != nil {
			a.o.Metrics.inc(cntRenewFail, a.o.Cluster, a.o.Member)
			a.log.Debug("no etcd session", "err", err)
		}
		return
	}
	if !due {
		return
	}
	timeout := a.pol.RetryTimeout
	if a.leading() {
		if left := a.fenceAt(s).Sub(now); left < timeout {
			timeout = max(left, time.Millisecond)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	safe, err := s.Renew(rctx)
	cancel()
	a.mu.Lock()
	a.lastRenew = now
	if err == nil {
		a.lastOK = now
	}
	a.fs.etcdOK = err == nil
	a.mu.Unlock()
	if err != nil {
		a.o.Metrics.inc(cntRenewFail, a.o.Cluster, a.o.Member)
		if errors.Is(err, etcd.ErrLeaseExpired) {
			a.log.Warn("the member's lease expired", "err", err)
			return
		}
		// etcd did not answer (or answered with an error other than
		// "lease gone"): a leader with the failsafe on asks its peers.
		if a.pol.Failsafe && a.leading() {
			a.failsafeRound(ctx)
		}
		return
	}
	a.o.Metrics.inc(cntRenewal, a.o.Cluster, a.o.Member)
	a.endFailsafe(ctx)
	if a.leading() {
		a.armFence(safe)
	}
	// After the renewal, so that a revoke etcd is slow to answer never
	// delays the renewal a leader's fence depends on.
	a.revokePending(ctx)
}

// setEtcdOK records whether the loop's last etcd request was answered.
func (a *Agent) setEtcdOK(ok bool) {
	a.mu.Lock()
	a.fs.etcdOK = ok
	a.mu.Unlock()
}

// fenceAt is the leader's fence deadline: the lease's, or later while the
// failsafe confirms it.
func (a *Agent) fenceAt(s *etcd.Session) time.Time {
	a.mu.Lock()
	until := a.fs.until
	a.mu.Unlock()
	return Lease{SafeUntil: s.SafeUntil(), FailsafeUntil: until}.FenceAt(a.pol)
}

// armFence (re)sets the fence timer and the watchdog for a lease safe until safe.
func (a *Agent) armFence(safe time.Time) {
	a.armFenceAt(a.pol.FenceAt(safe))
}

// armFenceAt (re)sets the fence timer and the watchdog for the deadline at.
func (a *Agent) armFenceAt(at time.Time) {
	left := at.Sub(a.clock.Now())
	a.pg.Arm(left)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fenceT != nil {
		a.fenceT.Stop()
	}
	a.fenceT = a.clock.AfterFunc(left, func() {
		// The loop decides the same on its next pass; this runs even if the loop is stuck.
		if a.leading() {
			a.pg.Kill()
			a.poke()
		}
	})
}

// dropLeadership forgets the election and the session (the lease is left
// to expire, or revoked when etcd answers) and stops the fence timer.
func (a *Agent) dropLeadership() {
	a.mu.Lock()
	s := a.session
	a.election, a.session = nil, nil
	a.fs.until, a.fs.why = time.Time{}, ""
	if a.fenceT != nil {
		a.fenceT.Stop()
		a.fenceT = nil
	}
	a.mu.Unlock()
	if s == nil {
		return
	}
	// Revoke even a lease believed expired: an etcd that restarts extends
	// every lease it holds, and would revive our leader key, routing the
	// proxies to a postgres that was fenced and now runs in recovery
	// (issue 14: ~5 s of read-only errors after a 10 s etcd outage). When
	// etcd cannot be reached, the revoke is retried until it answers.
	ctx, cancel := context.WithTimeout(context.Background(), a.pol.RetryTimeout)
	err := s.Close(ctx)
	cancel()
	if err != nil {
		a.log.Warn("the dropped lease could not be revoked; retried once etcd answers", "lease", s.Lease(), "err", err)
		a.mu.Lock()
		a.pendingRevoke = s.Lease()
		a.mu.Unlock()
	}
}

// revokePending revokes the lease of a session dropped while etcd could not
// be reached, once it can: before a new session, so that no key of the
// old one outlives the member's decision to drop it.
//
// It returns nil when nothing is pending.
func (a *Agent) revokePending(ctx context.Context) error {
	a.mu.Lock()
	id := a.pendingRevoke
	a.mu.Unlock()
	if id == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, a.pol.RetryTimeout)
	err := a.o.Etcd.Revoke(rctx, id)
	cancel()
	if err != nil {
		a.log.Debug("revoke of a dropped lease failed; retried", "lease", id, "err", err)
		return fmt.Errorf("pgha: revoke the dropped lease %x: %w", id, err)
	}
	a.mu.Lock()
	a.pendingRevoke = 0
	a.mu.Unlock()
	a.record(ctx, "db.lease_revoked", fmt.Sprintf("etcd answers again: the lease %x this member dropped while it could not be reached "+
		"is revoked, so that no key of it (the leader key) routes clients to this member", id))
	return nil
}

// unanswered reports whether err means etcd did not answer (a deadline, no
// connection), rather than answering with a refusal.
func unanswered(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) { // wrapped status errors are found too
	case codes.DeadlineExceeded, codes.Unavailable:
		return true
	}
	return false
}

// observe reads the local postgres.
func (a *Agent) observe(ctx context.Context) Local {
	running, writable, upstream, syncStandby := a.pg.State()
	a.mu.Lock()
	busy := a.busy
	if busy == "" && a.clock.Now().Before(a.retryAt) {
		busy = "retry-wait"
	}
	a.mu.Unlock()
	l := Local{Initialized: a.pg.Initialized(), Running: running, Writable: writable, Upstream: upstream,
		SyncStandby: syncStandby, WasPrimary: a.pg.WasPrimary(), Busy: busy,
		Repairs: a.pg.Repairs(a.clock.Now(), a.pol.repairWindow())}
	if !running {
		a.pr.close()
		return l
	}
	pctx, cancel := context.WithTimeout(ctx, a.pol.RetryTimeout)
	p, err := a.pr.probe(pctx)
	cancel()
	if err != nil {
		a.log.Debug("postgres probe failed", "err", err)
		return l
	}
	l.Ready, l.InRecovery, l.LSN, l.ReplayLSN = true, p.InRecovery, p.LSN, p.ReplayLSN
	l.LagSeconds, l.Timeline, l.Streaming, l.Replicas = p.LagSeconds, p.Timeline, p.Streaming, p.Replicas
	return l
}

// publish writes this member's status under its lease when it changed or
// once per loop_wait, and, while leading, the optime.
func (a *Agent) publish(ctx context.Context, v View) {
	a.mu.Lock()
	s, el, l, now, problem := a.session, a.election, a.local, a.clock.Now(), a.member.Problem()
	a.mu.Unlock()
	mi := a.statusOf(l, v)
	mi.Problem = problem
	a.setMetrics(mi, l, v)
	if s == nil {
		return
	}
	val := mustJSON(mi)
	mi.Updated = now
	a.mu.Lock()
	stale := val != a.pubVal || now.Sub(a.lastPub) >= a.pol.LoopWait
	a.mu.Unlock()
	if !stale {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, a.pol.RetryTimeout)
	defer cancel()
	if err := s.Put(rctx, a.k.member(a.o.Member), mustJSON(mi)); err != nil {
		a.log.Debug("publish member status", "err", err)
		return
	}
	a.mu.Lock()
	a.pubVal, a.lastPub = val, now
	a.mu.Unlock()
	if el != nil && mi.Role == RolePrimary && l.LSN != 0 && l.LSN != a.optime {
		if err := el.PutIfLeader(rctx, a.k.optime(), mustJSON(l.LSN)); err == nil {
			a.optime = l.LSN
		}
	}
}

// statusOf is what the member publishes about itself (Updated unset).
func (a *Agent) statusOf(l Local, v View) MemberInfo {
	mi := a.me
	mi.PostgresPID = a.pg.PID()
	mi.Timeline, mi.LSN, mi.ReplayLSN, mi.Streaming, mi.Upstream, mi.Ready = l.Timeline, l.LSN, l.ReplayLSN, l.Streaming, l.Upstream, l.Ready
	switch {
	case !l.Running:
		mi.Role, mi.State = RoleStopped, "stopped"
	case !l.Ready:
		mi.Role, mi.State = RoleUnknown, "starting"
	case l.InRecovery:
		mi.Role, mi.State = RoleReplica, "running"
		if v.Optime > l.LSN {
			mi.LagBytes = v.Optime - l.LSN
		}
		mi.LagSeconds = l.LagSeconds
	default:
		mi.Role, mi.State = RolePrimary, "running"
	}
	if l.Busy != "" {
		mi.State = l.Busy
	}
	return mi
}

// setMetrics exports what the member publishes (the role is read at
// scrape time: currentRole).
func (a *Agent) setMetrics(mi MemberInfo, l Local, v View) {
	a.o.Metrics.setLag(a.o.Cluster, a.o.Member, mi.LagBytes, mi.LagSeconds)
	streaming := l.Running && l.Ready && l.InRecovery && l.Streaming
	ready := v.Fresh && ((mi.Role == RolePrimary && a.leading()) || (mi.Role == RoleReplica && streaming && mi.Problem == ""))
	a.o.Metrics.state(a.o.Cluster, a.o.Member, streaming, ready, v.Sync.Standby != "" && a.pol.Sync, l.Timeline)
}

// currentRole is the member's role now, for medic_db_role: "unknown" once
// the lease cannot be confirmed (etcd has not answered within the fence
// margin: a member cut off from etcd does not know whether it still leads),
// and "primary" only while this member leads and its fence deadline has not
// passed, so that no scrape sees it primary after a replica may have won.
func (a *Agent) currentRole() Role {
	a.mu.Lock()
	l, v, lastOK, el, s, fsUntil := a.local, a.view, a.lastOK, a.election, a.session, a.fs.until
	a.mu.Unlock()
	now := a.clock.Now()
	// A leader in failsafe knows it leads: its peers confirmed it.
	failsafe := el != nil && now.Before(fsUntil)
	if !failsafe && (v.Rev == 0 || lastOK.IsZero() || now.Sub(lastOK) >= a.pol.TTL-a.pol.RetryTimeout) {
		return RoleUnknown
	}
	switch {
	case !l.Running:
		return RoleStopped
	case !l.Ready:
		return RoleUnknown
	case l.InRecovery:
		return RoleReplica
	case el != nil && s != nil && now.Before(Lease{SafeUntil: s.SafeUntil(), FailsafeUntil: fsUntil}.FenceAt(a.pol)):
		return RolePrimary
	}
	return RoleUnknown
}
