package pgha

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/medic-dev/medic/internal/etcd"
)

// do carries out one action. Quick ones run here, bounded by retry_timeout;
// long ones (clone, rewind, start, promote, handoff) run as the single
// background job, and Step waits while Local.Busy is set.
func (a *Agent) do(ctx context.Context, act Action, v View, l Local) error {
	rctx, cancel := context.WithTimeout(ctx, a.pol.RetryTimeout)
	defer cancel()
	a.mu.Lock()
	el, s := a.election, a.session
	a.mu.Unlock()
	epoch := a.pg.Epoch()
	switch act.Kind {
	case ActProclaim, ActWriteSync, ActPromote, ActHandoff, ActStartPrimary, ActWriteFailsafe:
		if el == nil {
			// Leadership was dropped since the step that decided this.
			return fmt.Errorf("pgha: %s: %w", act.Kind, etcd.ErrNotLeader)
		}
	}
	switch act.Kind {
	case ActRefuse:
		a.record(ctx, "db.promotion_refused", act.Reason)
	case ActWriteFailsafe:
		return a.writeFailsafe(rctx, act)
	case ActFence:
		a.mu.Lock()
		if a.fs.why != "" {
			act.Reason += " (failsafe: " + a.fs.why + ")"
		}
		a.mu.Unlock()
		a.pg.Kill()
		a.o.Metrics.inc(cntFence, a.o.Cluster, a.o.Member)
		if el != nil {
			_ = el.Resign(rctx) // best effort: lets the next leader in at once
		}
		a.dropLeadership()
		a.record(ctx, "db.fenced", act.Reason)
	case ActResign:
		if el == nil {
			return nil
		}
		err := el.Resign(rctx)
		a.dropLeadership()
		a.record(ctx, "db.demoted", act.Reason)
		return err
	case ActStop:
		return a.pg.Stop(ctx, 10*time.Second)
	case ActForgetPrimary:
		if err := a.pg.SetWasPrimary(false); err != nil {
			return err
		}
		a.record(ctx, "db.rejoined", act.Reason)
	case ActCampaign:
		return a.campaign(rctx, act, l, s)
	case ActProclaim:
		if el == nil {
			return etcd.ErrNotLeader
		}
		val := a.leaderValue(LeaderPrimary)
		if err := el.Proclaim(rctx, val); err != nil {
			return err
		}
		if !v.Init.Done {
			return el.PutIfLeader(rctx, a.k.initialize(), mustJSON(InitInfo{Member: a.o.Member, Done: true}))
		}
	case ActWriteSync:
		if el == nil {
			return etcd.ErrNotLeader
		}
		if err := el.PutIfLeader(rctx, a.k.sync(), mustJSON(SyncInfo{Leader: a.o.Member, Standby: act.Target})); err != nil {
			return err
		}
		a.record(ctx, "db.sync", act.Reason)
	case ActSetSyncStandby:
		if err := a.pg.SetSyncStandby(act.Target); err != nil {
			return err
		}
		a.log.Info(act.Reason, "synchronous_standby_names", act.Target)
	case ActClearFailover:
		if v.Failover != nil {
			return a.o.Etcd.DeleteIfRev(rctx, a.k.failover(), v.Failover.ModRev)
		}
	case ActFollow:
		addr, ok := a.addrOf(v, act.Target)
		if !ok {
			return fmt.Errorf("pgha: follow %s: address unknown", act.Target)
		}
		if err := a.pg.Follow(act.Target, addr); err != nil {
			return err
		}
		a.record(ctx, "db.following", act.Reason)
	case ActBootstrap:
		if s == nil {
			return errors.New("pgha: bootstrap: no etcd session")
		}
		if err := a.o.Etcd.Create(rctx, a.k.initialize(), mustJSON(InitInfo{Member: a.o.Member}), s.Lease()); err != nil {
			return err // another member bootstraps
		}
		a.record(ctx, "db.bootstrap", act.Reason)
		a.job(ctx, "bootstrap", func(ctx context.Context) error {
			if err := a.pg.SetWasPrimary(true); err != nil {
				return err
			}
			if err := a.pg.InitDB(ctx); err != nil {
				return err
			}
			return a.pg.Start(true, "", "", epoch, 0)
		})
	case ActStartPrimary:
		if s == nil {
			return etcd.ErrNotLeader
		}
		left := a.pol.FenceAt(s.SafeUntil()).Sub(a.clock.Now())
		a.record(ctx, "db.starting", "starting postgres as the primary: "+act.Reason)
		a.job(ctx, "start", func(context.Context) error {
			if err := a.pg.SetWasPrimary(true); err != nil {
				return err
			}
			return a.pg.Start(true, "", "", epoch, left)
		})
	case ActStartReplica:
		addr, _ := a.addrOf(v, act.Target)
		a.job(ctx, "start", func(context.Context) error { return a.pg.Start(false, act.Target, addr, epoch, 0) })
	case ActBasebackup, ActRewind, ActReclone:
		return a.rejoin(ctx, act, v, l, epoch)
	case ActNotStreaming:
		a.record(ctx, "db.replica_not_streaming", act.Reason)
	case ActStreaming:
		a.record(ctx, "db.replica_streaming", act.Reason)
	case ActPromote:
		a.job(ctx, "promote", func(ctx context.Context) error { return a.promote(ctx, act, el, s, v) })
	case ActHandoff:
		a.job(ctx, "handoff", func(ctx context.Context) error {
			if err := a.pg.Stop(ctx, 10*time.Second); err != nil {
				return err
			}
			// Forget the election before deleting its key, so that no step
			// sees our key gone while still believing it leads.
			a.mu.Lock()
			a.election = nil
			if a.fenceT != nil {
				a.fenceT.Stop()
			}
			a.mu.Unlock()
			rctx, cancel := context.WithTimeout(ctx, a.pol.RetryTimeout*2)
			defer cancel()
			err := el.Resign(rctx)
			a.record(ctx, "db.switchover", act.Reason+": postgres stopped cleanly and the lease handed over")
			return err
		})
	}
	return nil
}

