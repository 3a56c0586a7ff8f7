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
		name     string
		cs       []backup.Candidate
		want     string // member, "" for none
		whyHas   string
		noTLS    bool   // the primary has no backup.tls
		host     string // the TLS server the standby is reached through
		hostPort int
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
			whyHas: "b runs on host h2, not h1, and runs no pgBackRest TLS server"},
		{name: "other host, its TLS server, no TLS here", noTLS: true,
			cs:     []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Host = "h2"; c.Server = "10.0.0.2:8432" })},
			whyHas: "b runs on host h2, not h1, and this member has no backup.tls"},
		{name: "same host, its TLS server, no TLS here: its socket", noTLS: true,
			cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Server = "10.0.0.2:8432" })}, want: "b"},
		{name: "other host through its TLS server", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Host = "h2"; c.Server = "10.0.0.2:8432" })},
			want: "b", host: "10.0.0.2", hostPort: 8432},
		{name: "same host with a TLS server: through it", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Server = "127.0.0.3:8432" })},
			want: "b", host: "127.0.0.3", hostPort: 8432},
		{name: "bad TLS server address", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Host = "h2"; c.Server = "10.0.0.2" })},
			whyHas: "b publishes no usable pgBackRest TLS server address"},
		{name: "remote least behind wins over local", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.LagBytes = 500 }),
			rep("c", func(c *backup.Candidate) { c.Host = "h3"; c.Server = "10.0.0.3:9000"; c.LagBytes = 1 })}, want: "c", host: "10.0.0.3", hostPort: 9000},
		{name: "old agent without data", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Data = "" })},
			whyHas: "b does not publish its data directory"},
		{name: "bad port", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Postgres = "nowhere" })},
			whyHas: "b publishes no postgres port"},
		{name: "stopped member is no replica", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Replica = false })},
			whyHas: "no replica streams from a"},
		{name: "one good among bad", cs: []backup.Candidate{primary, rep("b", func(c *backup.Candidate) { c.Host = "h2" }), rep("c", nil)}, want: "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb, why, ok := backup.ChooseStandby(backup.Self{Member: "a", Host: "h1", TLS: !tc.noTLS}, tc.cs)
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
			if sb.Host != tc.host || sb.HostPort != tc.hostPort {
				t.Fatalf("standby %+v: want it reached at %q:%d", sb, tc.host, tc.hostPort)
			}
		})
	}
}
