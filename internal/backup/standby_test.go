package backup_test

import (
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/backup"
)

func TestChooseStandby(t *testing.T) {
	rep := func(name string, f func(*backup.Candidate)) backup.Candidate {
		c := backup.Candidate{Member: name, Host: "h1", Data: "/srv/" + name + "/pg", Postgres: "127.0.0.1:5433", Replica: true,
			Streaming: true, Upstream: "a", Ready: true}
		if f != nil {
			f(&c)
		}
		return c
	}
	primary := backup.Candidate{Member: "a", Host: "h1", Data: "/srv/a/pg", Postgres: "127.0.0.1:5432", Ready: true}
	for _, tc := range []struct {
		name   string
		cs     []backup.Candidate
		want   string // member, "" for none
		whyHas string
	}{
		{name: "alone", cs: []backup.Candidate{primary}, whyHas: "no replica streams from a"},
		{name: "streaming replica", cs: []backup.Candidate{primary, rep("b", nil)}, want: "b"},
		{name: "least behind first", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.LagBytes = 900 }),
			rep("c", func(c *backup.Candidate) { c.LagBytes = 10 })}, want: "c"},
		{name: "tie by name", cs: []backup.Candidate{primary, rep("c", nil), rep("b", nil)}, want: "b"},
		{name: "not streaming", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Streaming = false })},
			whyHas: "b does not stream from a"},
		{name: "streams from another member", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Upstream = "c" })},
			whyHas: "b does not stream from a"},
		{name: "not ready", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Ready = false })}, whyHas: "b is not ready"},
		{name: "other host", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Host = "h2" })},
			whyHas: "b runs on host h2, not h1"},
		{name: "old agent without data", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Data = "" })},
			whyHas: "b does not publish its data directory"},
		{name: "bad port", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Postgres = "nowhere" })},
			whyHas: "b publishes no postgres port"},
		{name: "stopped member is no replica", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Replica = false })},
			whyHas: "no replica streams from a"},
		{name: "one good among bad", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Host = "h2" }), rep("c", nil)}, want: "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb, why, ok := backup.ChooseStandby("a", "h1", tc.cs)
			if tc.want == "" {
				if ok || !strings.Contains(why, tc.whyHas) {
					t.Fatalf("got %+v %q %v, want none because %q", sb, why, ok, tc.whyHas)
				}
				return
			}
			if !ok || sb.Member != tc.want || why != "" {
				t.Fatalf("got %+v %q %v, want %s", sb, why, ok, tc.want)
			}
			if sb.Path != "/srv/"+tc.want+"/pg" || sb.Port != 5433 || sb.Socket != "/srv/"+tc.want+"/pg.backup/sock" {
				t.Fatalf("standby %+v: want its data directory, port and socket", sb)
			}
		})
	}
}
