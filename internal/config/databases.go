package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Etcd is the etcd cluster that holds the database leader leases. medic never
// runs an election of its own: the lease, the leader key and its revision
// (the fencing token) all live in etcd.
type Etcd struct {
	// Client endpoints, host:port, http://host:port or https://host:port. Required. With tls set,
	// host:port means TLS too and http:// is refused; without it, https:// endpoints are verified
	// against the system roots, and https:// and plaintext endpoints may not be mixed.
	Endpoints []string `yaml:"endpoints" json:"endpoints" jsonschema:"minItems=1"`
	// Key prefix under which every cluster keeps its keys (<prefix>/<database>/leader, …). Default /medic.
	Prefix string `yaml:"prefix" json:"prefix,omitempty"`
	// Time to connect to an endpoint before trying the next. Default 2s.
	DialTimeout Duration `yaml:"dial_timeout" json:"dial_timeout,omitempty"`
	// User name for etcd authentication; the password comes from $ETCD_PASSWORD. Default: none.
	Username string `yaml:"username" json:"username,omitempty"`
	// Connect to etcd over TLS: the CA that verifies etcd's certificate and the client certificate
	// etcd's --client-cert-auth requires. Default: plaintext, or TLS with the system roots for
	// https:// endpoints.
	TLS *EtcdTLS `yaml:"tls" json:"tls,omitempty"`
}

// EtcdTLS is how medic connects to etcd over TLS. The server's certificate is
// always verified: there is deliberately no insecure_skip_verify. Every file
// is PEM, relative to the config file, and read when the config is loaded
// (and again when medic connects).
type EtcdTLS struct {
	// CA bundle that verifies etcd's server certificate. Default: the system roots.
	CA string `yaml:"ca" json:"ca,omitempty"`
	// Client certificate, for etcd run with --client-cert-auth. Requires key. Default: none.
	Cert string `yaml:"cert" json:"cert,omitempty"`
	// Private key of cert. Requires cert.
	Key string `yaml:"key" json:"key,omitempty"`
	// Name etcd's certificate must carry, for every endpoint. Default: each endpoint's host.
	ServerName string `yaml:"server_name" json:"server_name,omitempty"`
}

// Files returns the ca, cert and key paths ("" when unset) made absolute
// against the directory of the config file at configPath, as the loader
// reads them; with configPath "" they stay as written (relative to the
// working directory).
func (t *EtcdTLS) Files(configPath string) (ca, cert, key string) {
	base := ""
	if configPath != "" {
		if abs, err := filepath.Abs(filepath.Dir(configPath)); err == nil {
			base = abs
		}
	}
	return resolve(base, t.CA), resolve(base, t.Cert), resolve(base, t.Key)
}

