package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// ReasonNoTokensFile is the reason a mutation is refused when medic runs
// without a tokens file.
const ReasonNoTokensFile = "no tokens_file configured: mutations are disabled"

type ctxKey struct{}

// WithIdentity returns ctx carrying id, as Middleware does for the handlers
// it wraps (and tests do for handlers they call directly).
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

type peerKey struct{}

// WithPeerIdentity returns ctx carrying an identity the kernel proved (the
// admin socket's peer credentials, internal/adminsock). Middleware judges
// such a request by that identity alone: with or without a tokens file, and
// whatever Authorization header it carries.
func WithPeerIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, peerKey{}, id)
}

// IdentityFrom returns the identity Middleware put in ctx.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// Middleware admits requests whose bearer token has at least role need and
// puts the token's Identity in the request context (see IdentityFrom).
//
//   - No Authorization header, another scheme, or an unknown token: 401 with
//     WWW-Authenticate: Bearer.
//   - A valid token whose role is below need: 403.
//   - t == nil (no tokens file configured): requests needing at most viewer
//     are served as Anonymous, any token they carry ignored; anything
//     needing more gets 403 with ReasonNoTokensFile.
//   - need == RoleNone: everyone is served; a token, if present, must be
//     valid and names the identity, otherwise Anonymous.
//   - A request whose context holds a peer identity (WithPeerIdentity) is
//     judged by that identity's role alone.
//   - A request without an Authorization header whose context already holds
//     an Identity (WithIdentity, from an in-process middleware such as the
//     dashboard's session cookie) is judged by that identity's role, when t
//     is not nil.
//
// Refusals carry a JSON body {"error": reason}. onDenied, when not nil, is
// called with the request, the status and the same reason before the
// response is written: the caller audits denials there.
func Middleware(t *Tokens, need Role, onDenied func(r *http.Request, status int, reason string)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, status, reason := decide(t, need, r.Header.Values("Authorization"))
			if pre, ok := IdentityFrom(r.Context()); ok && t != nil && len(r.Header.Values("Authorization")) == 0 {
				id, status, reason = admit(pre, need) // a session cookie, already checked (internal/ui)
			}
			if peer, ok := r.Context().Value(peerKey{}).(Identity); ok {
				id, status, reason = admit(peer, need) // the admin socket's peer, proved by the kernel
			}
			if status != http.StatusOK {
				if onDenied != nil {
					onDenied(r, status, reason)
				}
				deny(w, status, reason)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
		})
	}
}

// decide is the whole policy, without I/O: the identity, or the status and
// reason of the refusal.
func decide(t *Tokens, need Role, authz []string) (Identity, int, string) {
	if t == nil {
		if need <= RoleViewer {
			return Anonymous, http.StatusOK, ""
		}
		return Identity{}, http.StatusForbidden, ReasonNoTokensFile
	}
	if len(authz) == 0 {
		if need == RoleNone {
			return Anonymous, http.StatusOK, ""
		}
		return Identity{}, http.StatusUnauthorized, "missing bearer token"
	}
	token, ok := bearer(authz)
	if !ok {
		return Identity{}, http.StatusUnauthorized, "malformed Authorization header: want \"Bearer <token>\""
	}
	id, ok := t.Authenticate(token)
	if !ok {
		return Identity{}, http.StatusUnauthorized, "invalid token"
	}
	if !id.Role.AtLeast(need) {
		return Identity{}, http.StatusForbidden, fmt.Sprintf("token %q has role %s; this needs %s", id.Name, id.Role, need)
	}
	return id, http.StatusOK, ""
}

// admit applies need to an identity an in-process middleware put in the
// context (the dashboard's session cookie) instead of a bearer token.
func admit(id Identity, need Role) (Identity, int, string) {
	if !id.Role.AtLeast(need) {
		return Identity{}, http.StatusForbidden, fmt.Sprintf("%q has role %s; this needs %s", id.Name, id.Role, need)
	}
	return id, http.StatusOK, ""
}

// bearer extracts the token from exactly one "Bearer <token>" header; the
// scheme is case-insensitive (RFC 9110 §11.1).
func bearer(authz []string) (string, bool) {
	if len(authz) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(authz[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.Trim(token, " ")
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

func deny(w http.ResponseWriter, status int, reason string) {
	h := w.Header()
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="medic"`)
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{reason})
}
