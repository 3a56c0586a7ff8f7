package pgha

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"
)

// The DCS failsafe (databases.NAME.failsafe, docs/failover.md), as
// Patroni's failsafe_mode: while the leader cannot renew its lease because
// etcd does not answer, it stays writable only as long as every other
// member's agent confirms, over its REST endpoint, that it sees it as the
// leader with the same fencing token, cannot reach etcd either, and
// promises not to campaign for a lease TTL. Any member that cannot be
// reached or answers otherwise leaves the fence deadline where the lease
// put it: the primary fences as without the failsafe.

// FailsafeInfo is the failsafe key, written (fenced) by a leader that runs
// with the failsafe on: the members it will ask, and the key that
// authenticates the questions and the answers (only agents that can read
// the cluster's keys in etcd know it). Only a member it lists may campaign
// while the key exists: a member that joined after the leader's last view
// would not be asked, so it must not be able to take over either — until
// every listed member is done with the key's leader (DecideRelease), or an
// operator's failover to it clears the key.
type FailsafeInfo struct {
	Leader  string            `json:"leader"`
	Rev     int64             `json:"rev"`     // the leader key's creation revision (fencing token)
	Members map[string]string `json:"members"` // name → REST address ("" none), the leader included
	Key     string            `json:"key"`     // hex HMAC-SHA256 key of the requests and answers
}

// listed reports whether the key lets member name campaign.
func (f *FailsafeInfo) listed(name string) bool {
	if f == nil {
		return true
	}
	_, ok := f.Members[name]
	return ok
}

// FailsafeRequest is the leader's question (POST /failsafe).
type FailsafeRequest struct {
	Cluster string `json:"cluster"`
	Leader  string `json:"leader"`
	Rev     int64  `json:"rev"`
	Seq     uint64 `json:"seq"` // strictly increasing per leadership: an old request replayed is refused
}

// FailsafeAnswer is a member's answer. Accepted means: "I see you leading
// with this token, I cannot reach etcd, and I will not campaign for
// PromiseMS from the moment I received this".
type FailsafeAnswer struct {
	Member    string `json:"member"`
	Leader    string `json:"leader"`
	Rev       int64  `json:"rev"`
	Seq       uint64 `json:"seq"`
	Accepted  bool   `json:"accepted"`
	Reason    string `json:"reason,omitempty"`
	PromiseMS int64  `json:"promise_ms,omitempty"`
}

// FailsafeMACHeader carries the hex HMAC-SHA256 of a request's or an answer's body.
const FailsafeMACHeader = "X-Medic-Failsafe-Mac"

