package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// The first config (endpoints quoted: see the note in the report on
// flow sequences inside flow mappings).
const dbConfig = `name: node-a
data_dir: ./.medic-a
etcd: {endpoints: ["127.0.0.1:2379"], prefix: /medic/demo/}
api: {listen: 127.0.0.1:7071}
databases:
  pg:
    postgres: {bin_dir: /usr/lib/postgresql/15/bin, data: ./.medic-a/pg, listen: 127.0.0.1:5433,
               user: postgres}
    replication: {mode: sync}
    lease_ttl: 3s
    proxy: {primary: 127.0.0.1:6432, replicas: 127.0.0.1:6433}
`

func TestDatabaseConfigDefaults(t *testing.T) {
	c, err := config.Parse("medic.yaml", []byte(dbConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "node-a" || c.Etcd == nil || c.Etcd.Prefix != "/medic/demo" || c.Etcd.Endpoints[0] != "127.0.0.1:2379" {
		t.Fatalf("etcd section %+v, name %q", c.Etcd, c.Name)
	}
	d := c.Databases["pg"]
	if d == nil {
		t.Fatal("no database pg")
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"mode", d.Replication.Mode, "sync"},
		{"lease_ttl (as written)", d.LeaseTTL.D(), 3 * time.Second},
		{"loop_wait", d.LoopWait.D(), config.DefaultLoopWait},
		{"retry_timeout", d.RetryTimeout.D(), config.DefaultRetryTimeout},
		{"primary_start_timeout", d.PrimaryStartTimeout.D(), config.DefaultPrimaryStartTimeout},
		{"maximum_lag_on_failover", d.MaximumLagOnFailover, config.DefaultMaximumLagOnFailover},
		{"connect_address", d.Postgres.ConnectAddress, "127.0.0.1:5433"},
		{"superuser", d.Postgres.Superuser, "postgres"},
		{"user", d.Postgres.User, "postgres"},
		{"proxy.connect_timeout", d.Proxy.ConnectTimeout.D(), time.Second},
		{"etcd.dial_timeout", c.Etcd.DialTimeout.D(), 2 * time.Second},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.what, ck.got, ck.want)
		}
	}
	// Unset, the timings are the documented defaults, which obey Patroni's rule.
	var z config.Database
	z.SetDefaults()
	if z.LeaseTTL.D() != config.DefaultLeaseTTL || z.LoopWait.D()+2*z.RetryTimeout.D() > z.LeaseTTL.D() {
		t.Fatalf("defaults %v/%v/%v break loop_wait + 2 × retry_timeout ≤ lease_ttl", z.LeaseTTL, z.LoopWait, z.RetryTimeout)
	}
}

func TestDatabaseConfigErrors(t *testing.T) {
	cases := []struct {
		name, from, to, want string
	}{
		{"timings together", "lease_ttl: 3s", "lease_ttl: 3s\n    loop_wait: 2500ms",
			"medic.yaml:10:5: databases.pg.lease_ttl: loop_wait + 2 × retry_timeout = 3.5s exceeds lease_ttl 3s"},
		{"whole seconds", "lease_ttl: 3s", "lease_ttl: 2500ms", "databases.pg.lease_ttl: 2.5s is not whole seconds"},
		{"too short for etcd", "lease_ttl: 3s", "lease_ttl: 1s", "databases.pg.lease_ttl: 1s is below 2s"},
		{"mode", "{mode: sync}", "{mode: semi}", "databases.pg.replication.mode: must be async or sync"},
		{"no etcd", `etcd: {endpoints: ["127.0.0.1:2379"], prefix: /medic/demo/}`, "", "databases.pg.postgres: a database needs the top-level etcd section"},
		{"no data", "data: ./.medic-a/pg, ", "", "databases.pg.postgres.data: required"},
		{"bad listen", "listen: 127.0.0.1:5433", "listen: somewhere", "databases.pg.postgres.listen: want host:port"},
		{"bad proxy", "primary: 127.0.0.1:6432", "primary: localhost", "databases.pg.proxy.primary: want host:port"},
		{"bad endpoint", `["127.0.0.1:2379"]`, `["etcd"]`, "etcd.endpoints[0]: want host:port"},
		{"bad member name", "name: node-a", "name: node a", `databases.pg.postgres: the member name "node a" (top-level name) must match`},
		{"unknown key", "lease_ttl: 3s", "lease_tl: 3s", `databases.pg.lease_tl: unknown field`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(dbConfig, tc.from, tc.to, 1)
			if src == dbConfig {
				t.Fatalf("the case changes nothing: %q not in the config", tc.from)
			}
			_, err := config.Parse("medic.yaml", []byte(src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}