// Database is this host's member of one managed PostgreSQL cluster: the agent
// initializes or clones its postgres, runs it as the primary while it holds
// the cluster's lease in etcd and as a streaming replica otherwise, and fails
// over when the primary's lease is lost. The timings obey Patroni's rule
// loop_wait + 2 × retry_timeout ≤ lease_ttl, so that a primary that cannot
// renew demotes itself before its lease can expire.
type Database struct {
	// The local PostgreSQL server.
	Postgres Postgres `yaml:"postgres" json:"postgres"`
	// Streaming replication between the members.
	Replication Replication `yaml:"replication" json:"replication,omitempty"`
	// Time to live of the member's lease in etcd, whole seconds, at least 2s. The primary is
	// replaced this long after its agent stops renewing. Default 4s.
	LeaseTTL Duration `yaml:"lease_ttl" json:"lease_ttl,omitempty"`
	// Period of the member's loop: probe postgres, renew the lease, publish the member's status.
	// Default 500ms.
	LoopWait Duration `yaml:"loop_wait" json:"loop_wait,omitempty"`
	// Time limit of one etcd or postgres request, and the time a primary keeps for demoting
	// itself before its lease could expire. Default 500ms.
	RetryTimeout Duration `yaml:"retry_timeout" json:"retry_timeout,omitempty"`
	// A replica further behind the last known primary position than this does not take part in
	// an automatic failover (async mode). Default 1MiB.
	MaximumLagOnFailover ByteSize `yaml:"maximum_lag_on_failover" json:"maximum_lag_on_failover,omitempty"`
	// The primary's postgres that is not running and healthy for this long (crashed and not
	// restartable) gives up the lease, so that a replica takes over. Default 10s.
	PrimaryStartTimeout Duration `yaml:"primary_start_timeout" json:"primary_start_timeout,omitempty"`
	// Patroni-compatible health endpoints for load balancers (/primary, /replica, /health, …).
	REST *DatabaseREST `yaml:"rest" json:"rest,omitempty"`
	// TCP listeners that route clients to the current primary and to the replicas.
	Proxy *DatabaseProxy `yaml:"proxy" json:"proxy,omitempty"`
	// Drills may act on this database (medic drill db-kill-primary …) only when allowed.
	Drills Drills `yaml:"drills" json:"drills,omitempty"`
	// Never touched by automation: an automatic failover never promotes this member (only an
	// operator's switchover or failover naming it does), and no drill acts on it. Its own safety
	// (demoting without the lease, following the primary) is unchanged. Default false.
	Protected bool `yaml:"protected" json:"protected,omitempty"`
	// DCS failsafe, as Patroni's failsafe_mode: while etcd does not answer, the primary stays
	// writable as long as every other member's agent confirms over its REST endpoint (signed with
	// a key only readers of the cluster's etcd keys know) that it cannot reach etcd either, sees
	// this primary leading and will not campaign for a lease TTL; any member that cannot be
	// reached or refuses fences the primary as without it. Without rest on every member it
	// never holds (the primary fences as without it), and a leader with no other member gets none.
	// The leader's setting counts: set it the same on every member. Default true.
	Failsafe *bool `yaml:"failsafe" json:"failsafe,omitempty"`
	// Backups and WAL archiving to a pgBackRest repository. Default: none.
	Backup *Backup `yaml:"backup" json:"backup,omitempty"`
	// Recovery objectives (RTO, RPO) the scorecard holds the failover and restore drills to.
	Objectives *Objectives `yaml:"objectives" json:"objectives,omitempty"`
}

// Postgres is the local PostgreSQL server a member manages.
type Postgres struct {
	// Directory of the PostgreSQL binaries (postgres, initdb, pg_basebackup, pg_rewind, pg_controldata).
	// Default /usr/lib/postgresql/15/bin.
	BinDir string `yaml:"bin_dir" json:"bin_dir,omitempty"`
	// Data directory, relative to the config file. Created (mode 0700, owned by user) when missing. Required.
	Data string `yaml:"data" json:"data"`
	// Address postgres listens on, host:port. Required.
	Listen string `yaml:"listen" json:"listen"`
	// Address the other members and the proxies use to reach this postgres. Default: listen.
	ConnectAddress string `yaml:"connect_address" json:"connect_address,omitempty"`
	// Operating-system user postgres runs as (postgres refuses to run as root): when medic runs as
	// root it drops to this user. Default postgres when medic runs as root, else medic's own user.
	User string `yaml:"user" json:"user,omitempty"`
	// Database role medic connects as, for probes, promotion and replication. Its password, if
	// any, comes from $PGPASSWORD or ~/.pgpass. Default postgres.
	Superuser string `yaml:"superuser" json:"superuser,omitempty"`
	// Extra server settings (postgresql.conf names and values); medic's own settings win.
	Parameters map[string]string `yaml:"parameters" json:"parameters,omitempty"`
	// Lines of pg_hba.conf, written on every start. Default: trust on loopback for all users and
	// for replication, which suits one machine only.
	HBA []string `yaml:"hba" json:"hba,omitempty"`
}

// Replication is how the replicas follow the primary.
type Replication struct {
	// async: commits return before a replica has them (a failover may lose the last ones, bounded by
	// maximum_lag_on_failover). sync: one replica is the synchronous standby, commits wait for it,
	// and only it may be promoted: no acknowledged commit is lost. Without a healthy standby the
	// primary keeps accepting writes and no replica is eligible. Default async.
	Mode string `yaml:"mode" json:"mode,omitempty" jsonschema:"enum=async,enum=sync"`
}

// DatabaseREST is the member's Patroni-compatible HTTP endpoint.
type DatabaseREST struct {
	// Address, host:port. Required when rest is set.
	Listen string `yaml:"listen" json:"listen"`
	// Address the other members' agents reach these endpoints at (a leader in failsafe asks them
	// there), published with the member. Default: listen, with the host of postgres.connect_address
	// when listen's host is 0.0.0.0 or ::. It must not be 0.0.0.0 or ::.
	ConnectAddress string `yaml:"connect_address" json:"connect_address,omitempty"`
}

