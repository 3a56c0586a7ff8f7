package pgha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Errors of the operator requests; the API maps them to HTTP codes.
var (
	// ErrUnknownMember: the request names no member of the cluster.
	ErrUnknownMember = errors.New("pgha: unknown member")
	// ErrRefused: the request cannot be carried out in the cluster's state.
	ErrRefused = errors.New("pgha: refused")
	// ErrAlreadyPrimary: a switchover or failover names the member that
	// already serves as the primary. It is an ErrRefused.
	ErrAlreadyPrimary = fmt.Errorf("%w: it is already the primary", ErrRefused)
)

// Status is the cluster as this member sees it (GET /v1/db/status).
type Status struct {
	Cluster  string        `json:"cluster"`
	Member   string        `json:"member"` // the member this agent runs
	Mode     string        `json:"mode"`   // async or sync
	Etcd     bool          `json:"etcd_reachable"`
	Leader   *LeaderStatus `json:"leader,omitempty"`
	Members  []MemberInfo  `json:"members"`
	Sync     *SyncInfo     `json:"sync,omitempty"`
	Request  *Failover     `json:"request,omitempty"`
	Optime   uint64        `json:"optime"`
	Timeline int           `json:"timeline"`
	// Redundancy is the conditions the primary on this agent sees (see
	// Redundancy), "condition: what was seen"; empty elsewhere.
	Redundancy []string `json:"redundancy,omitempty"`
	// Failsafe is the DCS failsafe as this agent sees it.
	Failsafe FailsafeStatus `json:"failsafe"`
}

// FailsafeStatus is the DCS failsafe on one agent.
type FailsafeStatus struct {
	Enabled bool     `json:"enabled"`           // this agent's setting (the leader's counts)
	Members []string `json:"members,omitempty"` // who the failsafe key lists: the members a leader asks, the only ones that may campaign
	// Active: on the leader, etcd does not answer and every other member
	// confirmed it (writable until Until); elsewhere, this member promised
	// Leader not to campaign before Until.
	Active bool      `json:"active"`
	Leader string    `json:"leader,omitempty"`
	Until  time.Time `json:"until,omitzero"`
	Last   string    `json:"last,omitempty"` // leader: the outcome of its last round
}

// LeaderStatus is the lease holder and when its lease expires.
type LeaderStatus struct {
	Member     string    `json:"member"`
	State      string    `json:"state"`
	Revision   int64     `json:"revision"`
	ExpiresIn  float64   `json:"lease_expires_in_seconds"` // -1 when etcd could not tell
	ExpiresAt  time.Time `json:"lease_expires_at,omitzero"`
	LeaseTTL   float64   `json:"lease_ttl_seconds"`
	LeaderFrom time.Time `json:"since,omitzero"` // known on the leader's own agent only
}

