package auth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/auth"
)

// mustTokens makes a tokens file with one token per role and returns the
// parsed file and the plaintext tokens by role.
func mustTokens(t *testing.T) (*auth.Tokens, map[auth.Role]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	plain := map[auth.Role]string{}
	for _, role := range []auth.Role{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		tok, err := auth.AddToken(path, role.String()+"-bot", role)
		if err != nil {
			t.Fatal(err)
		}
		plain[role] = tok
	}
	toks, err := auth.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	return toks, plain
}

func TestMiddleware(t *testing.T) {
	toks, plain := mustTokens(t)
	type denial struct {
		status int
		reason string
	}
	tests := []struct {
		name       string
		tokens     *auth.Tokens
		need       auth.Role
		authz      []string // Authorization header values
		wantStatus int
		wantID     auth.Identity // when served
		wantReason string        // substring, when refused
	}{
		{"no header", toks, auth.RoleViewer, nil, 401, auth.Identity{}, "missing bearer token"},
		{"basic scheme", toks, auth.RoleViewer, []string{"Basic dXNlcjpwYXNz"}, 401, auth.Identity{}, "malformed"},
		{"bearer without token", toks, auth.RoleViewer, []string{"Bearer "}, 401, auth.Identity{}, "malformed"},
		{"bare token", toks, auth.RoleViewer, []string{plain[auth.RoleAdmin]}, 401, auth.Identity{}, "malformed"},
		{"two headers", toks, auth.RoleViewer, []string{"Bearer " + plain[auth.RoleAdmin], "Bearer x"}, 401, auth.Identity{}, "malformed"},
		{"unknown token", toks, auth.RoleViewer, []string{"Bearer medic_nope"}, 401, auth.Identity{}, "invalid token"},
		{"token with a suffix", toks, auth.RoleViewer, []string{"Bearer " + plain[auth.RoleAdmin] + "x"}, 401, auth.Identity{}, "invalid token"},
		{"viewer reads", toks, auth.RoleViewer, []string{"Bearer " + plain[auth.RoleViewer]}, 200, auth.Identity{Name: "viewer-bot", Role: auth.RoleViewer}, ""},
		{"lower-case scheme", toks, auth.RoleViewer, []string{"bearer " + plain[auth.RoleViewer]}, 200, auth.Identity{Name: "viewer-bot", Role: auth.RoleViewer}, ""},
		{"viewer mutates", toks, auth.RoleOperator, []string{"Bearer " + plain[auth.RoleViewer]}, 403, auth.Identity{}, `token "viewer-bot" has role viewer; this needs operator`},
		{"operator mutates", toks, auth.RoleOperator, []string{"Bearer " + plain[auth.RoleOperator]}, 200, auth.Identity{Name: "operator-bot", Role: auth.RoleOperator}, ""},
		{"admin mutates", toks, auth.RoleOperator, []string{"Bearer " + plain[auth.RoleAdmin]}, 200, auth.Identity{Name: "admin-bot", Role: auth.RoleAdmin}, ""},
		{"operator administers", toks, auth.RoleAdmin, []string{"Bearer " + plain[auth.RoleOperator]}, 403, auth.Identity{}, "needs admin"},
		{"open route, no token", toks, auth.RoleNone, nil, 200, auth.Anonymous, ""},
		{"open route, valid token", toks, auth.RoleNone, []string{"Bearer " + plain[auth.RoleOperator]}, 200, auth.Identity{Name: "operator-bot", Role: auth.RoleOperator}, ""},
		{"open route, bad token", toks, auth.RoleNone, []string{"Bearer medic_nope"}, 401, auth.Identity{}, "invalid token"},
		{"no tokens file, read", nil, auth.RoleViewer, nil, 200, auth.Anonymous, ""},
		{"no tokens file, read with a token", nil, auth.RoleViewer, []string{"Bearer whatever"}, 200, auth.Anonymous, ""},
		{"no tokens file, mutation", nil, auth.RoleOperator, []string{"Bearer " + plain[auth.RoleAdmin]}, 403, auth.Identity{}, auth.ReasonNoTokensFile},
		{"no tokens file, admin", nil, auth.RoleAdmin, nil, 403, auth.Identity{}, auth.ReasonNoTokensFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var denials []denial
			var served *auth.Identity
			h := auth.Middleware(tt.tokens, tt.need, func(r *http.Request, status int, reason string) {
				denials = append(denials, denial{status, reason})
			})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				id, ok := auth.IdentityFrom(r.Context())
				if !ok {
					t.Error("handler reached without an identity in the context")
				}
				served = &id
				w.WriteHeader(http.StatusOK)
			}))
			req := httptest.NewRequest(http.MethodPost, "/v1/pause", nil)
			for _, v := range tt.authz {
				req.Header.Add("Authorization", v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantStatus == http.StatusOK {
				if served == nil || *served != tt.wantID {
					t.Fatalf("served as %+v, want %+v", served, tt.wantID)
				}
				if len(denials) != 0 {
					t.Fatalf("onDenied called for a served request: %+v", denials)
				}
				return
			}
			if served != nil {
				t.Fatal("refused request reached the handler")
			}
			var body struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || !strings.Contains(body.Error, tt.wantReason) {
				t.Fatalf("body %q (%v), want error containing %q", rec.Body, err, tt.wantReason)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			if got := rec.Header().Get("WWW-Authenticate"); (tt.wantStatus == 401) != strings.HasPrefix(got, "Bearer") {
				t.Errorf("status %d with WWW-Authenticate %q", tt.wantStatus, got)
			}
			if len(denials) != 1 || denials[0].status != tt.wantStatus || denials[0].reason != body.Error {
				t.Errorf("onDenied got %+v, want one call with %d and %q", denials, tt.wantStatus, body.Error)
			}
			if strings.Contains(rec.Body.String(), "medic_") {
				t.Error("the refusal echoes a token")
			}
		})
	}
}

func TestMiddlewareNilOnDenied(t *testing.T) {
	h := auth.Middleware(nil, auth.RoleOperator, nil)(http.NotFoundHandler())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusForbidden {
		t.Fatalf("status %d", rec.Code)
	}
}

func TestRole(t *testing.T) {
	for _, r := range []auth.Role{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		got, err := auth.ParseRole(r.String())
		if err != nil || got != r {
			t.Errorf("ParseRole(%q) = %v, %v", r.String(), got, err)
		}
	}
	for _, s := range []string{"", "none", "Admin", "root"} {
		if _, err := auth.ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) succeeded", s)
		}
	}
	if !auth.RoleAdmin.AtLeast(auth.RoleOperator) || auth.RoleViewer.AtLeast(auth.RoleOperator) || auth.RoleNone.AtLeast(auth.RoleViewer) {
		t.Error("role order is wrong")
	}
	b, _ := json.Marshal(auth.Identity{Name: "x", Role: auth.RoleOperator})
	if string(b) != `{"name":"x","role":"operator"}` {
		t.Errorf("Identity JSON %s", b)
	}
}
