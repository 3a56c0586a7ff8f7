package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/events"
	"github.com/medic-dev/medic/internal/sqlite"
	"github.com/medic-dev/medic/internal/supervise"
)

// fakeSupervisor records the calls it gets.
type fakeSupervisor struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeSupervisor) call(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	return nil
}

func (f *fakeSupervisor) Status() []supervise.ServiceStatus {
	return []supervise.ServiceStatus{{Name: "web", Desired: 1, Instances: []supervise.InstanceStatus{{ID: "web/0", Service: "web", State: medic.StateRunning}}}}
}
func (f *fakeSupervisor) RestartInstance(_ context.Context, id medic.InstanceID, actor, reason string) error {
	return f.call("restart " + id.String() + " by " + actor + ": " + reason)
}
func (f *fakeSupervisor) StopInstance(_ context.Context, id medic.InstanceID, actor, reason string) error {
	return f.call("stop " + id.String())
}
func (f *fakeSupervisor) StartInstance(_ context.Context, id medic.InstanceID, actor, reason string) error {
	return f.call("start " + id.String())
}
func (f *fakeSupervisor) RollingRestart(_ context.Context, svc, actor string, d time.Duration) error {
	return f.call("rolling " + svc + " " + d.String())
}
func (f *fakeSupervisor) Scale(_ context.Context, svc string, n int, actor string) error {
	return f.call("scale " + svc)
}
func (f *fakeSupervisor) Rollback(_ context.Context, svc, actor string) error {
	return f.call("rollback " + svc)
}

type fixture struct {
	srv      *api.Server
	sup      *fakeSupervisor
	log      *audit.Log
	op, view string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "tokens.yaml")
	op, err := auth.AddToken(tokFile, "ops", auth.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	view, err := auth.AddToken(tokFile, "dash", auth.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := auth.LoadTokens(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log, err := audit.Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	hub := events.New(100)
	f := &fixture{sup: &fakeSupervisor{}, log: log, op: op, view: view}
	f.srv = &api.Server{
		Tokens: toks, Supervisor: f.sup, Hub: hub, Audit: log, Metrics: prometheus.NewRegistry(),
		LogDir: dir, Logger: slog.New(slog.DiscardHandler), Clock: clock.Real{},
		Record: func(ctx context.Context, ev medic.Event) {
			if _, err := log.Append(ctx, audit.Record{Actor: ev.Actor, Kind: string(ev.Kind), Target: ev.Target, Reason: ev.Reason}); err != nil {
				t.Errorf("audit append: %v", err)
			}
			hub.Publish(ev)
		},
	}
	return f
}

func (f *fixture) do(method, path, token, body string) *httptest.ResponseRecorder {
	return f.serve(f.request(method, path, token, body))
}

func (f *fixture) request(method, path, token, body string) *http.Request {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

func (f *fixture) serve(req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, req)
	return w
}

func TestAuthAndAudit(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name, method, path, token string
		want                      int
	}{
		{"status without token", "GET", "/v1/status", "", 401},
		{"status with wrong token", "GET", "/v1/status", "medic_nope", 401},
		{"status as viewer", "GET", "/v1/status", f.view, 200},
		{"restart as viewer", "POST", "/v1/instances/web/0/restart", f.view, 403},
		{"restart without token", "POST", "/v1/instances/web/0/restart", "", 401},
		{"restart as operator", "POST", "/v1/instances/web/0/restart", f.op, 200},
		{"reload as operator", "POST", "/v1/reload", f.op, 403},
		{"healthz open", "GET", "/healthz", "", 200},
	}
	for _, c := range cases {
		if w := f.do(c.method, c.path, c.token, ""); w.Code != c.want {
			t.Errorf("%s: HTTP %d, want %d (%s)", c.name, w.Code, c.want, w.Body)
		}
	}
	recs, err := f.log.List(context.Background(), audit.Filter{Kind: string(medic.EventAPIDenied)})
	if err != nil {
		t.Fatal(err)
	}
	// The second "missing bearer token" from the same client is counted,
	// not recorded (TestDenialsAggregated).
	if len(recs) != 4 {
		t.Fatalf("audited denials = %d, want 4 (the first 401 or 403 per client and reason)", len(recs))
	}
	acts, _ := f.log.List(context.Background(), audit.Filter{Kind: string(medic.EventAPIAction)})
	if len(acts) != 1 || acts[0].Actor != "api:ops" || acts[0].Target != "web/0" {
		t.Fatalf("audited actions = %+v, want one by api:ops on web/0", acts)
	}
}

func TestBodiesAreStrict(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		path, body string
		want       int
		msg        string
	}{
		{"/v1/instances/web/0/restart", `{"reason": "deploy 42"}`, 200, ""},
		{"/v1/instances/web/0/restart", `{"reason": 42}`, 400, "body.reason"},
		{"/v1/instances/web/0/restart", `{"reasn": "x"}`, 400, "body.reasn: unknown field"},
		{"/v1/instances/web/0/restart", `{"reason": "x"} {}`, 400, "trailing data"},
		{"/v1/instances/web/x/restart", ``, 400, "instance index"},
		{"/v1/instances/web/0/explode", ``, 404, "want restart, stop or start"},
		{"/v1/services/web/restart", `{"ready_timeout": "soon"}`, 400, "body.ready_timeout"},
		{"/v1/services/web/restart", `{"ready_timeout": "30s"}`, 200, ""},
		{"/v1/services/web/scale", `{}`, 400, "body.instances"},
		{"/v1/services/web/scale", `{"instances": 3}`, 200, ""},
		{"/v1/services/web/scale", `{"instances": "3"}`, 400, "body.instances"},
		{"/v1/services/web/rollback", `[1,2]`, 400, "body"},
	}
	for _, c := range cases {
		w := f.do("POST", c.path, f.op, c.body)
		if w.Code != c.want || !strings.Contains(w.Body.String(), c.msg) {
			t.Errorf("POST %s %s: HTTP %d %s; want %d mentioning %q", c.path, c.body, w.Code, strings.TrimSpace(w.Body.String()), c.want, c.msg)
		}
	}
	if got := f.sup.calls; len(got) != 3 || got[0] != "restart web/0 by api:ops: deploy 42" || got[1] != "rolling web 30s" {
		t.Fatalf("supervisor calls = %q", got)
	}
}