// campaign enters the election and, on winning, records it.
func (a *Agent) campaign(ctx context.Context, act Action, l Local, s *etcd.Session) error {
	if s == nil {
		return errors.New("pgha: campaign: no etcd session")
	}
	state := LeaderPromoting
	if l.Writable && l.Ready && !l.InRecovery {
		state = LeaderPrimary // bootstrap: it already serves
	}
	a.mu.Lock()
	promised := a.fs.promUntil
	a.campaigning = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.campaigning = false
		a.mu.Unlock()
	}()
	if a.clock.Now().Before(promised) {
		return fmt.Errorf("pgha: campaign: promised a leader in failsafe not to campaign before %s", promised.Format("15:04:05.000"))
	}
	el := s.Election(a.k.leader())
	if err := el.Campaign(ctx, a.leaderValue(state)); err != nil {
		return err
	}
	a.mu.Lock()
	a.election, a.leaderFor = el, a.clock.Now()
	a.mu.Unlock()
	a.armFence(s.SafeUntil())
	a.record(ctx, "db.elected", fmt.Sprintf("won the election (fencing revision %d): %s", el.Rev(), act.Reason))
	a.poke()
	return nil
}

// promote turns the local replica into the primary.
func (a *Agent) promote(ctx context.Context, act Action, el *etcd.Election, s *etcd.Session, v View) error {
	if el == nil || s == nil {
		return etcd.ErrNotLeader
	}
	rctx, cancel := context.WithTimeout(ctx, a.pol.RetryTimeout*2)
	defer cancel()
	if a.pol.Sync {
		// Before the first write without a synchronous standby: from now on
		// only this member holds every acknowledged commit.
		if err := el.PutIfLeader(rctx, a.k.sync(), mustJSON(SyncInfo{Leader: a.o.Member})); err != nil {
			return err
		}
	}
	if err := a.pg.SetWasPrimary(true); err != nil {
		return err
	}
	a.armFence(s.SafeUntil())
	start := a.clock.Now()
	if err := a.pr.promote(ctx, 30*time.Second); err != nil {
		return err
	}
	a.pg.MarkWritable()
	if err := el.Proclaim(rctx, a.leaderValue(LeaderPrimary)); err != nil {
		return err
	}
	if f := v.Failover; f != nil && f.To == a.o.Member {
		_ = a.o.Etcd.DeleteIfRev(rctx, a.k.failover(), f.ModRev)
	}
	a.o.Metrics.inc(cntFailover, a.o.Cluster, a.o.Member)
	a.record(ctx, "db.promoted", fmt.Sprintf("promoted to primary in %v: %s", a.clock.Now().Sub(start).Round(time.Millisecond), act.Reason))
	return nil
}