// Status reports the cluster; it asks etcd for the leader lease's time to live.
func (a *Agent) Status(ctx context.Context) Status {
	a.mu.Lock()
	v, me, since := a.view, a.o.Member, a.leaderFor
	leading := a.election != nil
	red := append([]string(nil), a.redNow...)
	now := a.clock.Now()
	fs := FailsafeStatus{Enabled: a.pol.Failsafe, Last: a.fs.why}
	if leading && now.Before(a.fs.until) {
		fs.Active, fs.Leader, fs.Until = true, me, a.fs.until
	} else if !leading && now.Before(a.fs.promUntil) {
		fs.Active, fs.Leader, fs.Until = true, a.fs.promLeader, a.fs.promUntil
	}
	if fi := v.FailsafeKey; fi != nil {
		for n := range fi.Members {
			fs.Members = append(fs.Members, n)
		}
		sort.Strings(fs.Members)
	}
	a.mu.Unlock()
	st := Status{Cluster: a.o.Cluster, Member: me, Mode: a.o.Config.Replication.Mode, Etcd: v.Fresh, Request: v.Failover, Optime: v.Optime,
		Redundancy: red, Failsafe: fs}
	// The sync key outlives a switch to async mode: it names no standby then.
	if v.Sync.Leader != "" && a.pol.Sync {
		s := v.Sync
		st.Sync = &s
	}
	for _, mi := range v.Members {
		st.Members = append(st.Members, mi)
		if mi.Role == RolePrimary && mi.Timeline > st.Timeline {
			st.Timeline = mi.Timeline
		}
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	if L := v.Leader; L != nil {
		ls := &LeaderStatus{Member: L.Member, State: L.State, Revision: L.Rev, ExpiresIn: -1, LeaseTTL: a.pol.TTL.Seconds()}
		if leading && L.Member == me {
			ls.LeaderFrom = since
		}
		rctx, cancel := context.WithTimeout(ctx, a.pol.RetryTimeout)
		if ttl, err := a.o.Etcd.TimeToLive(rctx, L.Lease); err == nil {
			ls.ExpiresIn, ls.ExpiresAt = ttl.Seconds(), a.clock.Now().Add(ttl).UTC()
		}
		cancel()
		st.Leader = ls
	}
	return st
}

// Switchover asks the leader to hand over gracefully to member to ("" for
// the best replica) and waits until a new primary serves or ctx ends. It
// returns the new primary's name.
func (a *Agent) Switchover(ctx context.Context, to, actor string) (string, error) {
	v := a.currentView()
	if v.Leader == nil || v.Leader.State != LeaderPrimary {
		return "", fmt.Errorf("switchover: %w: there is no serving primary to switch over from", ErrRefused)
	}
	from := v.Leader.Member
	if to != "" {
		mi, ok := v.Members[to]
		switch {
		case !ok:
			return "", fmt.Errorf("switchover to %s: %w", to, ErrUnknownMember)
		case to == from:
			return "", fmt.Errorf("switchover to %s: %w", to, ErrAlreadyPrimary)
		case mi.Role != RoleReplica || !mi.Ready:
			return "", fmt.Errorf("switchover to %s: %w: it is not a running replica", to, ErrRefused)
		}
	}
	if err := a.clearFailsafeFor(ctx, to, actor, "switchover"); err != nil {
		return "", err
	}
	if err := a.request(ctx, Failover{From: from, To: to, By: actor}, "switchover"); err != nil {
		return "", err
	}
	return a.waitLeader(ctx, func(L *LeaderInfo) bool {
		return L.Member != from && L.State == LeaderPrimary && (to == "" || L.Member == to)
	})
}

// Failover forces member to to become the primary, now, whatever its lag
// (the operator takes responsibility, and the actor is recorded). A live
// primary is fenced first.
func (a *Agent) Failover(ctx context.Context, to, actor string) (string, error) {
	if to == "" {
		return "", fmt.Errorf("failover: %w: name the member to promote", ErrRefused)
	}
	v := a.currentView()
	mi, ok := v.Members[to]
	switch {
	case !ok:
		return "", fmt.Errorf("failover to %s: %w", to, ErrUnknownMember)
	case v.Leader != nil && v.Leader.Member == to && v.Leader.State == LeaderPrimary:
		return "", fmt.Errorf("failover to %s: %w", to, ErrAlreadyPrimary)
	case !mi.Ready:
		return "", fmt.Errorf("failover to %s: %w: its postgres is not running", to, ErrRefused)
	}
	if err := a.clearFailsafeFor(ctx, to, actor, "failover"); err != nil {
		return "", err
	}
	if err := a.request(ctx, Failover{To: to, Forced: true, By: actor}, "failover"); err != nil {
		return "", err
	}
	return a.waitLeader(ctx, func(L *LeaderInfo) bool { return L.Member == to && L.State == LeaderPrimary })
}

// clearFailsafeFor deletes the failsafe key when it does not list member
// to, before an operator's switchover or failover to it (medic db
// bootstrap --from-backup is one): a member the key does not list never
// campaigns, and an operator action must not wait for a leader that may be
// gone for good. Audited: a leader cut off from etcd in failsafe does not
// learn of it and would not ask to; the operator takes that on, as with any
// forced failover (docs/failover.md). A live leader writes the key again,
// listing every member, within one loop_wait.
func (a *Agent) clearFailsafeFor(ctx context.Context, to, actor, what string) error {
	if to == "" {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, 2*a.pol.RetryTimeout)
	defer cancel()
	kv, ok, err := a.o.Etcd.Get(rctx, a.k.failsafe())
	if err != nil {
		return fmt.Errorf("%s: read the failsafe key: %w", what, err)
	}
	if !ok {
		return nil
	}
	var fi FailsafeInfo
	if err := json.Unmarshal(kv.Value, &fi); err == nil && fi.listed(to) {
		return nil
	}
	if err := a.o.Etcd.DeleteIfRev(rctx, a.k.failsafe(), kv.ModRev); err != nil {
		return fmt.Errorf("%s: clear the failsafe key: %w", what, err)
	}
	reason := fmt.Sprintf("%s to %s: the failsafe key of %s (token %d) did not list %s, which therefore could not campaign: "+
		"cleared by the operator's action", what, to, orNone(fi.Leader), fi.Rev, to)
	a.log.Warn(reason)
	if a.o.Record != nil {
		a.o.Record(ctx, eventOf(a, "db.failsafe_cleared", actor, reason))
	}
	return nil
}

func (a *Agent) request(ctx context.Context, f Failover, what string) error {
	f.At = a.clock.Now().UTC()
	rctx, cancel := context.WithTimeout(ctx, 2*a.pol.RetryTimeout)
	defer cancel()
	if err := a.o.Etcd.Put(rctx, a.k.failover(), mustJSON(f)); err != nil {
		return fmt.Errorf("%s: write the request: %w", what, err)
	}
	reason := fmt.Sprintf("%s to %s requested", what, orNone(f.To))
	if f.From != "" {
		reason = fmt.Sprintf("%s from %s to %s requested", what, f.From, orAny(f.To))
	}
	if a.o.Record != nil {
		a.o.Record(ctx, eventOf(a, "db."+what+"_requested", f.By, reason))
	}
	return nil
}

func orAny(s string) string {
	if s == "" {
		return "the best replica"
	}
	return s
}

func (a *Agent) currentView() View {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := a.snapshot
	v.Fresh = a.view.Fresh
	return v
}

// waitLeader waits until the leader satisfies ok, re-reading the view each loop.
func (a *Agent) waitLeader(ctx context.Context, ok func(*LeaderInfo) bool) (string, error) {
	for {
		if v := a.currentView(); v.Leader != nil && ok(v.Leader) {
			return v.Leader.Member, nil
		}
		t := a.clock.NewTimer(a.pol.LoopWait / 5)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("waiting for the new primary: %w", ctx.Err())
		case <-t.C():
		}
	}
}

// Primary returns the member that serves as primary in v and its address.
func (v View) Primary() (member, addr string, ok bool) {
	if L := v.Leader; L != nil && L.State == LeaderPrimary && L.Postgres != "" {
		return L.Member, L.Postgres, true
	}
	return "", "", false
}

// Replicas returns the running replicas of v (ready, in recovery), by name.
func (v View) Replicas() []MemberInfo {
	var out []MemberInfo
	for _, mi := range v.Members {
		// A replica that does not stream from the primary may serve data the
		// primary lost, or stale data: not a replica for clients.
		if mi.Role == RoleReplica && mi.Ready && mi.Postgres != "" && mi.Problem == "" {
			out = append(out, mi)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