func TestEventsStreamHistory(t *testing.T) {
	f := newFixture(t)
	f.do("POST", "/v1/instances/web/0/restart", f.op, "")
	srv := httptest.NewServer(f.srv.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/v1/events?follow=0", nil)
	req.Header.Set("Authorization", "Bearer "+f.view)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != "text/event-stream" || !strings.Contains(string(b), "event: api.action") {
		t.Fatalf("event stream: %s\n%s", resp.Header.Get("Content-Type"), b)
	}
	line := strings.SplitN(strings.SplitN(string(b), "data: ", 2)[1], "\n", 2)[0]
	var ev medic.Event
	if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Target != "web/0" {
		t.Fatalf("event data %q: %v", line, err)
	}
}

// FuzzActionBodies sends arbitrary bodies to every action route: the API must
// answer 2xx or 4xx, never panic or 5xx.
func FuzzActionBodies(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"reason":"x"}`, `{"instances":2}`, `{"ready_timeout":"1s"}`, `{"instances":-1}`, `null`, `[]`, `{"reason":"\u0000"}`} {
		f.Add(s)
	}
	fx := newFixture(f)
	paths := []string{"/v1/instances/web/0/restart", "/v1/services/web/restart", "/v1/services/web/scale", "/v1/services/web/rollback"}
	f.Fuzz(func(t *testing.T, body string) {
		for _, p := range paths {
			w := fx.do("POST", p, fx.op, body)
			if w.Code >= 500 {
				t.Fatalf("POST %s %q: HTTP %d %s", p, body, w.Code, w.Body)
			}
		}
	})
}