// rejoin clones, re-clones or rewinds from the leader, then starts as its
// replica. A repair (a rewind of data that did not last run read-write, or
// a re-clone) is counted in the guardrail's history before it starts.
func (a *Agent) rejoin(ctx context.Context, act Action, v View, l Local, epoch uint64) error {
	addr, ok := a.addrOf(v, act.Target)
	if !ok {
		return fmt.Errorf("pgha: %s from %s: address unknown", act.Kind, act.Target)
	}
	name := map[ActionKind]string{ActBasebackup: "basebackup", ActReclone: "reclone", ActRewind: "rewind"}[act.Kind]
	repair := act.Kind == ActReclone || (act.Kind == ActRewind && !l.WasPrimary)
	if repair {
		if err := a.pg.AddRepair(a.clock.Now(), a.pol.repairWindow()); err != nil {
			return err
		}
		a.o.Metrics.inc(cntRepair, a.o.Cluster, a.o.Member)
		a.record(ctx, "db.repair", act.Reason)
	}
	a.job(ctx, name, func(ctx context.Context) error {
		verdict := ""
		switch act.Kind {
		case ActRewind:
			// The source first: an unreachable leader must not cost the
			// running replica anything.
			if err := a.pg.CheckpointSource(ctx, addr); err != nil {
				return err
			}
			if err := a.pg.Stop(ctx, 10*time.Second); err != nil {
				return err
			}
			var err error
			if verdict, err = a.pg.Rewind(ctx, addr); err != nil {
				// pg_rewind cannot always work (a WAL torn exactly at the fork
				// point, missing WAL): a fresh clone always can.
				if ok, why := a.pol.repairAllowed(a.pg.Repairs(a.clock.Now(), a.pol.repairWindow()), a.clock.Now()); !ok {
					a.record(ctx, "db.rejoin_refused", fmt.Sprintf("%v: a re-clone from %s is needed but %s", err, act.Target, why))
					return err
				}
				_ = a.pg.AddRepair(a.clock.Now(), a.pol.repairWindow())
				a.record(ctx, "db.error", fmt.Sprintf("%v: needs re-clone: cloning from %s instead", err, act.Target))
				if err := a.pg.Basebackup(ctx, addr, nil); err != nil {
					return err
				}
				verdict = "re-cloned after pg_rewind failed"
			}
		case ActReclone:
			// The copy is made beside the data; postgres keeps serving reads
			// until it is complete.
			if err := a.pg.Basebackup(ctx, addr, a.pg.Stop); err != nil {
				return err
			}
		default:
			if err := a.pg.Basebackup(ctx, addr, nil); err != nil {
				return err
			}
		}
		if err := a.pg.SetWasPrimary(false); err != nil {
			return err
		}
		if err := a.pg.Start(false, act.Target, addr, epoch, 0); err != nil {
			return err
		}
		kind := "db.cloned"
		if act.Kind == ActRewind {
			kind = "db.rejoined"
		}
		reason := act.Reason + ": now a replica of " + act.Target
		if verdict != "" {
			reason += " (pg_rewind: " + verdict + ")"
		}
		a.record(ctx, kind, reason)
		return nil
	})
	return nil
}

// job runs fn in the background as the member's single long operation.
func (a *Agent) job(ctx context.Context, name string, fn func(ctx context.Context) error) {
	a.mu.Lock()
	if a.busy != "" {
		a.mu.Unlock()
		return
	}
	a.busy = name
	a.mu.Unlock()
	a.jobs.Add(1)
	go func() {
		defer a.jobs.Done()
		jctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		err := fn(jctx)
		cancel()
		a.mu.Lock()
		a.busy = ""
		if err != nil {
			a.retryAt = a.clock.Now().Add(time.Second)
		}
		a.mu.Unlock()
		if err != nil {
			a.log.Warn("database operation failed", "op", name, "err", err)
			if !errors.Is(err, ErrFenced) {
				a.record(ctx, "db.error", fmt.Sprintf("%s failed: %v", name, err))
			}
		}
		a.poke()
	}()
}

// addrOf is the postgres address of member name, from its leader value or its member key.
func (a *Agent) addrOf(v View, name string) (string, bool) {
	if name == "" {
		return "", false
	}
	if v.Leader != nil && v.Leader.Member == name && v.Leader.Postgres != "" {
		return v.Leader.Postgres, true
	}
	if mi, ok := v.Members[name]; ok && mi.Postgres != "" {
		return mi.Postgres, true
	}
	return "", false
}

func (a *Agent) leaderValue(state string) string {
	return mustJSON(LeaderInfo{Member: a.o.Member, Postgres: a.me.Postgres, State: state})
}
