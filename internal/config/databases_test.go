package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
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
		{"proxy.handover_drain", d.Proxy.HandoverDrain.D(), 5 * time.Minute},
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
		{"rest on every address, postgres too", "lease_ttl: 3s", "lease_ttl: 3s\n    rest: {listen: 0.0.0.0:8008}",
			"databases.pg.rest.listen: 0.0.0.0:8008 is published for the other members' agents"},
		{"rest connect_address on every address", "lease_ttl: 3s", "lease_ttl: 3s\n    rest: {listen: 127.0.0.1:8008, connect_address: '[::]:8008'}",
			"databases.pg.rest.connect_address: [::]:8008 is published"},
		{"bad rest connect_address", "lease_ttl: 3s", "lease_ttl: 3s\n    rest: {listen: 127.0.0.1:8008, connect_address: nowhere}",
			"databases.pg.rest.connect_address: want host:port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(dbConfig, tc.from, tc.to, 1)
			if strings.HasPrefix(tc.name, "rest on every address") {
				src = strings.Replace(src, "listen: 127.0.0.1:5433", "listen: 0.0.0.0:5433", 1)
			}
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

// withEtcd is dbConfig with its etcd section replaced by a block one.
func withEtcd(t *testing.T, section string) string {
	t.Helper()
	const line = `etcd: {endpoints: ["127.0.0.1:2379"], prefix: /medic/demo/}` + "\n"
	if !strings.Contains(dbConfig, line) {
		t.Fatal("dbConfig has no flow etcd line to replace")
	}
	return strings.Replace(dbConfig, line, section, 1)
}

// etcd over TLS: files relative to the config file, https:// endpoints with
// or without a tls section.
func TestEtcdTLSConfig(t *testing.T) {
	pki := etcdtest.NewPKI(t)
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{pki.CA: "ca.pem", pki.ClientCert: "client.pem", pki.ClientKey: "client-key.pem"} {
		if err := os.WriteFile(filepath.Join(certs, to), mustReadFile(t, from), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "medic.yaml")
	src := withEtcd(t, `etcd:
  endpoints: [https://10.0.0.1:2379, 10.0.0.2:2379]
  tls:
    ca: certs/ca.pem
    cert: certs/client.pem
    key: ./certs/client-key.pem
    server_name: etcd.internal
`)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tl := c.Etcd.TLS
	if tl == nil || tl.ServerName != "etcd.internal" || tl.CA != "certs/ca.pem" {
		t.Fatalf("etcd.tls = %+v", tl)
	}
	ca, cert, key := tl.Files(c.Path)
	if ca != filepath.Join(certs, "ca.pem") || cert != filepath.Join(certs, "client.pem") || key != filepath.Join(certs, "client-key.pem") {
		t.Fatalf("Files(%s) = %s, %s, %s: want them in %s", c.Path, ca, cert, key, certs)
	}
	if ca, _, _ := tl.Files(""); ca != "certs/ca.pem" {
		t.Fatalf("Files(\"\") = %s, want the path as written", ca)
	}

	// https:// alone verifies against the system roots; tls may be empty.
	for _, section := range []string{
		"etcd: {endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379]}\n",
		"etcd: {endpoints: [10.0.0.1:2379], tls: {}}\n",
	} {
		if _, err := config.Parse("medic.yaml", []byte(withEtcd(t, section))); err != nil {
			t.Errorf("%s: %v", strings.TrimSpace(section), err)
		}
	}
}

func TestEtcdTLSConfigErrors(t *testing.T) {
	pki, other := etcdtest.NewPKI(t), etcdtest.NewPKI(t)
	dir := t.TempDir()
	missing, notPEM := filepath.Join(dir, "missing.pem"), filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsWith := func(kv string) string {
		return "etcd:\n  endpoints: [127.0.0.1:2379]\n  tls: {" + kv + "}\n"
	}
	cases := []struct {
		name, section, want string
	}{
		{"missing CA", tlsWith("ca: " + missing),
			"medic.yaml:5:9: etcd.tls.ca: cannot read the CA bundle: open " + missing + ": no such file or directory"},
		{"CA not PEM", tlsWith("ca: " + notPEM), "etcd.tls.ca: " + notPEM + " holds no PEM certificate"},
		{"cert without key", tlsWith("cert: " + pki.ClientCert), "etcd.tls.key: required with tls.cert"},
		{"key without cert", tlsWith("key: " + pki.ClientKey), "etcd.tls.cert: required with tls.key"},
		{"missing cert", tlsWith("cert: " + missing + ", key: " + pki.ClientKey),
			"etcd.tls.cert: cannot read the client certificate: open " + missing},
		{"cert not PEM", tlsWith("cert: " + notPEM + ", key: " + pki.ClientKey), "etcd.tls.cert: " + notPEM + " holds no PEM certificate"},
		{"missing key", tlsWith("cert: " + pki.ClientCert + ", key: " + missing),
			"etcd.tls.key: cannot read the client key: open " + missing},
		{"key of another certificate", tlsWith("cert: " + pki.ClientCert + ", key: " + other.ClientKey),
			"etcd.tls.key: cannot use " + other.ClientKey + " as the key of " + pki.ClientCert + ": tls: private key does not match public key"},
		{"http with tls", "etcd: {endpoints: [https://127.0.0.1:2379, http://127.0.0.1:2380], tls: {}}\n",
			`etcd.endpoints[1]: "http://127.0.0.1:2380" is plaintext http:// but tls is set`},
		{"https mixed with plaintext", "etcd: {endpoints: [https://127.0.0.1:2379, 127.0.0.1:2380]}\n",
			"etcd.endpoints: mixes https:// and plaintext endpoints"},
		{"unknown scheme", "etcd: {endpoints: [unix://127.0.0.1:2379]}\n", `etcd.endpoints[0]: scheme "unix"`},
		{"no skipping verification", tlsWith("insecure_skip_verify: true"), "etcd.tls.insecure_skip_verify: unknown field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("medic.yaml", []byte(withEtcd(t, tc.section)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRESTAddress: the REST address published for the other members is
// connect_address, or listen with postgres.connect_address's host when
// listen is on every address.
func TestRESTAddress(t *testing.T) {
	for _, tc := range []struct{ rest, want string }{
		{"{listen: 10.0.0.5:8008}", "10.0.0.5:8008"},
		{"{listen: 0.0.0.0:8008}", "127.0.0.1:8008"},
		{"{listen: '[::]:8008'}", "127.0.0.1:8008"},
		{"{listen: 0.0.0.0:8008, connect_address: db1.example:8008}", "db1.example:8008"},
	} {
		c, err := config.Parse("medic.yaml", []byte(strings.Replace(dbConfig, "lease_ttl: 3s", "lease_ttl: 3s\n    rest: "+tc.rest, 1)))
		if err != nil {
			t.Fatalf("rest %s: %v", tc.rest, err)
		}
		if got := c.Databases["pg"].RESTAddress(); got != tc.want {
			t.Errorf("rest %s: published %q, want %q", tc.rest, got, tc.want)
		}
	}
}
