package ui_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/ui"
)

// req is one request to the fixture's handler.
type req struct {
	method, path, body string
	cookie             *http.Cookie
	header             map[string]string
	tls                bool
}

func (f *fixture) do(r req) *httptest.ResponseRecorder {
	hr := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
	if r.tls {
		hr = httptest.NewRequest(r.method, "https://example.com"+r.path, strings.NewReader(r.body))
		hr.TLS = &tls.ConnectionState{}
	}
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.cookie != nil {
		hr.AddCookie(r.cookie)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, hr)
	return w
}

// login signs in with token and returns the session cookie and CSRF token.
func (f *fixture) login(t *testing.T, token string) (*http.Cookie, string) {
	t.Helper()
	w := f.do(req{method: "POST", path: "/ui/login", body: `{"token":"` + token + `"}`})
	if w.Code != 200 {
		t.Fatalf("login: HTTP %d %s", w.Code, w.Body)
	}
	var doc ui.SessionDoc
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || doc.CSRF == "" {
		t.Fatalf("login body %s: %v", w.Body, err)
	}
	cs := w.Result().Cookies()
	if len(cs) != 1 || cs[0].Name != ui.CookieName {
		t.Fatalf("login cookies = %v", cs)
	}
	return cs[0], doc.CSRF
}

