package alerts_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/alerts"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/detect"
	"github.com/medic-dev/medic/internal/signal"
)

// alertmanagerBin finds the real Alertmanager: $MEDIC_ALERTMANAGER, or
// Debian's package prometheus-alertmanager.
func alertmanagerBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("MEDIC_ALERTMANAGER")
	if bin == "" {
		bin = "/usr/bin/prometheus-alertmanager"
		if p, err := exec.LookPath("prometheus-alertmanager"); err == nil {
			bin = p
		}
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("Alertmanager not found at %s (%v): install the Debian package prometheus-alertmanager "+
			"(apt-get install -y prometheus-alertmanager) or set MEDIC_ALERTMANAGER", bin, err)
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// lockedBuffer collects a process's output from exec's copying goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startAlertmanager runs Alertmanager on loopback with clustering off,
// routing every alert to webhookURL at once, and stops it (by PID) when the
// test ends. It returns the base URL of its API.
func startAlertmanager(t *testing.T, webhookURL string) string {
	t.Helper()
	bin := alertmanagerBin(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: medic
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: medic
    webhook_configs:
      - url: %s
        send_resolved: true
`, webhookURL)
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=debug")
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("alertmanager exited before it was ready: %v\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready at %s after 30s (last error %v)\n%s", base, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// postAlert sends one alert to Alertmanager's API v2.
func postAlert(t *testing.T, base, body string) {
	t.Helper()
	resp, err := http.Post(base+"/api/v2/alerts", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("post alert: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("post alert: status %s: %s", resp.Status, msg)
	}
}

// TestAlertmanagerIntegration: the real Alertmanager delivers an alert to
// medic's handler, which parses it, and the condition engine fires and then
// resolves the alert condition following it.
func TestAlertmanagerIntegration(t *testing.T) {
	engine, err := detect.New(map[string]*config.Condition{
		"am_disk": {Alert: &config.ConditionAlert{Match: map[string]string{"alertname": "DiskFull"}}},
	}, detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	received := make(chan []detect.ExternalAlert, 16)
	hook := httptest.NewServer(alerts.AlertmanagerHandler(func(as []detect.ExternalAlert) error {
		received <- as
		return engine.PushAlerts(as)
	}))
	t.Cleanup(hook.Close)
	base := startAlertmanager(t, hook.URL+"/v1/alerts/alertmanager")

	wait := func(status detect.AlertStatus) detect.ExternalAlert {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case as := <-received:
				for _, a := range as {
					if a.Status == status {
						return a
					}
				}
			case <-timeout:
				t.Fatalf("no %s alert from alertmanager within 30s", status)
			}
		}
	}
	store := signal.NewStore(signal.Options{})
	starts := time.Now().UTC().Truncate(time.Millisecond)
	alert := `[{"labels": {"alertname": "DiskFull", "instance": "web/0", "severity": "page"},
	            "annotations": {"summary": "disk 95%% full"},
	            "startsAt": "%s", %s "generatorURL": "http://medic.test/graph"}]`
	postAlert(t, base, fmt.Sprintf(alert, starts.Format(time.RFC3339Nano), ""))

	a := wait(detect.AlertFiring)
	if a.Source != alerts.SourceAlertmanager || a.Labels["instance"] != "web/0" || a.Labels["severity"] != "page" ||
		a.Annotations["summary"] != "disk 95% full" || a.GeneratorURL != "http://medic.test/graph" || a.Fingerprint == "" {
		t.Errorf("firing alert = %+v", a)
	}
	if !a.StartsAt.Equal(starts) || !a.EndsAt.IsZero() {
		t.Errorf("firing alert times: starts %v (want %v), ends %v (want none)", a.StartsAt, starts, a.EndsAt)
	}
	trs := engine.Eval(time.Now(), store)
	if len(trs) != 1 || trs[0].Condition != "am_disk" || trs[0].To != detect.StateFiring || trs[0].Labels["instance"] != "web/0" {
		t.Fatalf("after the firing webhook: %+v", trs)
	}

	ends := time.Now().UTC().Truncate(time.Millisecond) // Alertmanager wants ends after starts
	if !ends.After(starts) {
		ends = starts.Add(time.Millisecond)
	}
	postAlert(t, base, fmt.Sprintf(alert, starts.Format(time.RFC3339Nano), `"endsAt": "`+ends.Format(time.RFC3339Nano)+`",`))
	r := wait(detect.AlertResolved)
	if !r.EndsAt.Equal(ends) || r.Labels["instance"] != "web/0" {
		t.Errorf("resolved alert = %+v, want ends %v", r, ends)
	}
	trs = engine.Eval(time.Now(), store)
	if len(trs) != 1 || !trs[0].Resolved() {
		t.Fatalf("after the resolved webhook: %+v", trs)
	}
}