// failsafeMAC is the hex HMAC-SHA256 of body under the hex key.
func failsafeMAC(key string, body []byte) (string, error) {
	k, err := hex.DecodeString(key)
	if err != nil || len(k) < 16 {
		return "", fmt.Errorf("pgha: failsafe key: want at least 16 hex bytes")
	}
	h := hmac.New(sha256.New, k)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// failsafeVerify checks mac against body under key, in constant time.
func failsafeVerify(key string, body []byte, mac string) bool {
	want, err := failsafeMAC(key, body)
	if err != nil {
		return false
	}
	return hmac.Equal([]byte(want), []byte(strings.ToLower(mac)))
}

// PeerAnswer is what the leader got from one member in a failsafe round:
// the answer, or why there is none.
type PeerAnswer struct {
	Answer FailsafeAnswer
	Err    string // no (authentic) answer: unreachable, timeout, bad MAC, …
}

// FailsafeDecision is the outcome of one failsafe round on the leader.
type FailsafeDecision struct {
	// Until is the new fence deadline the round allows (zero: none): the
	// send time of the round plus the shortest promise, minus
	// retry_timeout — before any member that promised may campaign.
	Until time.Time
	Why   string // what confirmed it, or which member did not
}

// DecideFailsafe is the leader's decision after one round of questions sent
// at sent: every member the failsafe key lists, but the leader, must have
// accepted this very request (same leader, token and sequence). Promises
// count from sent, which is no later than when any member received the
// request, so the leader's deadline never passes a member's.
func DecideFailsafe(p Policy, self string, fi FailsafeInfo, req FailsafeRequest, sent time.Time, answers map[string]PeerAnswer) FailsafeDecision {
	if fi.Leader != self || fi.Rev != req.Rev || req.Leader != self {
		return FailsafeDecision{Why: "the failsafe key names another leadership"}
	}
	names := make([]string, 0, len(fi.Members))
	for n := range fi.Members {
		if n != self {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var promise time.Duration = -1
	for _, n := range names {
		pa, ok := answers[n]
		switch {
		case !ok:
			return FailsafeDecision{Why: n + " was not asked"}
		case pa.Err != "":
			return FailsafeDecision{Why: fmt.Sprintf("%s did not answer: %s", n, pa.Err)}
		case pa.Answer.Member != n || pa.Answer.Leader != self || pa.Answer.Rev != req.Rev || pa.Answer.Seq != req.Seq:
			return FailsafeDecision{Why: fmt.Sprintf("%s answered another question (member %q, leader %q, token %d, seq %d)",
				n, pa.Answer.Member, pa.Answer.Leader, pa.Answer.Rev, pa.Answer.Seq)}
		case !pa.Answer.Accepted:
			return FailsafeDecision{Why: fmt.Sprintf("%s refused: %s", n, pa.Answer.Reason)}
		}
		d := time.Duration(pa.Answer.PromiseMS) * time.Millisecond
		if promise < 0 || d < promise {
			promise = d
		}
	}
	if promise < 0 {
		// No other member to confirm it: no failsafe. A member that
		// registered after the key was written is not listed, and it
		// could not tell such a leader, cut off, from a dead one: it
		// would wait for it forever (DecideRelease). Unlike Patroni, a
		// one-member cluster fences in an etcd outage.
		return FailsafeDecision{Why: "the failsafe key lists no other member to confirm this leader"}
	}
	until := sent.Add(promise - p.RetryTimeout)
	if !until.After(sent) {
		return FailsafeDecision{Why: fmt.Sprintf("the shortest promise %v is not longer than retry_timeout %v", promise, p.RetryTimeout)}
	}
	who := "no other member"
	if len(names) > 0 {
		who = strings.Join(names, ", ")
	}
	return FailsafeDecision{Until: until, Why: fmt.Sprintf("confirmed by %s: none can reach etcd, all see this member lead and will not campaign for %v", who, promise)}
}

// FailsafeState is what a member that is not the leader knows when a
// failsafe request arrives.
type FailsafeState struct {
	Now       time.Time
	Self      string
	View      View // as last read from etcd (fresh or not)
	EtcdOK    bool // this member reaches etcd: its last request was answered, or one was within loop_wait + retry_timeout
	Leading   bool // it holds or seeks the election
	Writable  bool // its postgres runs, or was started, read-write
	LastSeq   uint64
	LastRev   int64 // the token LastSeq belongs to
	PromiseMS int64 // what it promises: its lease TTL
}

// AnswerFailsafe is a member's answer to req: it accepts only when it has
// no reason to think anyone but req.Leader may be writable or may become
// so within the promise.
func AnswerFailsafe(s FailsafeState, req FailsafeRequest) FailsafeAnswer {
	ans := FailsafeAnswer{Member: s.Self, Leader: req.Leader, Rev: req.Rev, Seq: req.Seq}
	refuse := func(format string, args ...any) FailsafeAnswer {
		ans.Reason = fmt.Sprintf(format, args...)
		return ans
	}
	fi, L := s.View.FailsafeKey, s.View.Leader
	switch {
	case s.Leading:
		return refuse("this member holds or seeks the lease")
	case s.Writable:
		return refuse("this member's postgres is writable")
	case s.EtcdOK:
		return refuse("this member reaches etcd: the leader must renew its lease there")
	case fi == nil:
		return refuse("this member knows no failsafe key (it has not read the cluster from etcd since it started)")
	case fi.Leader != req.Leader || fi.Rev != req.Rev:
		return refuse("the failsafe key names %s (token %d), not %s (token %d)", fi.Leader, fi.Rev, req.Leader, req.Rev)
	case L == nil || L.Member != req.Leader || L.Rev != req.Rev:
		return refuse("this member last saw another leader key")
	case req.Rev == s.LastRev && req.Seq <= s.LastSeq:
		return refuse("request %d is not newer than %d (replayed?)", req.Seq, s.LastSeq)
	}
	ans.Accepted, ans.PromiseMS = true, s.PromiseMS
	return ans
}

// failsafeMembers is what the failsafe key of a leader should list: every
// member with a key in etcd, and the leader.
func failsafeMembers(self, selfREST string, v View) map[string]string {
	m := map[string]string{self: selfREST}
	for n, mi := range v.Members {
		if n != self {
			m[n] = mi.REST
		}
	}
	return m
}

// sameMembers reports whether the failsafe key lists exactly want.
func (f *FailsafeInfo) sameMembers(want map[string]string) bool {
	return f != nil && maps.Equal(f.Members, want)
}

// A member the failsafe key does not list never campaigns on its own word:
// the key's leader, in failsafe, would not ask it. When that leader is gone
// for good before it listed the member, the member may still campaign once
// it can tell that the leader cannot be in failsafe (docs/failover.md, "A
// member the failsafe key does not list"):
//
//   - its view from etcd is fresh and holds no leader key: the key's
//     leader lost its lease, and its lease-based fence deadline passed
//     before etcd expired the lease;
//   - every other member the key lists answers, signed with the key, that
//     it has seen that leader key gone (from then on it refuses the
//     leader's failsafe requests: the key, fenced by its creation revision,
//     never comes back), that no promise it gave that leader still runs,
//     and that its agent has run for a lease TTL at least (a promise given
//     before a restart, forgotten, has expired). The leader's failsafe
//     deadline is never later than the end of a promise of each of them,
//     so it has passed: the leader fenced itself.
//   - a key that lists no member but its leader needs no answer: a leader
//     with no other member to confirm it gets no failsafe (DecideFailsafe).

// ReleaseQuery asks a member the failsafe key lists whether it is done with
// the key's leader (POST /failsafe/release, signed as FailsafeRequest).
type ReleaseQuery struct {
	Cluster string `json:"cluster"`
	Leader  string `json:"leader"` // the failsafe key's leader
	Rev     int64  `json:"rev"`    // and its token
	From    string `json:"from"`   // the member that asks
}

// ReleaseAnswer is a member's answer to a ReleaseQuery. Released means: "I
// have seen Leader's key with token Rev gone, I hold no promise to it and I
// will never give one".
type ReleaseAnswer struct {
	Member   string `json:"member"`
	Leader   string `json:"leader"`
	Rev      int64  `json:"rev"`
	Released bool   `json:"released"`
	Reason   string `json:"reason,omitempty"`
}

// ReleaseState is what a member knows when a ReleaseQuery arrives.
type ReleaseState struct {
	Now        time.Time
	Self       string
	Started    time.Time // when this agent started
	TTL        time.Duration
	View       View // as acted on: the view failsafe requests are answered from
	PromLeader string
	PromRev    int64
	PromUntil  time.Time
}

// AnswerRelease is a member's answer to q.
func AnswerRelease(s ReleaseState, q ReleaseQuery) ReleaseAnswer {
	ans := ReleaseAnswer{Member: s.Self, Leader: q.Leader, Rev: q.Rev}
	no := func(format string, args ...any) ReleaseAnswer {
		ans.Reason = fmt.Sprintf(format, args...)
		return ans
	}
	L := s.View.Leader
	switch {
	case s.Now.Sub(s.Started) < s.TTL:
		return no("this agent started %v ago, less than a lease TTL (%v): it may have forgotten a promise", s.Now.Sub(s.Started).Round(time.Millisecond), s.TTL)
	case L != nil && L.Member == q.Leader && L.Rev == q.Rev:
		return no("this member still sees %s (token %d) hold the leader key", q.Leader, q.Rev)
	case s.PromLeader == q.Leader && s.PromRev == q.Rev && s.Now.Before(s.PromUntil):
		return no("this member promised %s (token %d) not to campaign until %s", q.Leader, q.Rev, s.PromUntil.Format("15:04:05.000"))
	}
	ans.Released = true
	return ans
}

// PeerRelease is what an unlisted member got from one listed member.
type PeerRelease struct {
	Answer ReleaseAnswer
	Err    string
}

// ReleaseTargets are the members an unlisted member self must hear from
// before it campaigns against fi: every member fi lists but its leader.
func ReleaseTargets(self string, fi FailsafeInfo) []string {
	var out []string
	for n := range fi.Members {
		if n != fi.Leader && n != self {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// DecideRelease says whether member self, which fi does not list and whose
// fresh view holds no leader key, may campaign: every member fi lists but
// its leader answered Released for fi's leader and token.
func DecideRelease(self string, fi FailsafeInfo, answers map[string]PeerRelease) (bool, string) {
	names := ReleaseTargets(self, fi)
	for _, n := range names {
		pa, ok := answers[n]
		switch {
		case !ok:
			return false, n + " was not asked"
		case pa.Err != "":
			return false, fmt.Sprintf("%s did not answer: %s", n, pa.Err)
		case pa.Answer.Member != n || pa.Answer.Leader != fi.Leader || pa.Answer.Rev != fi.Rev:
			return false, fmt.Sprintf("%s answered another question (member %q, leader %q, token %d)", n, pa.Answer.Member, pa.Answer.Leader, pa.Answer.Rev)
		case !pa.Answer.Released:
			return false, fmt.Sprintf("%s is not done with %s: %s", n, fi.Leader, pa.Answer.Reason)
		}
	}
	if len(names) == 0 {
		return true, fmt.Sprintf("the failsafe key of %s (token %d) lists no other member, and a leader no other member confirms gets no failsafe: "+
			"its lease is gone, so it fenced itself", fi.Leader, fi.Rev)
	}
	return true, fmt.Sprintf("the failsafe key of %s (token %d) does not list this member, but its lease is gone and every member it lists (%s) "+
		"has seen it gone and holds no promise to it: it fenced itself", fi.Leader, fi.Rev, strings.Join(names, ", "))
}

// failsafeCannotHold says why no failsafe round of leader self could be
// confirmed with these members ("" when one could): no other member, or one
// without a REST endpoint to ask.
func failsafeCannotHold(self string, members map[string]string) string {
	var norest []string
	for n, rest := range members {
		if n != self && rest == "" {
			norest = append(norest, n)
		}
	}
	sort.Strings(norest)
	switch {
	case len(members) <= 1:
		return "no other member could confirm this leader in an etcd outage"
	case len(norest) > 0:
		return fmt.Sprintf("%s %s no REST endpoint (databases.NAME.rest) to confirm this leader in an etcd outage",
			strings.Join(norest, ", "), map[bool]string{true: "has", false: "have"}[len(norest) == 1])
	}
	return ""
}