// RESTAddress is the REST address this member publishes for the other
// members ("" without rest): rest.connect_address, or listen with the host
// of postgres.connect_address when listen's host is 0.0.0.0 or ::.
func (d *Database) RESTAddress() string {
	if d.REST == nil {
		return ""
	}
	return PublishedAddress(d.REST.ConnectAddress, d.REST.Listen, d.Postgres.ConnectAddress)
}

// PublishedAddress is the address other hosts reach a member's listener
// at: connect when set, else listen, with the host of pgConnect (the
// member's postgres.connect_address) when listen's host is 0.0.0.0 or ::.
func PublishedAddress(connect, listen, pgConnect string) string {
	if connect != "" {
		return connect
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || !unspecifiedHost(host) {
		return listen
	}
	if ph, _, err := net.SplitHostPort(pgConnect); err == nil && !unspecifiedHost(ph) {
		return net.JoinHostPort(ph, port)
	}
	return listen
}

// unspecifiedHost reports whether host means "every address" to listen on:
// no address to connect to from another host.
func unspecifiedHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

// DatabaseProxy routes client connections from the leader key in etcd: at a
// failover, connections to the old primary are cut at once so that pools
// reconnect to the new one.
type DatabaseProxy struct {
	// Listener that leads to the current primary (read-write). Required when proxy is set.
	Primary string `yaml:"primary" json:"primary"`
	// Listener balanced over the running replicas (read-only); the primary serves when none is. Optional.
	Replicas string `yaml:"replicas" json:"replicas,omitempty"`
	// Time to connect to a member before the client is refused. Default 1s.
	ConnectTimeout Duration `yaml:"connect_timeout" json:"connect_timeout,omitempty"`
	// On a seamless upgrade (medic upgrade, SIGUSR2) the old medic stops accepting at once but
	// keeps piping the client connections it holds, busy or idle, until they end — for at most
	// this long, then cuts what is left. This host's own postgres keeps running across the
	// upgrade (the new medic adopts it), so connections to it are kept as well
	// (docs/failover.md, upgrading medic on a member's host). Default 5m.
	HandoverDrain Duration `yaml:"handover_drain" json:"handover_drain,omitempty"`
}

// Replication modes.
const (
	ReplicationAsync = "async"
	ReplicationSync  = "sync"
)

// The database defaults. lease_ttl 4s with loop_wait and retry_timeout of
// 500ms leaves a primary 3s without a successful renewal before it demotes
// itself: a 2s stall of the agent (SIGSTOP, a saturated CPU) does not fail
// over, and a lost primary is replaced within about 4s.
const (
	DefaultPostgresBinDir       = "/usr/lib/postgresql/15/bin"
	DefaultEtcdPrefix           = "/medic"
	DefaultLeaseTTL             = 4 * time.Second
	DefaultLoopWait             = 500 * time.Millisecond
	DefaultRetryTimeout         = 500 * time.Millisecond
	DefaultMaximumLagOnFailover = ByteSize(1 << 20)
	DefaultPrimaryStartTimeout  = 10 * time.Second
)

// SetDefaults fills the unset etcd settings.
func (e *Etcd) SetDefaults() {
	if e.Prefix == "" {
		e.Prefix = DefaultEtcdPrefix
	}
	e.Prefix = "/" + strings.Trim(e.Prefix, "/")
	if e.DialTimeout == 0 {
		e.DialTimeout = Duration(2 * time.Second)
	}
}

// Validate checks the etcd settings.
func (e *Etcd) Validate() []FieldIssue {
	var is []FieldIssue
	if len(e.Endpoints) == 0 {
		is = append(is, FieldIssue{"endpoints", "required: at least one etcd client address, such as 127.0.0.1:2379"})
	}
	secure := 0
	for i, ep := range e.Endpoints {
		field := fmt.Sprintf("endpoints[%d]", i)
		hp := ep
		scheme, rest, ok := strings.Cut(ep, "://")
		if ok {
			hp = rest
		}
		switch scheme = strings.ToLower(scheme); {
		case !ok:
		case scheme == "https":
			secure++
		case scheme != "http":
			is = append(is, FieldIssue{field, fmt.Sprintf("scheme %q: want host:port, http://host:port or https://host:port", scheme)})
			continue
		case e.TLS != nil:
			// The etcd client drops the credentials of an http:// endpoint.
			is = append(is, FieldIssue{field, fmt.Sprintf("%q is plaintext http:// but tls is set: write https://%s or %s", ep, hp, hp)})
		}
		if _, _, err := net.SplitHostPort(hp); err != nil {
			is = append(is, FieldIssue{field, fmt.Sprintf("want host:port, http://host:port or https://host:port, not %q", ep)})
		}
	}
	if e.TLS == nil && secure > 0 && secure < len(e.Endpoints) {
		// The etcd client takes the security of every endpoint from the first.
		is = append(is, FieldIssue{"endpoints", "mixes https:// and plaintext endpoints: use https:// for all of them, or set tls"})
	}
	if e.Prefix == "/" {
		is = append(is, FieldIssue{"prefix", "must name a key prefix such as /medic, not the root"})
	}
	if t := e.TLS; t != nil {
		switch {
		case t.Cert != "" && t.Key == "":
			is = append(is, FieldIssue{"tls.key", "required with tls.cert: the private key of the client certificate"})
		case t.Key != "" && t.Cert == "":
			is = append(is, FieldIssue{"tls.cert", "required with tls.key: the client certificate of that key"})
		}
	}
	return is
}

// ValidateIn reads the TLS files, relative to the config file, so that a
// wrong path or a key that does not match its certificate is reported when
// the config is loaded, at the field that names the file.
func (e *Etcd) ValidateIn(c *Config) []FieldIssue {
	t := e.TLS
	if t == nil {
		return nil
	}
	var is []FieldIssue
	bad := func(field, format string, args ...any) {
		is = append(is, FieldIssue{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	ca, cert, key := t.Files(c.Path)
	if ca != "" {
		if b, err := os.ReadFile(ca); err != nil {
			bad("tls.ca", "cannot read the CA bundle: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			bad("tls.ca", "%s holds no PEM certificate", ca)
		}
	}
	if cert == "" || key == "" {
		return is // Validate reports the one without the other
	}
	certPEM, err := os.ReadFile(cert)
	if err != nil {
		bad("tls.cert", "cannot read the client certificate: %v", err)
	} else if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		bad("tls.cert", "%s holds no PEM certificate", cert)
		certPEM = nil
	}
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		bad("tls.key", "cannot read the client key: %v", err)
	}
	if certPEM != nil && keyPEM != nil {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			bad("tls.key", "cannot use %s as the key of %s: %v", key, cert, err)
		}
	}
	return is
}

// SetDefaults fills the unset database settings.
func (d *Database) SetDefaults() {
	p := &d.Postgres
	if p.BinDir == "" {
		p.BinDir = DefaultPostgresBinDir
	}
	if p.ConnectAddress == "" {
		p.ConnectAddress = p.Listen
	}
	if p.Superuser == "" {
		p.Superuser = "postgres"
	}
	if d.Replication.Mode == "" {
		d.Replication.Mode = ReplicationAsync
	}
	dbDefaultDur(&d.LeaseTTL, DefaultLeaseTTL)
	dbDefaultDur(&d.LoopWait, DefaultLoopWait)
	dbDefaultDur(&d.RetryTimeout, DefaultRetryTimeout)
	dbDefaultDur(&d.PrimaryStartTimeout, DefaultPrimaryStartTimeout)
	if d.MaximumLagOnFailover == 0 {
		d.MaximumLagOnFailover = DefaultMaximumLagOnFailover
	}
	if d.Proxy != nil && d.Proxy.ConnectTimeout == 0 {
		d.Proxy.ConnectTimeout = Duration(time.Second)
	}
	if d.Proxy != nil && d.Proxy.HandoverDrain == 0 {
		d.Proxy.HandoverDrain = Duration(5 * time.Minute)
	}
}

// DefaultFailsafe is databases.NAME.failsafe when unset (docs/failover.md says why).
const DefaultFailsafe = true

// FailsafeOn reports whether the DCS failsafe is on.
func (d *Database) FailsafeOn() bool {
	if d.Failsafe == nil {
		return DefaultFailsafe
	}
	return *d.Failsafe
}

func dbDefaultDur(d *Duration, def time.Duration) {
	if *d == 0 {
		*d = Duration(def)
	}
}

var memberName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Validate checks the database on its own, the timings together.
func (d *Database) Validate() []FieldIssue {
	var is []FieldIssue
	bad := func(field, format string, args ...any) {
		is = append(is, FieldIssue{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	p := d.Postgres
	if p.Data == "" {
		bad("postgres.data", "required: the data directory of this member's postgres")
	}
	if msg := hostPort(p.Listen, true); msg != "" {
		bad("postgres.listen", "%s", msg)
	}
	if msg := hostPort(p.ConnectAddress, true); msg != "" && p.Listen != "" {
		bad("postgres.connect_address", "%s", msg)
	}
	if d.Replication.Mode != ReplicationAsync && d.Replication.Mode != ReplicationSync {
		bad("replication.mode", "must be async or sync, not %q", d.Replication.Mode)
	}
	ttl, loop, retry := d.LeaseTTL.D(), d.LoopWait.D(), d.RetryTimeout.D()
	switch {
	case ttl < 2*time.Second:
		bad("lease_ttl", "%v is below 2s, the shortest lease etcd grants", ttl)
	case ttl%time.Second != 0:
		bad("lease_ttl", "%v is not whole seconds: etcd leases are granted in seconds", ttl)
	}
	if loop < 10*time.Millisecond {
		bad("loop_wait", "%v is below 10ms", loop)
	}
	if retry < 10*time.Millisecond {
		bad("retry_timeout", "%v is below 10ms", retry)
	}
	if loop+2*retry > ttl {
		bad("lease_ttl", "loop_wait + 2 × retry_timeout = %v exceeds lease_ttl %v: a primary that cannot renew "+
			"must have time to demote itself before its lease expires (Patroni's rule)", loop+2*retry, ttl)
	}
	if d.MaximumLagOnFailover < 0 {
		bad("maximum_lag_on_failover", "must not be negative")
	}
	if d.PrimaryStartTimeout.D() < loop {
		bad("primary_start_timeout", "%v is shorter than loop_wait %v", d.PrimaryStartTimeout.D(), loop)
	}
	if d.REST != nil {
		if msg := hostPort(d.REST.Listen, true); msg != "" {
			bad("rest.listen", "%s", msg)
		} else if msg := hostPort(d.REST.ConnectAddress, false); msg != "" {
			bad("rest.connect_address", "%s", msg)
		} else if h, _, _ := net.SplitHostPort(d.RESTAddress()); unspecifiedHost(h) {
			field := "rest.connect_address"
			if d.REST.ConnectAddress == "" {
				field = "rest.listen"
			}
			bad(field, "%s is published for the other members' agents (a leader in failsafe asks them there), but %s is no "+
				"address another host can connect to: set rest.connect_address (or postgres.connect_address) to this host's address",
				d.RESTAddress(), h)
		}
	}
	if x := d.Proxy; x != nil {
		if msg := hostPort(x.Primary, true); msg != "" {
			bad("proxy.primary", "%s", msg)
		}
		if x.Replicas != "" {
			if msg := hostPort(x.Replicas, false); msg != "" {
				bad("proxy.replicas", "%s", msg)
			}
		}
		if x.HandoverDrain < 0 {
			bad("proxy.handover_drain", "%v is negative", x.HandoverDrain.D())
		}
	}
	return is
}

// ValidateIn checks what the database needs from the rest of the config.
func (d *Database) ValidateIn(c *Config) []FieldIssue {
	// Reported at postgres: the loader has no position for the section itself.
	var is []FieldIssue
	if c.Etcd == nil {
		is = append(is, FieldIssue{"postgres", "a database needs the top-level etcd section: the leader lease lives in etcd"})
	}
	if c.Name != "" && !memberName.MatchString(c.Name) {
		is = append(is, FieldIssue{"postgres", fmt.Sprintf("the member name %q (top-level name) must match %s", c.Name, memberName)})
	}
	return is
}

// hostPort returns "" when s is a valid host:port, else why not.
func hostPort(s string, required bool) string {
	if s == "" {
		if required {
			return "required: host:port, such as 127.0.0.1:5432"
		}
		return ""
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("want host:port, such as 127.0.0.1:5432, not %q", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("port %q is not a number from 0 to 65535", port)
	}
	if host == "" {
		return "the host is missing: write 127.0.0.1:PORT or 0.0.0.0:PORT"
	}
	return ""
}
