package e2e_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSecretsNeverLeaveMedic: a crash-looping service prints its env secret
// and a DSN password to stderr, and a runbook step prints a token; neither
// the audit log (crash-loop stderr tail, step output), the status (the
// stderr tail) nor the webhook receiver (runbook evidence) ever holds them —
// only [REDACTED].
func TestSecretsNeverLeaveMedic(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	defer hook.Close()
	cfg := `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d"}
receivers:
  hook: {webhook: {url: "` + hook.URL + `"}}
automation: {notify: {receiver: hook}, escalate: {receiver: hook}}
conditions:
  crashloop: {event: instance.crashloop}
runbooks:
  inspect:
    trigger: {condition: crashloop}
    target: "${labels.instance}"
    steps: [{action: exec, command: [sh, -c, "echo Authorization: Bearer tok-e2e-0123456789; exit 3"]}]
    trust: act
services:
  web:
    command: [sh, -c, "echo using $DBPASS for postgres://app:dsnpw-e2e-55@db/app >&2; exit 1"]
    env: {DBPASS: envsecret-e2e-77}
    restart: {initial: 50ms, crash_loop: {restarts: 3, window: 1m}}
`
	a := startAgent(t, cfg)
	secrets := []string{"envsecret-e2e-77", "dsnpw-e2e-55", "tok-e2e-0123456789"}
	a.eventually(30*time.Second, "the runbook's step ran and a notification went out", func() bool {
		mu.Lock()
		n := len(bodies)
		mu.Unlock()
		return len(a.auditRecords("remedy.step.end")) > 0 && n > 0
	})
	out, err := a.medic("audit", "list", "--limit", "5000", "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the audit log holds the secret %q", s)
		}
	}
	if !strings.Contains(out, "[REDACTED]") {
		t.Errorf("no [REDACTED] in the audit log: the crash-loop evidence is missing\n%s", tail(out, 3000))
	}
	status, err := a.medic("status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(status, s) {
			t.Errorf("the status (crash-loop stderr tail) holds the secret %q", s)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, b := range bodies {
		for _, s := range secrets {
			if strings.Contains(b, s) {
				t.Errorf("the webhook got the secret %q:\n%s", s, b)
			}
		}
	}
	t.Logf("%d notifications and the audit log checked for %d secrets", len(bodies), len(secrets))
}
