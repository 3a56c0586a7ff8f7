// Package pgha keeps one member of a PostgreSQL cluster: it runs the local
// postgres as the primary while the member holds the cluster's lease in etcd
// and as a streaming replica otherwise, fails over when the primary's lease
// is lost, and fences: a member that cannot renew its lease kills its
// postgres before the lease can expire.
//
// The decisions live in Member.Step, a pure value that takes an
// Observation (the local postgres, the cluster as read from etcd, the lease
// and the time) and returns the Actions to take, each with its Reason. Agent
// is the shell: it reads etcd, probes postgres, renews the lease, runs the
// actions and records them.
package pgha

import (
	"fmt"
	"time"
)

// Role is what a member's postgres is, as published in etcd.
// The zero value is RoleUnknown.
type Role int

const (
	RoleUnknown Role = iota
	RoleStopped      // not running
	RolePrimary      // running read-write
	RoleReplica      // running in recovery (read-only)
)

var roleNames = [...]string{"unknown", "stopped", "primary", "replica"}

func (r Role) String() string {
	if r < 0 || int(r) >= len(roleNames) {
		return fmt.Sprintf("role(%d)", int(r))
	}
	return roleNames[r]
}

// MarshalText writes the role by name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a role name.
func (r *Role) UnmarshalText(b []byte) error {
	for i, n := range roleNames {
		if n == string(b) {
			*r = Role(i)
			return nil
		}
	}
	return fmt.Errorf("unknown role %q", b)
}

// Local is one observation of this member's own postgres.
type Local struct {
	Initialized bool // the data directory holds a cluster
	Running     bool // the postmaster is running
	Ready       bool // it answered the probe
	Writable    bool // it was started as, or promoted to, a primary (known even before it is ready)
	InRecovery  bool // the probe says pg_is_in_recovery()
	WasPrimary  bool // the data last ran read-write: follow a new leader only after pg_rewind
	Timeline    int
	LSN         uint64 // primary: current WAL position; replica: last WAL received
	ReplayLSN   uint64
	LagSeconds  float64 // replica: age of the last replayed transaction while replay is behind
	Upstream    string  // replica: member it is configured to stream from ("" none)
	Streaming   bool    // replica: the WAL receiver is streaming
	Replicas    []Replication
	SyncStandby string // primary: synchronous_standby_names as medic set it ("" none)
	Busy        string // long operation in flight ("start", "basebackup", …); "" when idle
	LastError   string // the last operation's failure, for reasons
	// Repairs are the times of the repairs (rewinds and re-clones of a
	// replica that did not stream) within the guardrail's window, kept
	// across restarts of the agent.
	Repairs []time.Time
}

// Replication is one row of the primary's pg_stat_replication.
type Replication struct {
	Member    string // application_name: the member's name
	Streaming bool   // state = streaming
	Sync      bool   // sync_state = sync
	FlushLSN  uint64
	ReplayLSN uint64
}

// View is the cluster as last read from etcd.
type View struct {
	Rev      int64 // etcd revision of the snapshot
	Fresh    bool  // etcd answered recently: the view can be acted on
	Leader   *LeaderInfo
	Members  map[string]MemberInfo
	Sync     SyncInfo
	Failover *Failover
	Init     InitInfo
	Optime   uint64 // the last WAL position the leader published
	// FailsafeKey is the failsafe key (nil: none): the members a leader in
	// failsafe asks, and only they may campaign (others: DecideRelease).
	FailsafeKey *FailsafeInfo
	// Failsafe: etcd is not answering (the view is not fresh) but the
	// failsafe confirms Leader: on the leader, every other member confirmed
	// it within the fence deadline; on another member, it promised not to
	// campaign while Leader leads with this token. The proxies route to it.
	Failsafe bool
}

// LeaderInfo is the leader key: who holds the election and whether it serves yet.
type LeaderInfo struct {
	Member   string `json:"member"`
	Postgres string `json:"postgres"`          // host:port of its postgres
	State    string `json:"state"`             // "promoting" until it accepts writes, then "primary"
	Rev      int64  `json:"-"`                 // creation revision: the fencing token
	Lease    int64  `json:"-"`                 // lease the key is bound to
	Expires  string `json:"expires,omitempty"` // filled for status only
}

// Leader states.
const (
	LeaderPromoting = "promoting"
	LeaderPrimary   = "primary"
)

