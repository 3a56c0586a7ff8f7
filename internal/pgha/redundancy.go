package pgha

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/medic-dev/medic"
)

// Redundancy conditions the primary watches: each leaves the cluster one
// failure from an outage or from losing acknowledged writes, without any
// request failing. They are published in the status, exported as
// medic_db_redundancy_condition{condition} and recorded as
// db.redundancy_lost / db.redundancy_restored events (fields: condition),
// which event conditions, runbooks and notifications can follow.
const (
	CondNoStreamingReplica  = "no_streaming_replica"  // no replica streams from the primary
	CondNoSyncStandby       = "no_sync_standby"       // sync mode, and no member is named synchronous standby
	CondOldTimeline         = "replica_old_timeline"  // a replica reports a timeline older than the primary's
	CondReplicaNotStreaming = "replica_not_streaming" // a replica reports it does not stream within the bound
	CondReplicaLagging      = "replica_lagging"       // a replica's flushed WAL is more than maximum_lag_on_failover behind
)

// RedundancyConditions lists every condition name, in a stable order.
var RedundancyConditions = []string{CondNoStreamingReplica, CondNoSyncStandby, CondOldTimeline, CondReplicaNotStreaming, CondReplicaLagging}

// Redundancy is the conditions that hold for a primary observing l with
// the cluster in v, each with what it saw. Only the primary decides: the
// others return nil.
func Redundancy(name string, p Policy, l Local, v View) map[string]string {
	if !l.Running || !l.Ready || l.InRecovery || v.Leader == nil || v.Leader.Member != name {
		return nil
	}
	out := map[string]string{}
	var streaming, lagging []string
	for _, r := range l.Replicas {
		if _, member := v.Members[r.Member]; !member || r.Member == name {
			continue
		}
		if r.Streaming {
			streaming = append(streaming, r.Member)
		}
		if l.LSN > r.FlushLSN && l.LSN-r.FlushLSN > p.MaxLag {
			lagging = append(lagging, fmt.Sprintf("%s %d bytes", r.Member, l.LSN-r.FlushLSN))
		}
	}
	if len(streaming) == 0 {
		out[CondNoStreamingReplica] = "no replica streams from the primary " + name
	}
	if p.Sync && v.Sync.Standby == "" {
		out[CondNoSyncStandby] = "sync mode, but no replica is the synchronous standby: no replica may take over without losing acknowledged commits"
	}
	var old, notStreaming []string
	for _, mi := range v.Members {
		if mi.Name == name || mi.Role != RoleReplica {
			continue
		}
		if mi.Timeline > 0 && l.Timeline > 0 && mi.Timeline < l.Timeline {
			old = append(old, fmt.Sprintf("%s on timeline %d", mi.Name, mi.Timeline))
		}
		if mi.Problem != "" {
			notStreaming = append(notStreaming, mi.Name+": "+mi.Problem)
		}
	}
	if len(old) > 0 {
		sort.Strings(old)
		out[CondOldTimeline] = fmt.Sprintf("%s, the primary on %d", strings.Join(old, ", "), l.Timeline)
	}
	if len(notStreaming) > 0 {
		sort.Strings(notStreaming)
		out[CondReplicaNotStreaming] = strings.Join(notStreaming, "; ")
	}
	if len(lagging) > 0 {
		sort.Strings(lagging)
		out[CondReplicaLagging] = strings.Join(lagging, ", ") + fmt.Sprintf(" behind (maximum_lag_on_failover %d)", p.MaxLag)
	}
	return out
}

// watchRedundancy records the conditions that held for StreamTimeout (a
// new primary has no replica for its first seconds) and those that ended,
// and exports them. It runs in the loop only.
func (a *Agent) watchRedundancy(ctx context.Context, l Local, v View) {
	now := a.clock.Now()
	conds := Redundancy(a.o.Member, a.pol, l, v)
	if a.redSince == nil {
		a.redSince, a.redFiring = map[string]time.Time{}, map[string]bool{}
	}
	for _, c := range RedundancyConditions {
		detail, holds := conds[c]
		switch {
		case holds && a.redSince[c].IsZero():
			a.redSince[c] = now
		case !holds:
			delete(a.redSince, c)
		}
		firing := holds && now.Sub(a.redSince[c]) >= a.pol.streamTimeout()
		if firing && !a.redFiring[c] {
			a.recordFields(ctx, "db.redundancy_lost", c+": "+detail, map[string]string{"condition": c})
		} else if !holds && a.redFiring[c] && conds != nil {
			a.recordFields(ctx, "db.redundancy_restored", c+" no longer holds", map[string]string{"condition": c})
		}
		a.redFiring[c] = firing
		a.o.Metrics.redundancy(a.o.Cluster, c, firing)
	}
	a.mu.Lock()
	a.redNow = nil
	for _, c := range RedundancyConditions {
		if a.redFiring[c] {
			a.redNow = append(a.redNow, c+": "+conds[c])
		}
	}
	a.mu.Unlock()
}

// recordFields writes an event about this member with fields.
func (a *Agent) recordFields(ctx context.Context, kind, reason string, fields map[string]string) {
	if a.o.Record == nil {
		a.log.Info(reason, "kind", kind)
		return
	}
	a.o.Record(ctx, medic.Event{Time: a.clock.Now(), Kind: medic.EventKind(kind), Actor: "db:" + a.o.Member,
		Target: "db/" + a.o.Cluster + "/" + a.o.Member, Reason: reason, Fields: fields})
}
