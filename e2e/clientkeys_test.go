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
