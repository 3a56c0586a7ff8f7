package e2e_test

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// A token removed with `medic token remove` and a reload is refused at once
// (it kept working until medic restarted), and the reload is audited.
func TestRemovedTokenFailsAfterReload(t *testing.T) {
	dir := t.TempDir()
	tokens := dir + "/tokens.yaml"
	admin, err := runMedic("token", "add", "root", "--role", "admin", "-f", tokens)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := runMedic("token", "add", "ci", "--role", "operator", "-f", tokens)
	if err != nil {
		t.Fatal(err)
	}
	a := startAgentIn(t, dir, `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: %[3]d
    stop: {grace: 1s}
`)
	a.token = strings.TrimSpace(admin)
	status := "http://" + a.addr + "/v1/status"
	if code, body := getWithToken(status, strings.TrimSpace(gone)); code != http.StatusOK {
		t.Fatalf("the ci token before removal: %d %s", code, body)
	}
	if _, err := runMedic("token", "remove", "ci", "-f", tokens); err != nil {
		t.Fatal(err)
	}
	if _, err := a.medic("reload"); err != nil {
		t.Fatal(err)
	}
	if code, _ := getWithToken(status, strings.TrimSpace(gone)); code != http.StatusUnauthorized {
		t.Fatalf("a removed token after reload: %d; want 401", code)
	}
	if code, _ := getWithToken(status, a.token); code != http.StatusOK {
		t.Fatalf("the remaining token after reload: %d", code)
	}
	a.eventually(5*time.Second, "the token removal audited", func() bool {
		out, _ := a.medic("audit", "list")
		return strings.Contains(out, "tokens reloaded: 0 added, 1 removed")
	})
	// A tokens file others may write is refused, and the tokens in force stay.
	os.Chmod(tokens, 0o666)
	a.medic("reload")
	if code, _ := getWithToken(status, a.token); code != http.StatusOK {
		t.Fatalf("after a reload that met a world-writable tokens file: %d; want the tokens in force kept", code)
	}
	a.eventually(5*time.Second, "the rejected tokens file audited", func() bool {
		out, _ := a.medic("audit", "list")
		return strings.Contains(out, "tokens file rejected")
	})
}
