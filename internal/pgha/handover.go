package pgha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/procstat"
)

// memberHandover is what an agent that hands its member over to the next
// medic (an upgrade) leaves in its state directory, once its loop has
// stopped: the running postmaster and the lease, leader key and failsafe
// state the next agent carries on with (docs/failover.md, "Upgrading
// medic on a member's host").
type memberHandover struct {
	Postgres    PostgresHandover `json:"postgres"`
	Lease       int64            `json:"lease,omitempty"`      // the session's lease (the member key, the leader key)
	LeaderKey   string           `json:"leader_key,omitempty"` // "" when not leading
	LeaderRev   int64            `json:"leader_rev,omitempty"` // the fencing token
	FenceAt     time.Time        `json:"fence_at,omitzero"`    // the old watchdog fences then
	FailsafeKey string           `json:"failsafe_key,omitempty"`
	PromLeader  string           `json:"prom_leader,omitempty"` // a failsafe promise given
	PromRev     int64            `json:"prom_rev,omitempty"`
	PromUntil   time.Time        `json:"prom_until,omitzero"`
	MedicPID    int              `json:"medic_pid"`
	At          time.Time        `json:"at"`
}

func (a *Agent) handoverPath() string {
	return filepath.Join(a.o.StateDir, a.o.Cluster+"-handover.json")
}

// HandOver makes the agent's coming stop a handover to the next medic (a
// seamless upgrade): its loop stops, but postgres keeps running, the lease
// is neither revoked nor the leader key deleted, and what the next agent
// needs to adopt them is written to the state directory. Without a
// running postgres (or with a leader's fence deadline already passed) the
// stop is the usual one.
func (a *Agent) HandOver() { a.handingOver.Store(true) }

// detach is the stop of an agent handing over; false when it cannot (the
// caller then stops as usual).
func (a *Agent) detach(ctx context.Context) bool {
	now := a.clock.Now()
	a.mu.Lock()
	el, s, fs := a.election, a.session, a.fs
	a.mu.Unlock()
	rec := memberHandover{FailsafeKey: fs.key, PromLeader: fs.promLeader, PromRev: fs.promRev, PromUntil: fs.promUntil,
		MedicPID: os.Getpid(), At: now}
	var left time.Duration
	if el == nil {
		// A writable postgres without the leadership (a leader that resigned
		// and left postgres as it was) has nothing the next agent could
		// carry on and no deadline a watchdog could keep: stop it as usual.
		if _, writable, _, _ := a.pg.State(); writable {
			return false
		}
	}
	if el != nil {
		if s == nil || s.Expired() {
			return false
		}
		rec.FenceAt = a.fenceAt(s)
		if left = rec.FenceAt.Sub(now); left <= 0 {
			return false
		}
		rec.LeaderKey, rec.LeaderRev = el.Key(), el.Rev()
	}
	if s != nil && !s.Expired() {
		rec.Lease = s.Lease()
	}
	// The fence timer stops first: from here the old watchdog alone fences
	// at rec.FenceAt, until the next agent renews and arms its own.
	a.mu.Lock()
	if a.fenceT != nil {
		a.fenceT.Stop()
		a.fenceT = nil
	}
	a.mu.Unlock()
	h, ok := a.pg.Detach(left)
	if !ok {
		return false
	}
	rec.Postgres = h
	if err := a.writeHandover(rec); err != nil {
		// The next agent will not adopt it: stop it as on any stop (it is
		// still this medic's child) and give the lease up.
		a.log.Error("hand the member over", "err", err)
		_ = syscall.Kill(h.PID, syscall.SIGINT)
		for i := 0; i < 400 && syscall.Kill(h.PID, 0) == nil; i++ {
			t := a.clock.NewTimer(50 * time.Millisecond)
			<-t.C()
		}
		a.shutdown()
		return true
	}
	role := "replica"
	if el != nil {
		role = fmt.Sprintf("primary and leader (lease %x, fencing revision %d; the watchdog fences at %s unless the next medic renews first)",
			rec.Lease, rec.LeaderRev, rec.FenceAt.Format("15:04:05.000"))
	}
	a.record(ctx, "db.handover", fmt.Sprintf("medic upgrade: postgres (pid %d, %s) is left running for the next medic to adopt; the loop stopped and the lease was kept", h.PID, role))
	return true
}

func (a *Agent) writeHandover(rec memberHandover) error { return a.writeJSON(a.handoverPath(), rec) }

