package ui_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/medic-dev/medic/internal/app"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/demoapp"
	"github.com/medic-dev/medic/internal/ports"
)

// demoappEnv makes the test binary run as the demo service: the agent under
// test supervises copies of this binary instead of a separately built medic.
const demoappEnv = "MEDIC_UI_TEST_DEMOAPP"

func TestMain(m *testing.M) {
	if os.Getenv(demoappEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		err := demoapp.Run(ctx, demoapp.Options{Listen: "127.0.0.1:" + os.Getenv("PORT"), Logger: slog.New(slog.DiscardHandler)})
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "demoapp:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// freePorts returns a base port with n free ports after it.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	base, err := ports.Free(n)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// startAgent runs a real agent (app.Main, as `medic run` does) supervising
// two demo instances behind a proxy, without a tokens file: the dashboard
// is read-only for everyone.
func startAgent(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`data_dir: %s
api: {listen: "127.0.0.1:0"}
services:
  web:
    command: [%q, "-test.run=^$"]
    env: {%s: "1"}
    instances: 2
    port: %d
    probes:
      liveness:  {http: {path: /healthz/live}, period: 500ms, timeout: 200ms}
      readiness: {http: {path: /healthz/ready}, period: 500ms, timeout: 200ms}
    proxy: {listen: "127.0.0.1:%d"}
    stop: {grace: 2s}
`, filepath.Join(dir, "data"), exe, demoappEnv, freePorts(t, 2), freePorts(t, 1))
	path := filepath.Join(dir, "medic.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan net.Addr, 1)
	m := &app.Main{Config: cfg, Logger: slog.New(slog.DiscardHandler), Listening: func(a net.Addr) { addr <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the agent did not stop within 30s")
		}
	})
	select {
	case a := <-addr:
		return "http://" + a.String()
	case err := <-done:
		t.Fatalf("agent: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not listen within 30s")
	}
	return ""
}

// TestBrowserRealAgent: the page of a real agent shows its instances, and a
// crash injected into an instance shows it go down and come back, live.
func TestBrowserRealAgent(t *testing.T) {
	chromiumPath(t) // skip before starting processes when there is no browser
	base := startAgent(t)
	b := newBrowser(t) // stops before the agent (cleanups run last-in first-out)
	b.do(t, "open the page", chromedp.Navigate(base+"/"))
	b.waitFor(t, "both instances ready", `[...document.querySelectorAll('tr[data-instance^="web/"]')].filter((r) => r.dataset.state === "running" && r.innerText.includes("not ready") === false).length === 2`)
	if note := eval[string](t, b, `document.getElementById("readonly-note").innerText`); !strings.Contains(note, "read-only") {
		t.Errorf("without a tokens file the page should say it is read-only, says %q", note)
	}
	// Watch web/1's row: every state and readiness it shows.
	eval[bool](t, b, `(() => { const r = document.querySelector('tr[data-instance="web/1"]'); window.seen = [];
	  new MutationObserver(() => window.seen.push(r.dataset.state + (r.innerText.includes("not ready") ? "/not ready" : "/ready")))
	    .observe(r, {subtree: true, childList: true, characterData: true, attributes: true}); return true; })()`)
	port := eval[float64](t, b, `(async () => (await (await fetch("/v1/status")).json()).services[0].instances[1].port)()`)
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/fault/crash", int(port)), "text/plain", nil)
	if err == nil {
		resp.Body.Close()
	}
	b.waitFor(t, "the crash seen", `window.seen.some((s) => !s.startsWith("running/ready"))`)
	b.waitFor(t, "the exit in the events", `document.getElementById("events-list").innerText.includes("exit status 2")`)
	b.waitFor(t, "web/1 back", `(() => { const r = document.querySelector('tr[data-instance="web/1"]'); return r.dataset.state === "running" && !r.innerText.includes("not ready") && r.innerText.includes("exit"); })()`)
	t.Logf("web/1 as the page showed it: %v", eval[[]string](t, b, `[...new Set(window.seen)]`))
	b.waitFor(t, "the scorecard", `document.querySelectorAll("#scorecard-body details").length === 8`)
	if errs := b.errors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	files := b.screenshots(t, artifacts(t), "agent")
	t.Logf("screenshots: %s", strings.Join(files, " "))
}