func TestLoginCookieFlags(t *testing.T) {
	fc := clocktest.New(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	f := newFixture(t, fixtureOpts{clock: fc})
	for _, overTLS := range []bool{false, true} {
		w := f.do(req{method: "POST", path: "/ui/login", body: `{"token":"` + f.op + `"}`, tls: overTLS})
		if w.Code != 200 {
			t.Fatalf("login (tls=%v): HTTP %d %s", overTLS, w.Code, w.Body)
		}
		raw := w.Header().Get("Set-Cookie")
		for _, want := range []string{ui.CookieName + "=", "Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=43200", "Expires=Tue, 02 Jun 2026 00:00:00 GMT"} {
			if !strings.Contains(raw, want) {
				t.Errorf("tls=%v: Set-Cookie %q lacks %q", overTLS, raw, want)
			}
		}
		if got := strings.Contains(raw, "Secure"); got != overTLS {
			t.Errorf("tls=%v: Secure flag = %v in %q", overTLS, got, raw)
		}
		if strings.Contains(w.Body.String(), f.op) {
			t.Fatal("the login answer echoes the token")
		}
	}
	recs, _ := f.log.List(context.Background(), audit.Filter{Kind: string(ui.EventLogin)})
	if len(recs) != 2 || recs[0].Actor != "api:ops" {
		t.Fatalf("audited sign-ins = %+v", recs)
	}
}

func TestLoginRefusals(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cases := []struct {
		name string
		r    req
		want int
		says string
	}{
		{"wrong token", req{method: "POST", path: "/ui/login", body: `{"token":"medic_nope"}`}, 401, "invalid token"},
		{"form body", req{method: "POST", path: "/ui/login", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, "JSON"},
		{"unknown field", req{method: "POST", path: "/ui/login", body: `{"tokn":"x"}`}, 400, "unknown field"},
		{"other origin", req{method: "POST", path: "/ui/login", body: `{"token":"` + f.op + `"}`, header: map[string]string{"Origin": "http://evil.example"}}, 403, "cross-origin"},
		{"cross-site fetch", req{method: "POST", path: "/ui/login", body: `{"token":"` + f.op + `"}`, header: map[string]string{"Sec-Fetch-Site": "cross-site"}}, 403, "cross-site"},
	}
	for _, c := range cases {
		w := f.do(c.r)
		if w.Code != c.want || !strings.Contains(w.Body.String(), c.says) || w.Header().Get("Set-Cookie") != "" {
			t.Errorf("%s: HTTP %d %s (cookie %q); want %d mentioning %q", c.name, w.Code, w.Body, w.Header().Get("Set-Cookie"), c.want, c.says)
		}
	}
	denied, _ := f.log.List(context.Background(), audit.Filter{Kind: string(medic.EventAPIDenied)})
	if len(denied) != 3 {
		t.Fatalf("audited refusals = %d, want 3 (wrong token, origin, cross-site)", len(denied))
	}
}

func TestCookieMutationsNeedCSRF(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cookie, csrf := f.login(t, f.op)
	restart := "/v1/instances/web/0/restart"
	same := "http://example.com" // httptest.NewRequest's Host
	cases := []struct {
		name   string
		r      req
		want   int
		called bool
	}{
		{"read with the cookie", req{method: "GET", path: "/v1/status", cookie: cookie}, 200, false},
		{"read without it", req{method: "GET", path: "/v1/status"}, 401, false},
		{"no CSRF header", req{method: "POST", path: restart, cookie: cookie}, 403, false},
		{"wrong CSRF header", req{method: "POST", path: restart, cookie: cookie, header: map[string]string{ui.CSRFHeader: "x" + csrf}}, 403, false},
		{"right header, other origin", req{method: "POST", path: restart, cookie: cookie, header: map[string]string{ui.CSRFHeader: csrf, "Origin": "http://evil.example"}}, 403, false},
		{"right header, cross-site", req{method: "POST", path: restart, cookie: cookie, header: map[string]string{ui.CSRFHeader: csrf, "Sec-Fetch-Site": "same-site"}}, 403, false},
		{"forged cookie", req{method: "POST", path: restart, cookie: &http.Cookie{Name: ui.CookieName, Value: "forged"}, header: map[string]string{ui.CSRFHeader: csrf}}, 401, false},
		{"right header, same origin", req{method: "POST", path: restart, cookie: cookie, header: map[string]string{ui.CSRFHeader: csrf, "Origin": same, "Sec-Fetch-Site": "same-origin"}}, 200, true},
	}
	for _, c := range cases {
		before := len(f.sup.Calls())
		w := f.do(c.r)
		called := len(f.sup.Calls()) > before
		if w.Code != c.want || called != c.called {
			t.Errorf("%s: HTTP %d (supervisor called: %v) %s; want %d (called: %v)", c.name, w.Code, called, w.Body, c.want, c.called)
		}
	}
	if calls := f.sup.Calls(); len(calls) != 1 || calls[0] != "restart web/0 by api:ops" {
		t.Fatalf("supervisor calls = %q, want one restart by api:ops", calls)
	}
	acts, _ := f.log.List(context.Background(), audit.Filter{Kind: string(medic.EventAPIAction)})
	if len(acts) != 1 || acts[0].Actor != "api:ops" || acts[0].Target != "web/0" {
		t.Fatalf("audited actions = %+v, want the restart by api:ops", acts)
	}
}

func TestViewerSessionIsReadOnly(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cookie, csrf := f.login(t, f.view)
	h := map[string]string{ui.CSRFHeader: csrf}
	if w := f.do(req{method: "GET", path: "/v1/status", cookie: cookie}); w.Code != 200 {
		t.Fatalf("viewer read: HTTP %d", w.Code)
	}
	for _, p := range []string{"/v1/instances/web/0/restart", "/v1/instances/web/0/stop", "/v1/services/web/restart"} {
		if w := f.do(req{method: "POST", path: p, cookie: cookie, header: h}); w.Code != 403 {
			t.Errorf("viewer POST %s: HTTP %d %s, want 403", p, w.Code, w.Body)
		}
	}
	if calls := f.sup.Calls(); len(calls) != 0 {
		t.Fatalf("a viewer session reached the supervisor: %q", calls)
	}
	// A bearer token decides over the cookie: a viewer token with an operator cookie is a viewer.
	opCookie, opCSRF := f.login(t, f.op)
	w := f.do(req{method: "POST", path: "/v1/instances/web/0/restart", cookie: opCookie,
		header: map[string]string{ui.CSRFHeader: opCSRF, "Authorization": "Bearer " + f.view}})
	if w.Code != 403 {
		t.Fatalf("viewer bearer over an operator cookie: HTTP %d, want 403", w.Code)
	}
}

func TestSessionExpiresAndLogout(t *testing.T) {
	fc := clocktest.New(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	f := newFixture(t, fixtureOpts{clock: fc})
	cookie, csrf := f.login(t, f.op)
	fc.Advance(ui.DefaultSessionTTL - time.Second)
	if w := f.do(req{method: "GET", path: "/ui/session", cookie: cookie}); w.Code != 200 || !strings.Contains(w.Body.String(), `"csrf": "`+csrf) {
		t.Fatalf("session just before expiry: HTTP %d %s", w.Code, w.Body)
	}
	fc.Advance(time.Second)
	if w := f.do(req{method: "GET", path: "/v1/status", cookie: cookie}); w.Code != 401 {
		t.Errorf("GET /v1/status after expiry: HTTP %d, want 401", w.Code)
	}
	if w := f.do(req{method: "GET", path: "/ui/session", cookie: cookie}); w.Code != 200 || !strings.Contains(w.Body.String(), `"auth": "required"`) {
		t.Errorf("GET /ui/session after expiry: HTTP %d %s, want auth required", w.Code, w.Body)
	}

	cookie, csrf = f.login(t, f.op)
	if w := f.do(req{method: "POST", path: "/ui/logout", cookie: cookie}); w.Code != 403 {
		t.Fatalf("logout without CSRF: HTTP %d, want 403", w.Code)
	}
	w := f.do(req{method: "POST", path: "/ui/logout", cookie: cookie, header: map[string]string{ui.CSRFHeader: csrf}})
	if w.Code != 200 || !strings.Contains(w.Header().Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: HTTP %d, Set-Cookie %q", w.Code, w.Header().Get("Set-Cookie"))
	}
	if w := f.do(req{method: "GET", path: "/v1/status", cookie: cookie}); w.Code != 401 {
		t.Fatalf("the cookie still works after logout: HTTP %d", w.Code)
	}
}

func TestNoTokensFileIsReadOnly(t *testing.T) {
	f := newFixture(t, fixtureOpts{noTokens: true})
	w := f.do(req{method: "GET", path: "/ui/session"})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"auth": "none"`) || strings.Contains(w.Body.String(), "csrf") {
		t.Fatalf("session without tokens: HTTP %d %s", w.Code, w.Body)
	}
	if w := f.do(req{method: "POST", path: "/ui/login", body: `{"token":"x"}`}); w.Code != 403 {
		t.Fatalf("login without tokens: HTTP %d, want 403", w.Code)
	}
	if w := f.do(req{method: "GET", path: "/v1/status"}); w.Code != 200 {
		t.Fatalf("read without tokens: HTTP %d", w.Code)
	}
	w = f.do(req{method: "POST", path: "/v1/instances/web/0/restart", cookie: &http.Cookie{Name: ui.CookieName, Value: "x"}, header: map[string]string{ui.CSRFHeader: "x"}})
	if w.Code != 403 || len(f.sup.Calls()) != 0 {
		t.Fatalf("mutation without tokens: HTTP %d, calls %q", w.Code, f.sup.Calls())
	}
}

func TestPageAndAssets(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cases := []struct{ path, ctype, says string }{
		{"/", "text/html", `<script type="module" src="/ui/assets/js/main.js">`},
		{"/ui/assets/js/main.js", "javascript", "coalesced"},
		{"/ui/assets/style.css", "text/css", "prefers-color-scheme: dark"},
		{"/ui/assets/vendor/uplot/uPlot.iife.min.js", "javascript", "uPlot"},
	}
	for _, c := range cases {
		w := f.do(req{method: "GET", path: c.path})
		if w.Code != 200 || !strings.Contains(w.Header().Get("Content-Type"), c.ctype) || !strings.Contains(w.Body.String(), c.says) {
			t.Errorf("GET %s: HTTP %d %s", c.path, w.Code, w.Header().Get("Content-Type"))
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: CSP %q", c.path, csp)
		}
	}
	if w := f.do(req{method: "GET", path: "/nope"}); w.Code != 404 {
		t.Errorf("GET /nope: HTTP %d, want 404 (the page is served at / only)", w.Code)
	}
}