func (a *Agent) writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("pgha: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pgha: write %s: %w", path, err)
	}
	return nil
}

// handoverPoll is how often a medic started by an upgrade looks for the
// previous medic's handover while that one's postmaster runs. 20ms.
const handoverPoll = 20 * time.Millisecond

// agentMark names the medic whose agent runs the member's loop; the file
// is written before the loop starts and removed once it has ended.
type agentMark struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

func (a *Agent) agentPath() string { return filepath.Join(a.o.StateDir, a.o.Cluster+"-agent.json") }

// otherAgentRuns reports whether the agent file names another live medic
// (same pid and start time): its loop may still run.
func (a *Agent) otherAgentRuns() bool {
	b, err := os.ReadFile(a.agentPath())
	if err != nil {
		return false
	}
	var m agentMark
	if json.Unmarshal(b, &m) != nil || m.PID <= 0 || m.PID == os.Getpid() {
		return false
	}
	st, err := procstat.StartTime(m.PID)
	return err == nil && st == m.Start
}

// markAgent writes this medic's agent file; unmarkAgent removes it if it is still this medic's.
func (a *Agent) markAgent() {
	st, err := procstat.StartTime(os.Getpid())
	if err == nil {
		err = a.writeJSON(a.agentPath(), agentMark{PID: os.Getpid(), Start: st})
	}
	if err != nil {
		a.log.Warn("write the agent file", "err", err)
	}
}

func (a *Agent) unmarkAgent() {
	b, err := os.ReadFile(a.agentPath())
	var m agentMark
	if err == nil && json.Unmarshal(b, &m) == nil && m.PID == os.Getpid() {
		os.Remove(a.agentPath())
	}
}

// takeOver runs before the loop starts. With LeftoverWait (a medic
// started by an upgrade) it first waits, while the previous medic's agent
// may still run its loop, for that agent's handover record, or for its
// loop to end and its postmaster to exit (a previous medic that hands
// nothing over). Then it adopts a postmaster handed over, and stops any
// other found running on the data directory (a crash left it: its watchdog
// should have, this is the second line).
func (a *Agent) takeOver(ctx context.Context) error {
	path := a.handoverPath()
	pid, err := a.pg.postmasterPID()
	if err != nil {
		return err
	}
	if w := a.o.LeftoverWait; w > 0 && (pid != 0 || a.otherAgentRuns()) {
		a.log.Info("waiting for the previous medic to hand the member over", "postmaster", pid, "at_most", w)
		until := a.clock.Now().Add(w)
		for ctx.Err() == nil && a.clock.Now().Before(until) {
			if a.freshRecord(path) {
				break
			}
			if !a.otherAgentRuns() && (pid == 0 || syscall.Kill(pid, 0) != nil) {
				break
			}
			t := a.clock.NewTimer(handoverPoll)
			select {
			case <-t.C():
			case <-ctx.Done():
				t.Stop()
			}
		}
		if pid, err = a.pg.postmasterPID(); err != nil { // the previous medic may have started one meanwhile
			return err
		}
	}
	if pid == 0 {
		os.Remove(path)
		return nil
	}
	var rec memberHandover
	fresh := a.freshRecord(path)
	b, rerr := os.ReadFile(path)
	os.Remove(path) // used once
	if rerr == nil && !fresh {
		// Written before this agent existed: a previous upgrade's, which
		// nobody read (its reader had stopped waiting). Never adopt by it.
		a.log.Warn("stale handover record ignored", "path", path)
		rerr = os.ErrNotExist
	}
	if rerr == nil {
		rerr = json.Unmarshal(b, &rec)
	}
	if rerr == nil && rec.Postgres.PID == pid {
		why, err := a.adopt(ctx, rec)
		if err == nil {
			return nil
		}
		a.log.Warn("the postmaster handed over could not be adopted", "pid", pid, "err", err, "why", why)
	} else if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		a.log.Warn("unreadable handover record", "path", path, "err", rerr)
	}
	if pid, err := a.pg.KillLeftover(ctx, 0); err != nil {
		return err
	} else if pid != 0 {
		a.record(ctx, "db.fenced", fmt.Sprintf("postgres (pid %d) was left running by a previous agent: stopped before anything else", pid))
	}
	return nil
}

