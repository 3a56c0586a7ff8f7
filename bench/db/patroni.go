package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// patroniTimings are the DCS timings (whole seconds, as Patroni takes them)
// and the HAProxy health-check settings in front of it.
type patroniTimings struct {
	TTL, LoopWait, RetryTimeout int
	Inter                       string // haproxy check interval
	Fall, Rise                  int
}

// patroniDefaults: Patroni's own defaults and the haproxy.cfg of Patroni's documentation.
var patroniDefaults = patroniTimings{TTL: 30, LoopWait: 10, RetryTimeout: 10, Inter: "3s", Fall: 3, Rise: 2}

// patroniTight: the smallest timings Patroni 3.0.2 accepts (integers, loop_wait +
// 2 × retry_timeout ≤ ttl) and an HAProxy that marks a server at the first check.
var patroniTight = patroniTimings{TTL: 5, LoopWait: 1, RetryTimeout: 2, Inter: "500ms", Fall: 1, Rise: 1}

// patroniCluster runs two Patroni 3.0.2 members (Debian's package) behind HAProxy.
type patroniCluster struct {
	dir, mode string
	t         patroniTimings
	cred      *syscall.Credential
	nodes     map[string]*patroniNode
	haproxy   *proc
	front     string
}

type patroniNode struct {
	dir, rest, pgAddr string
	link              *link
	p                 *proc
}

func newPatroni(dir, etcdAddr, mode string, t patroniTimings) (*patroniCluster, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	c := &patroniCluster{dir: dir, mode: mode, t: t, cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		nodes: map[string]*patroniNode{}, front: addr()}
	sync := mode == "sync"
	servers := ""
	for _, name := range []string{"a", "b"} {
		n := &patroniNode{dir: filepath.Join(dir, name), rest: addr(), pgAddr: addr(), link: newLink(etcdAddr)}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, err
		}
		os.Chown(n.dir, uid, gid)
		cfg := fmt.Sprintf(`scope: bench
name: %[1]s
restapi: {listen: %[2]s, connect_address: %[2]s}
etcd3: {hosts: ["%[3]s"], use_proxies: true}  # no discovery: all traffic through the link
bootstrap:
  dcs:
    ttl: %[4]d
    loop_wait: %[5]d
    retry_timeout: %[6]d
    maximum_lag_on_failover: 1048576
    synchronous_mode: %[7]v
    postgresql:
      use_pg_rewind: true
      parameters: {wal_log_hints: "on", wal_keep_size: 256MB}
  initdb: [{encoding: UTF8}, {locale: C}]
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: %[8]s
  connect_address: %[8]s
  data_dir: %[9]s/pg
  bin_dir: /usr/lib/postgresql/15/bin
  pgpass: %[9]s/pgpass
  authentication:
    superuser: {username: postgres}
    replication: {username: postgres}
    rewind: {username: postgres}
  parameters: {unix_socket_directories: %[9]s}
`, name, n.rest, n.link.Addr, t.TTL, t.LoopWait, t.RetryTimeout, sync, n.pgAddr, n.dir)
		path := filepath.Join(n.dir, "patroni.yml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		c.nodes[name] = n
		_, rport, _ := splitHostPort(n.rest)
		servers += fmt.Sprintf("    server %s %s maxconn 200 check port %s\n", name, n.pgAddr, rport)
	}
	hcfg := fmt.Sprintf(`global
    maxconn 400
defaults
    mode tcp
    retries 2
    timeout client 30m
    timeout connect 4s
    timeout server 30m
    timeout check 5s
listen primary
    bind %s
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter %s fall %d rise %d on-marked-down shutdown-sessions
%s`, c.front, t.Inter, t.Fall, t.Rise, servers)
	hpath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(hpath, []byte(hcfg), 0o644); err != nil {
		return nil, err
	}
	hp, err := startProc(filepath.Join(dir, "haproxy.log"), nil, dir, "haproxy", "-db", "-f", hpath)
	if err != nil {
		return nil, err
	}
	c.haproxy = hp
	return c, nil
}

func (c *patroniCluster) label() string {
	return fmt.Sprintf("Patroni 3.0.2 + HAProxy (ttl %ds, loop_wait %ds, retry_timeout %ds; check inter %s fall %d rise %d)",
		c.t.TTL, c.t.LoopWait, c.t.RetryTimeout, c.t.Inter, c.t.Fall, c.t.Rise)
}

func (c *patroniCluster) start(m string) error {
	n := c.nodes[m]
	p, err := startProc(filepath.Join(n.dir, "patroni.log"), c.cred, n.dir, "/usr/bin/patroni", filepath.Join(n.dir, "patroni.yml"))
	n.p = p
	return err
}

func (c *patroniCluster) crash(m string) {
	n := c.nodes[m]
	syscall.Kill(-n.p.pid(), syscall.SIGKILL)
	killPostmaster(filepath.Join(n.dir, "pg"))
	<-n.p.done
}

func (c *patroniCluster) cut(m string, on bool) { c.nodes[m].link.setCut(on) }

func (c *patroniCluster) stall(m string, d time.Duration) {
	pid := c.nodes[m].p.pid()
	syscall.Kill(pid, syscall.SIGSTOP)
	time.Sleep(d)
	syscall.Kill(pid, syscall.SIGCONT)
}

func (c *patroniCluster) code(m, path string) int {
	n := c.nodes[m]
	if n.p == nil || !n.p.running() {
		return 0
	}
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + n.rest + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (c *patroniCluster) primary() string {
	for m := range c.nodes {
		if c.code(m, "/primary") == 200 {
			return m
		}
	}
	return ""
}

func (c *patroniCluster) healthy() bool {
	p := c.primary()
	if p == "" {
		return false
	}
	o := other(p)
	if c.mode == "sync" {
		return c.code(o, "/sync") == 200
	}
	return c.code(o, "/replica") == 200
}

func (c *patroniCluster) switchover() error {
	p := c.primary()
	if p == "" {
		return fmt.Errorf("no primary")
	}
	body := fmt.Sprintf(`{"leader": %q, "candidate": %q}`, p, other(p))
	resp, err := (&http.Client{Timeout: 120 * time.Second}).Post("http://"+c.nodes[p].rest+"/switchover", "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("switchover: HTTP %d", resp.StatusCode)
	}
	return nil
}

func (c *patroniCluster) pg(m string) string { return c.nodes[m].pgAddr }
func (c *patroniCluster) dsn() string        { return dsnOf(c.front) }

func (c *patroniCluster) stop() {
	for _, n := range c.nodes {
		n.p.stop(syscall.SIGTERM, 30*time.Second)
		killPostmaster(filepath.Join(n.dir, "pg"))
		n.link.close()
	}
	c.haproxy.stop(syscall.SIGTERM, 5*time.Second)
}

func other(m string) string {
	if m == "a" {
		return "b"
	}
	return "a"
}
