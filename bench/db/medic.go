package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// cluster is a two-member PostgreSQL cluster kept by an HA system under test.
type cluster interface {
	label() string
	start(member string) error // start (or restart) the member's agent
	crash(member string)       // lose the host: agent and postgres SIGKILLed
	cut(member string, on bool)
	stall(member string, d time.Duration) // SIGSTOP the agent for d
	switchover() error
	primary() string // the member whose agent says it serves as primary ("" none)
	// healthy: a primary serves and the other member streams from it (as sync standby in sync mode).
	healthy() bool
	pg(member string) string // direct postgres address
	dsn() string             // what the application uses
	stop()
}

const benchToken = "bench-operator-token"

// medicCluster runs two `medic run` agents at medic's default timings.
type medicCluster struct {
	bin, dir, mode string
	etcdAddr       string
	nodes          map[string]*medicNode
}

type medicNode struct {
	dir, api, pgAddr, prim string
	link                   *link
	p                      *proc
}

func newMedic(bin, dir, etcdAddr, mode string) (*medicCluster, error) {
	c := &medicCluster{bin: bin, dir: dir, mode: mode, etcdAddr: etcdAddr, nodes: map[string]*medicNode{}}
	sum := sha256.Sum256([]byte(benchToken))
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte(fmt.Sprintf("tokens:\n  - {name: bench, role: operator, sha256: %s}\n", hex.EncodeToString(sum[:]))), 0o644); err != nil {
		return nil, err
	}
	for _, name := range []string{"a", "b"} {
		n := &medicNode{dir: filepath.Join(dir, name), api: addr(), pgAddr: addr(), prim: addr(), link: newLink(etcdAddr)}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, err
		}
		cfg := fmt.Sprintf(`name: %s
data_dir: ./medic
etcd: {endpoints: ["%s"], prefix: /medic/bench}
api: {listen: %s, tokens_file: %s}
databases:
  pg:
    postgres: {data: ./pg, listen: %s, user: postgres}
    replication: {mode: %s}
    proxy: {primary: %s, replicas: %s}
`, name, n.link.Addr, n.api, tokens, n.pgAddr, mode, n.prim, addr())
		if err := os.WriteFile(filepath.Join(n.dir, "medic.yaml"), []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		c.nodes[name] = n
	}
	return c, nil
}

func (c *medicCluster) label() string {
	return "medic (defaults: lease_ttl 4s, loop_wait 0.5s, retry_timeout 0.5s)"
}

func (c *medicCluster) start(m string) error {
	n := c.nodes[m]
	p, err := startProc(filepath.Join(n.dir, "medic.log"), nil, n.dir, c.bin, "run", "-c", "medic.yaml")
	n.p = p
	return err
}

func (c *medicCluster) crash(m string) {
	n := c.nodes[m]
	syscall.Kill(-n.p.pid(), syscall.SIGKILL)
	killPostmaster(filepath.Join(n.dir, "pg"))
	<-n.p.done
}

func (c *medicCluster) cut(m string, on bool) { c.nodes[m].link.setCut(on) }

func (c *medicCluster) stall(m string, d time.Duration) {
	pid := c.nodes[m].p.pid()
	syscall.Kill(pid, syscall.SIGSTOP)
	time.Sleep(d)
	syscall.Kill(pid, syscall.SIGCONT)
}

func (c *medicCluster) switchover() error {
	p := c.primary()
	if p == "" {
		return fmt.Errorf("no primary")
	}
	req, _ := http.NewRequest("POST", "http://"+c.nodes[p].api+"/v1/db/switchover", bytes.NewReader([]byte(`{}`)))
	req.Header.Set("Authorization", "Bearer "+benchToken)
	resp, err := (&http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("switchover: HTTP %d", resp.StatusCode)
	}
	return nil
}

type medicStatus struct {
	Databases []struct {
		Leader  *struct{ Member, State string }
		Sync    *struct{ Standby string }
		Members []struct {
			Name, Upstream string
			Role           string
			Streaming      bool
		}
	}
}

func (c *medicCluster) status(m string) (medicStatus, bool) {
	var st medicStatus
	n := c.nodes[m]
	if n.p == nil || !n.p.running() {
		return st, false
	}
	req, _ := http.NewRequest("GET", "http://"+n.api+"/v1/db/status", nil)
	req.Header.Set("Authorization", "Bearer "+benchToken)
	resp, err := (&http.Client{Timeout: time.Second}).Do(req)
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st) == nil && len(st.Databases) == 1
}

func (c *medicCluster) primary() string {
	for m := range c.nodes {
		if st, ok := c.status(m); ok {
			if l := st.Databases[0].Leader; l != nil && l.State == "primary" && l.Member == m {
				return m
			}
		}
	}
	return ""
}

func (c *medicCluster) healthy() bool {
	p := c.primary()
	if p == "" {
		return false
	}
	st, _ := c.status(p)
	d := st.Databases[0]
	for _, mi := range d.Members {
		if mi.Name != p && mi.Role == "replica" && mi.Streaming && mi.Upstream == p {
			return c.mode != "sync" || (d.Sync != nil && d.Sync.Standby == mi.Name)
		}
	}
	return false
}

func (c *medicCluster) pg(m string) string { return c.nodes[m].pgAddr }

func (c *medicCluster) dsn() string { return dsnOf(c.nodes["a"].prim, c.nodes["b"].prim) }

func (c *medicCluster) stop() {
	for _, n := range c.nodes {
		n.p.stop(syscall.SIGTERM, 30*time.Second)
		killPostmaster(filepath.Join(n.dir, "pg"))
		n.link.close()
	}
}