// freshRecord reports whether the handover record at path is the one the
// medic this agent replaces wrote: written since this agent was made, or by
// a medic that still runs or that the agent file names as the one running
// the loop. A record that is none of these is a previous upgrade's that
// nobody read (its reader had stopped waiting): ending the wait on it would
// stop the running agent's postmaster as a leftover.
func (a *Agent) freshRecord(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	if !fi.ModTime().Before(a.born) {
		return true
	}
	var rec memberHandover
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &rec) != nil || rec.MedicPID <= 0 {
		return false
	}
	if syscall.Kill(rec.MedicPID, 0) == nil {
		return true
	}
	var m agentMark
	b, err := os.ReadFile(a.agentPath())
	return err == nil && json.Unmarshal(b, &m) == nil && m.PID == rec.MedicPID
}

// adopt takes over a postmaster and the member's lease handed over by the
// previous medic. A leader's lease is renewed and its leader key checked
// (same key, same fencing revision, same lease) before anything else; if
// that fails, the postmaster is fenced (it may be writable without the
// lease). err means nothing was taken over (the caller stops the leftover).
func (a *Agent) adopt(ctx context.Context, rec memberHandover) (string, error) {
	h := rec.Postgres
	if err := a.pg.Adopt(h); err != nil {
		return "", err
	}
	var (
		s   *etcd.Session
		el  *etcd.Election
		err error
	)
	now := a.clock.Now()
	if rec.Lease != 0 {
		rctx, cancel := context.WithTimeout(ctx, a.pol.RetryTimeout)
		s, err = a.o.Etcd.ResumeSession(rctx, rec.Lease, a.clock)
		if err == nil && rec.LeaderKey != "" {
			el, err = s.ResumeElection(rctx, a.k.leader(), rec.LeaderKey, rec.LeaderRev)
		}
		cancel()
	}
	if (rec.LeaderKey != "" || h.Writable) && el == nil {
		// It led (or is writable) and the leadership cannot be carried on:
		// the fence, as for a leader whose lease could not be renewed.
		a.pg.Kill()
		EndWatchdog(h.WatchdogPID, h.WatchdogStart)
		why := fmt.Sprintf("medic upgrade: the leadership handed over (lease %x, fencing revision %d) could not be carried on (%v): "+
			"the adopted postmaster (pid %d) is fenced", rec.Lease, rec.LeaderRev, err, h.PID)
		if s != nil {
			rctx, cancel := context.WithTimeout(ctx, a.pol.RetryTimeout)
			if s.Close(rctx) != nil {
				a.mu.Lock()
				a.pendingRevoke = rec.Lease
				a.mu.Unlock()
			}
			cancel()
		} else if rec.Lease != 0 {
			a.mu.Lock()
			a.pendingRevoke = rec.Lease
			a.mu.Unlock()
		}
		a.o.Metrics.inc(cntFence, a.o.Cluster, a.o.Member)
		a.record(ctx, "db.fenced", why)
		return why, nil
	}
	a.mu.Lock()
	if s != nil {
		a.session, a.lastRenew, a.lastOK = s, now, now
	} else if rec.Lease != 0 {
		a.pendingRevoke = rec.Lease // revoked before a new session is made
	}
	a.election = el
	if el != nil {
		a.leaderFor = now
	}
	a.fs.key = rec.FailsafeKey
	a.fs.promLeader, a.fs.promRev, a.fs.promUntil = rec.PromLeader, rec.PromRev, rec.PromUntil
	a.mu.Unlock()
	if el != nil {
		a.armFence(s.SafeUntil()) // this medic's watchdog is armed before the old one ends
	}
	ended := EndWatchdog(h.WatchdogPID, h.WatchdogStart)
	role := "a replica"
	if el != nil {
		role = fmt.Sprintf("the primary; leadership carried on with the same lease %x and fencing revision %d, renewed", rec.Lease, rec.LeaderRev)
	} else if h.Writable {
		role = "writable"
	}
	why := fmt.Sprintf("medic upgrade: adopted the running postmaster (pid %d, same process: pidfd and start time) handed over by medic pid %d %v ago, as %s",
		h.PID, rec.MedicPID, now.Sub(rec.At).Round(time.Millisecond), role)
	if s == nil && rec.Lease != 0 {
		why += fmt.Sprintf("; the lease %x could not be renewed (%v): a new session is made", rec.Lease, err)
	}
	if ended {
		why += "; the previous medic's watchdog ended"
	}
	a.record(ctx, "db.adopted", why)
	return why, nil
}
