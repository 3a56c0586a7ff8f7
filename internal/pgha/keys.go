package pgha

import (
	"encoding/json"

	"github.com/medic-dev/medic/internal/etcd"
)

// keys is a cluster's layout in etcd, under <prefix>/<cluster>:
//
//	leader/<lease>   the election (concurrency.Election); value LeaderInfo
//	members/<name>   each member's MemberInfo, bound to its lease
//	sync             SyncInfo, written by the leader (fenced)
//	failover         a switchover or failover request (Failover)
//	initialize       InitInfo: who bootstraps, and whether it is done
//	optime           the leader's last WAL position (fenced), for lag after it is gone
//	failsafe         FailsafeInfo (fenced): who a leader in failsafe asks, and their key
type keys struct{ base string }

func (k keys) leader() string            { return k.base + "/leader" }
func (k keys) members() string           { return k.base + "/members" }
func (k keys) member(name string) string { return k.base + "/members/" + name }
func (k keys) sync() string              { return k.base + "/sync" }
func (k keys) failover() string          { return k.base + "/failover" }
func (k keys) initialize() string        { return k.base + "/initialize" }
func (k keys) optime() string            { return k.base + "/optime" }
func (k keys) failsafe() string          { return k.base + "/failsafe" }

// viewOf decodes a snapshot of the cluster's keys. Undecodable values are
// skipped: a member never acts on a key it cannot read.
func viewOf(s etcd.Snapshot, k keys) View {
	v := View{Rev: s.Rev, Members: map[string]MemberInfo{}}
	if l, ok := s.First(k.leader()); ok {
		var li LeaderInfo
		if json.Unmarshal(l.Value, &li) == nil && li.Member != "" {
			li.Rev, li.Lease = l.CreateRev, l.Lease
			v.Leader = &li
		}
	}
	for name, kv := range s.Under(k.members()) {
		var mi MemberInfo
		if json.Unmarshal(kv.Value, &mi) == nil {
			mi.Name = name
			v.Members[name] = mi
		}
	}
	if kv, ok := s.KVs[k.sync()]; ok {
		_ = json.Unmarshal(kv.Value, &v.Sync)
	}
	if kv, ok := s.KVs[k.failover()]; ok {
		var f Failover
		if json.Unmarshal(kv.Value, &f) == nil {
			f.ModRev = kv.ModRev
			v.Failover = &f
		}
	}
	if kv, ok := s.KVs[k.initialize()]; ok {
		_ = json.Unmarshal(kv.Value, &v.Init)
	}
	if kv, ok := s.KVs[k.failsafe()]; ok {
		var f FailsafeInfo
		if json.Unmarshal(kv.Value, &f) == nil && f.Leader != "" {
			v.FailsafeKey = &f
		}
	}
	if kv, ok := s.KVs[k.optime()]; ok {
		_ = json.Unmarshal(kv.Value, &v.Optime)
	}
	return v
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only medic's own plain structs are marshalled
	}
	return string(b)
}
