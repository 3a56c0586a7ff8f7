package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/api"
)

// medicLocal runs the CLI as an operator on the agent's machine would: with
// the agent's config (-c) and no --addr, no token, no $MEDIC_ADDR.
func (a *agent) medicLocal(args ...string) (string, error) {
	cmd := exec.Command(medicBin, append(args, "-c", a.cfg)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEDIC_ADDR=") && !strings.HasPrefix(kv, "MEDIC_TOKEN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("medic %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// TestAdminSocket: the agent serves its API on data_dir/medic.sock (0600);
// the CLI given the config prefers it, and there the kernel's word that the
// caller is root or the agent's user replaces the token. Without it the
// same commands need a token (the agent has a tokens file).
func TestAdminSocket(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	a := startAgentIn(t, dir, `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: %[3]d
    stop: {grace: 1s}
`)
	a.token = op // for the test's own status checks over TCP
	sock := filepath.Join(dir, "data", "medic.sock")
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %s: %v %v; want a 0600 socket", sock, fi, err)
	}
	// Over TCP without a token: refused (the socket is what lets the operator in below).
	if _, err := a.medic("status", "--token", ""); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("status over TCP without a token: %v; want 401", err)
	}
	out, err := a.medicLocal("status", "--json")
	if err != nil {
		t.Fatalf("status over the admin socket: %v", err)
	}
	var doc api.StatusDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Services) != 1 {
		t.Fatalf("status over the admin socket: %v\n%s", err, out)
	}
	a.eventually(10*time.Second, "web/0 running", func() bool { return a.services()["web"].Instances[0].PID != 0 })
	pid := a.services()["web"].Instances[0].PID
	if out, err := a.medicLocal("restart", "web/0"); err != nil {
		t.Fatalf("restart over the admin socket without a token: %v %s", err, out)
	}
	a.eventually(10*time.Second, "web/0 restarted", func() bool {
		p := a.services()["web"].Instances[0].PID
		return p != 0 && p != pid
	})
	out, err = a.medicLocal("audit", "list", "--kind", "api.action", "--json")
	if err != nil || !strings.Contains(out, `"api:unix:`) {
		t.Fatalf("the restart's audit record does not name the local user (api:unix:…): %v\n%s", err, out)
	}
	// An explicit unix: address works too; --addr to TCP still wins over -c.
	if _, err := runMedic("status", "--addr", "unix:"+sock); err != nil {
		t.Fatalf("status --addr unix:%s: %v", sock, err)
	}
	if _, err := a.medicLocal("status", "--addr", a.addr); err == nil {
		t.Fatal("status with --addr to TCP and no token succeeded: --addr must win over the config's socket")
	}
	// The socket goes with the agent.
	a.stop()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("the admin socket outlived the agent: %v", err)
	}
}
