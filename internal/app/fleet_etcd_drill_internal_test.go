package app

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/fleet"
)

// TestPickMember: the etcd-member-loss drill stops a declared member whose
// loss keeps the quorum, a follower first; it refuses with any member
// unhealthy, below the quorum, or with no member declared.
func TestPickMember(t *testing.T) {
	m := func(name string, healthy, leader bool) etcd.MemberHealth {
		return etcd.MemberHealth{Name: name, Endpoint: "http://" + name + ":2379", Healthy: healthy, Leader: leader, Err: map[bool]string{false: "down"}[healthy]}
	}
	h := func(host, member string, st fleet.State) fleet.Member {
		return fleet.Member{Info: fleet.Info{Host: host, EtcdMember: member}, State: st}
	}
	three := []etcd.MemberHealth{m("e1", true, true), m("e2", true, false), m("e3", true, false)}
	hosts := []fleet.Member{h("h1", "e1", fleet.Up), h("h2", "e2", fleet.Up), h("h3", "e3", fleet.Up)}
	for _, c := range []struct {
		name    string
		members []etcd.MemberHealth
		hosts   []fleet.Member
		ask     string // --member
		wantErr string
		member  string // picked
		host    string
	}{
		{"a follower first", three, hosts, "", "", "e2", "h2"},
		{"the leader when named", three, hosts, "e1", "", "e1", "h1"},
		{"only the leader declared", three, []fleet.Member{h("h1", "e1", fleet.Up), h("h2", "", fleet.Up)}, "", "", "e1", "h1"},
		{"five members", append(slices.Clone(three), m("e4", true, false), m("e5", true, false)), hosts, "", "", "e2", "h2"},
		{"one unhealthy", []etcd.MemberHealth{m("e1", true, true), m("e2", false, false), m("e3", true, false)}, hosts, "", "etcd member e2 is unhealthy", "", ""},
		{"two of two", []etcd.MemberHealth{m("e1", true, true), m("e2", true, false)}, hosts, "", "leaves 1, below the quorum of 2", "", ""},
		{"one of one", []etcd.MemberHealth{m("e1", true, true)}, hosts, "", "leaves 0, below the quorum of 1", "", ""},
		{"none declared", three, []fleet.Member{h("h1", "", fleet.Up)}, "", "no up host of the fleet declares one of the etcd members (e1, e2, e3)", "", ""},
		{"declared by a suspect host", three, []fleet.Member{h("h1", "", fleet.Up), h("h2", "e2", fleet.Suspect)}, "e2", "no up host of the fleet declares etcd member e2", "", ""},
		{"unknown member", three, hosts, "e9", "etcd has no member e9", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := pickMember(c.members, c.hosts, c.ask)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("pick: %+v, %v; want an error containing %q", p, err, c.wantErr)
				}
				return
			}
			if err != nil || p.member != c.member || p.host != c.host {
				t.Fatalf("picked %+v (%v), want %s on %s", p, err, c.member, c.host)
			}
		})
	}
}

// TestRunMemberCmd: the stop and start commands run without a shell,
// their failure carries their output, and a command past its timeout is
// killed with its process group.
func TestRunMemberCmd(t *testing.T) {
	ctx := context.Background()
	if err := runMemberCmd(ctx, []string{"true"}, time.Second); err != nil {
		t.Fatal(err)
	}
	err := runMemberCmd(ctx, []string{"sh", "-c", "echo no such unit >&2; exit 5"}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "exit status 5") || !strings.Contains(err.Error(), "no such unit") {
		t.Fatalf("failing command: %v", err)
	}
	start := time.Now()
	err = runMemberCmd(ctx, []string{"sh", "-c", "sleep 30 & sleep 30"}, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not done within 300ms (killed)") {
		t.Fatalf("hung command: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a hung command held the caller %v", d)
	}
}