// MemberInfo is what a member publishes about itself under its lease.
type MemberInfo struct {
	Name       string  `json:"name"`
	Role       Role    `json:"role"`
	State      string  `json:"state"` // running, starting, stopped, fenced, basebackup, rewind, …
	Postgres   string  `json:"postgres"`
	REST       string  `json:"rest,omitempty"`
	Timeline   int     `json:"timeline"`
	LSN        uint64  `json:"lsn"`
	ReplayLSN  uint64  `json:"replay_lsn,omitempty"`
	LagBytes   uint64  `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
	Streaming  bool    `json:"streaming,omitempty"`
	Upstream   string  `json:"upstream,omitempty"`
	Ready      bool    `json:"ready"`
	// Problem is why a running replica is not ready and not eligible
	// (it does not stream from the leader within the bound); "" when none.
	Problem string    `json:"problem,omitempty"`
	Updated time.Time `json:"updated"`
	// Where the member runs, for drills on one machine: the host name, the
	// agent's and the postmaster's process ids, and the agent's primary
	// listener (clients reach the primary through any member's).
	Host        string `json:"host,omitempty"`
	AgentPID    int    `json:"agent_pid,omitempty"`
	PostgresPID int    `json:"postgres_pid,omitempty"`
	Proxy       string `json:"proxy,omitempty"`
	// Protected members are never promoted by an automatic failover.
	Protected bool `json:"protected,omitempty"`
	// Data is the member's data directory (absolute): a backup on the same
	// host copies from a replica through it (pgBackRest --backup-standby).
	Data string `json:"data,omitempty"`
	// BackupServer is host:port of the member's pgBackRest TLS server: a
	// backup on another host copies from this replica through it (pg2-host).
	BackupServer string `json:"backup_server,omitempty"`
}

// SyncInfo is the sync key: in sync mode, the only members that may be
// promoted without losing an acknowledged commit.
type SyncInfo struct {
	Leader  string `json:"leader"`  // the primary that wrote it
	Standby string `json:"standby"` // its synchronous standby; "" when it runs without one
}

// Failover is an operator's request for a switchover (graceful) or a
// failover (forced) to a member.
type Failover struct {
	From   string    `json:"from,omitempty"`
	To     string    `json:"to,omitempty"`
	Forced bool      `json:"forced,omitempty"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	ModRev int64     `json:"-"`
}

// InitInfo is the initialize key: which member bootstraps the cluster and whether it did.
type InitInfo struct {
	Member string `json:"member"`
	Done   bool   `json:"done"`
}

// Lease is the member's standing in etcd as the shell knows it.
type Lease struct {
	ID        int64     // the session's lease; 0 without one
	Rev       int64     // creation revision of our leader key while we lead, else 0
	SafeUntil time.Time // earliest moment the lease can expire
	// FailsafeUntil is the fence deadline the last failsafe round allowed
	// (zero: none): while etcd does not answer, the leader stays writable
	// until the later of it and SafeUntil − retry_timeout.
	FailsafeUntil time.Time
}

// FenceAt is when the leader must have stopped accepting writes.
func (l Lease) FenceAt(p Policy) time.Time {
	at := p.FenceAt(l.SafeUntil)
	if l.FailsafeUntil.After(at) {
		return l.FailsafeUntil
	}
	return at
}

// Observation is everything Step decides on.
type Observation struct {
	Now   time.Time
	Local Local
	View  View
	Lease Lease
	// NoCampaignUntil: this member promised a leader in failsafe not to
	// campaign before then.
	NoCampaignUntil time.Time
	// FailsafeReleased (non-empty: why) lets a member the failsafe key
	// does not list campaign: the key's leader cannot be in failsafe
	// (DecideRelease).
	FailsafeReleased string
}

// ActionKind names what the shell must do.
type ActionKind int

const (
	ActNone           ActionKind = iota
	ActBootstrap                 // claim the initialize key, initdb, start read-write
	ActCampaign                  // enter the election
	ActPromote                   // (leader) sync key first in sync mode, then pg_promote, then proclaim
	ActProclaim                  // (leader) the leader value says the primary serves
	ActFence                     // kill postgres at once, drop leadership (resign when etcd answers)
	ActHandoff                   // (leader, switchover) clean stop, then resign to Target
	ActResign                    // (leader) give the lease up; postgres stays as it is
	ActStartPrimary              // (leader) start postgres read-write
	ActStartReplica              // start postgres in recovery, streaming from Target ("" none)
	ActFollow                    // change a running replica's upstream to Target
	ActRewind                    // stop postgres, pg_rewind from Target; next step starts it
	ActBasebackup                // clone the data directory from Target
	ActSetSyncStandby            // (leader) synchronous_standby_names = Target ("" none)
	ActWriteSync                 // (leader) sync key = {leader: self, standby: Target}
	ActClearFailover             // delete the failover request
	ActRefuse                    // record a refused promotion; nothing else
	ActStop                      // stop postgres (fast), e.g. not ready past primary_start_timeout
	ActForgetPrimary             // the data proved to follow Target: clear the was-primary mark, no rewind
	ActReclone                   // clone afresh from Target, keeping the old data until the copy is complete
	ActNotStreaming              // record (and escalate) that the replica does not stream from Target
	ActStreaming                 // record that the replica streams from Target again
	ActWriteFailsafe             // (leader) write the failsafe key listing Members ("" Target: delete it)
)

var actionNames = [...]string{"none", "bootstrap", "campaign", "promote", "proclaim", "fence", "handoff", "resign",
	"start-primary", "start-replica", "follow", "rewind", "basebackup", "set-sync-standby", "write-sync",
	"clear-failover", "refuse", "stop", "forget-primary", "reclone", "not-streaming", "streaming", "write-failsafe"}

func (k ActionKind) String() string {
	if k < 0 || int(k) >= len(actionNames) {
		return fmt.Sprintf("action(%d)", int(k))
	}
	return actionNames[k]
}

// Action is one thing to do, with the member it concerns and why.
type Action struct {
	Kind   ActionKind
	Target string
	Reason string
	// Members: ActWriteFailsafe's list (name → REST address); nil deletes the key.
	Members map[string]string
}

func (a Action) String() string {
	if a.Target != "" {
		return fmt.Sprintf("%s(%s): %s", a.Kind, a.Target, a.Reason)
	}
	return fmt.Sprintf("%s: %s", a.Kind, a.Reason)
}
