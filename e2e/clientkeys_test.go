package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/auth"
)

// classAdmitted returns the admitted count of each client class of web's proxy.
func (a *agent) classAdmitted() map[string]uint64 {
	out := map[string]uint64{}
	for _, p := range a.status().Proxies {
		if p.Service == "web" {
			for _, c := range p.Classes {
				out[c.Name] = c.Admitted
			}
		}
	}
	return out
}

// classOf sends one request with key and says which class admitted it.
func (a *agent) classOf(listen, key string) string {
	a.t.Helper()
	before := a.classAdmitted()
	if code, body := getWithHeader("http://"+listen+"/", "X-API-Key", key); code != 200 {
		a.t.Fatalf("request with key %q: %d %s", key, code, body)
	}
	after := a.classAdmitted()
	for name, n := range after {
		if n > before[name] {
			return name
		}
	}
	a.t.Fatalf("no class counted the request: before %v after %v", before, after)
	return ""
}

// A keys file changed on its own (the config untouched) is read again by
// `medic reload`: a new key names its class at once, a revoked key falls back
// to the default class, and a broken file is rejected with its file:line:col
// while the keys in force keep working. The keys are managed with
// `medic key add|list|revoke`.
func TestClientKeysReload(t *testing.T) {
	dir := t.TempDir()
	admin, err := runMedic("token", "add", "root", "--role", "admin", "-f", filepath.Join(dir, "tokens.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	keysPath := filepath.Join(dir, "client-keys.yaml")
	keys := fmt.Sprintf("keys:\n  - {name: web-frontend, class: human, sha256: %s}\n", auth.Digest("human-secret"))
	if err := os.WriteFile(keysPath, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgentIn(t, dir, classesConfig)
	a.token = strings.TrimSpace(admin)
	var listen string
	a.eventually(15*time.Second, "web ready behind its proxy", func() bool {
		for _, p := range a.status().Proxies {
			if p.Service == "web" {
				listen = p.Listen
				for _, is := range p.Instances {
					if is.InRotation {
						return true
					}
				}
			}
		}
		return false
	})
	if c := a.classOf(listen, "human-secret"); c != "human" {
		t.Fatalf("the human key: class %s", c)
	}
	if c := a.classOf(listen, "agent-secret"); c != "anonymous" {
		t.Fatalf("a key not yet in the file: class %s; want the default", c)
	}

	// Only the keys file changes: `medic key add` appends the new key's hash.
	out, err := runMedic("key", "add", "web", "agent", "--name", "support-bot", "-c", a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	agentKey := strings.TrimSpace(out)
	if !strings.HasPrefix(agentKey, auth.ClientKeyPrefix) {
		t.Fatalf("medic key add printed %q; want the key alone", out)
	}
	if data, _ := os.ReadFile(keysPath); !strings.Contains(string(data), auth.Digest(agentKey)) || strings.Contains(string(data), agentKey) {
		t.Fatalf("the keys file after medic key add (want the digest, never the key):\n%s", data)
	}
	if fi, _ := os.Stat(keysPath); fi.Mode().Perm() != 0o600 {
		t.Fatalf("keys file mode after medic key add: %v", fi.Mode())
	}
	if out, err := runMedic("key", "list", "web", "-c", a.cfg); err != nil || !strings.Contains(out, "support-bot") || !strings.Contains(out, "web-frontend") {
		t.Fatalf("medic key list: %v\n%s", err, out)
	}
	if c := a.classOf(listen, agentKey); c != "anonymous" {
		t.Fatalf("a new key before the reload: class %s; want the default", c)
	}
	if _, err := a.medic("reload"); err != nil {
		t.Fatal(err)
	}
	if c := a.classOf(listen, agentKey); c != "agent" {
		t.Fatalf("a key added to the file, after reload: class %s; want agent", c)
	}
	a.eventually(5*time.Second, "the keys reload audited", func() bool {
		out, _ := a.medic("audit", "list")
		return strings.Contains(out, "client keys of web reloaded: 1 added, 0 removed")
	})

	// A broken file: rejected with its position, the keys in force stay.
	good, _ := os.ReadFile(keysPath)
	bad := string(good) + "  - {name: broken, class: agent, sha256: nothex}\n"
	if err := os.WriteFile(keysPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	a.medic("reload")
	a.eventually(5*time.Second, "the broken keys file rejected with file:line:col", func() bool {
		for _, r := range a.auditRecords("config.reload") {
			reason := fmt.Sprint(r["reason"])
			if strings.Contains(reason, "client keys file rejected, the keys in force stay") && strings.Contains(reason, "client-keys.yaml:4:42: sha256") {
				return true
			}
		}
		return false
	})
	if c := a.classOf(listen, agentKey); c != "agent" {
		t.Fatalf("after a rejected keys file: class %s; want the keys in force kept", c)
	}
	if c := a.classOf(listen, "human-secret"); c != "human" {
		t.Fatalf("after a rejected keys file: human key in class %s", c)
	}

	// Revoked: served in the default class from the reload on.
	if err := os.WriteFile(keysPath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runMedic("key", "revoke", "web", "support-bot", "-c", a.cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := a.medic("reload"); err != nil {
		t.Fatal(err)
	}
	if c := a.classOf(listen, agentKey); c != "anonymous" {
		t.Fatalf("a key removed from the file, after reload: class %s; want the default", c)
	}
}

// signedConfig: web behind a proxy with signed requests and a breaker for
// the agent class; /dep/broken answers 502 (its dependency is a closed port).
const signedConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 2
    port: %[3]d
    env: {DEP_BROKEN_URL: "http://127.0.0.1:1"}
    stop: {grace: 1s}
    proxy:
      listen: "127.0.0.1:0"
      retries: {on_status: [503]}
      outlier: {consecutive_errors: 1000}
      clients:
        keys_file: client-keys.yaml
        default: anonymous
        signature: {window: 30s}
        classes:
          human:     {priority: 10, breaker: {failures: 1000}}
          agent:     {priority: 1, breaker: {failures: 3, window: 1m, open_for: 2s}}
          anonymous: {priority: 0}
`

// TestSignedRequestsAndClassBreaker, with the real binary: a client signs
// its requests instead of sending its key (a stale or forged signature gets
// 401), and the agent class's own breaker opens on the agent's failures and
// refuses the agent at once while the human class keeps reaching the
// service; the state is in medic status.
func TestSignedRequestsAndClassBreaker(t *testing.T) {
	dir := t.TempDir()
	admin, err := runMedic("token", "add", "root", "--role", "admin", "-f", filepath.Join(dir, "tokens.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	keys := fmt.Sprintf("keys:\n  - {name: web-frontend, class: human, sha256: %s}\n  - {name: support-bot, class: agent, sha256: %s}\n",
		auth.Digest("human-secret"), auth.Digest("agent-secret"))
	if err := os.WriteFile(filepath.Join(dir, "client-keys.yaml"), []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgentIn(t, dir, signedConfig)
	a.token = strings.TrimSpace(admin)
	var listen string
	a.eventually(15*time.Second, "web ready behind its proxy", func() bool {
		for _, p := range a.status().Proxies {
			if p.Service == "web" {
				listen = p.Listen
				for _, is := range p.Instances {
					if is.InRotation {
						return true
					}
				}
			}
		}
		return false
	})
	signed := func(name, key, path string, at time.Time) (int, string) {
		return getWithHeader("http://"+listen+path, "X-Medic-Signature", auth.Sign(name, key, "GET", path, at))
	}
	before := a.classAdmitted()
	at := time.Now()
	if code, body := signed("support-bot", "agent-secret", "/", at); code != 200 || a.classAdmitted()["agent"] != before["agent"]+1 {
		t.Fatalf("a signed agent request: %d %q", code, body)
	}
	// The same signed request again within the window: a replay, refused.
	if code, body := signed("support-bot", "agent-secret", "/", at); code != 401 || !strings.Contains(body, "already used") {
		t.Errorf("a replayed signed request: %d %q; want 401 already used", code, body)
	}
	for name, try := range map[string]func() (int, string){
		"stale":  func() (int, string) { return signed("support-bot", "agent-secret", "/", time.Now().Add(-time.Minute)) },
		"forged": func() (int, string) { return signed("web-frontend", "agent-secret", "/", time.Now()) },
		"garbage": func() (int, string) {
			return getWithHeader("http://"+listen+"/", "X-Medic-Signature", "web-frontend:now:please")
		},
		"oversize": func() (int, string) {
			return getWithHeader("http://"+listen+"/", "X-Medic-Signature", strings.Repeat("x", 4000))
		},
	} {
		if code, body := try(); code != 401 {
			t.Errorf("%s signature: %d %q; want 401", name, code, body)
		}
	}

	// The agent's failures open the agent class's breaker.
	for i := range 3 {
		if code, body := getWithHeader("http://"+listen+"/dep/broken", "X-API-Key", "agent-secret"); code != 502 {
			t.Fatalf("agent request %d to a broken endpoint: %d %q", i, code, body)
		}
	}
	if code, body := getWithHeader("http://"+listen+"/", "X-API-Key", "agent-secret"); code != 503 || !strings.Contains(body, "circuit open for client class agent") {
		t.Fatalf("agent after 3 failures: %d %q; want 503 from its class's breaker", code, body)
	}
	for i := range 5 {
		if code, body := getWithHeader("http://"+listen+"/dep/broken", "X-API-Key", "human-secret"); code != 502 {
			t.Fatalf("human request %d to the broken endpoint: %d %q; want the service's own 502", i, code, body)
		}
		if code, body := getWithHeader("http://"+listen+"/", "X-API-Key", "human-secret"); code != 200 {
			t.Fatalf("human request %d while the agent's breaker is open: %d %q", i, code, body)
		}
	}
	state := func(class string) (string, uint64) {
		for _, p := range a.status().Proxies {
			for _, c := range p.Classes {
				if p.Service == "web" && c.Name == class {
					return c.Breaker, c.BreakerOpened
				}
			}
		}
		return "", 0
	}
	if st, opened := state("agent"); st == "closed" || opened != 1 {
		t.Fatalf("agent breaker in status: %s, opened %d", st, opened)
	}
	if st, _ := state("human"); st != "closed" {
		t.Fatalf("human breaker in status: %s", st)
	}
	// After open_for, a good trial closes it.
	a.eventually(15*time.Second, "the agent breaker closed by a good trial", func() bool {
		code, _ := getWithHeader("http://"+listen+"/", "X-API-Key", "agent-secret")
		st, _ := state("agent")
		return code == 200 && st == "closed"
	})
	// Each transition is an audited event, in order, for runbooks and the dashboard.
	var seen []string
	a.eventually(10*time.Second, "the agent breaker's three transitions in the audit", func() bool {
		seen = seen[:0]
		for _, r := range a.auditRecords("proxy.class_breaker") {
			if r["target"] == "web/agent" {
				f, _ := r["fields"].(map[string]any)
				seen = append(seen, fmt.Sprint(f["from"], ">", f["to"]))
			}
		}
		return len(seen) >= 3
	})
	if got, want := strings.Join(seen, " "), "closed>open open>half-open half-open>closed"; got != want {
		t.Fatalf("audited transitions of web/agent: %s; want %s", got, want)
	}
}
