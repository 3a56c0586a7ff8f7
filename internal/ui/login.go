package ui

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/auth"
)

// SessionDoc is the body of POST /ui/login and GET /ui/session: who the page
// acts as, and the token its mutations must carry in CSRFHeader.
type SessionDoc struct {
	Name string    `json:"name"`
	Role auth.Role `json:"role"`
	// CSRF is empty when there is no session (no tokens file: read-only).
	CSRF    string    `json:"csrf,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	// Auth is "session" when signed in, "required" when the page must sign
	// in first, "none" when medic runs without a tokens file (everyone
	// reads, nobody mutates).
	Auth string `json:"auth"`
	// Endpoints lists the optional reads this agent serves (remediation,
	// databases, drills, history, scorecard): the page shows their panels.
	Endpoints []string `json:"endpoints"`
}

// Wrap turns a dashboard session cookie into the request's auth.Identity, so
// that the API's role guards serve the browser as they serve a bearer token.
// Wrap the whole API handler with it (routes of every component included).
//
//   - A request with an Authorization header is passed on untouched: the
//     bearer token decides, never the cookie.
//   - A valid, unexpired cookie adds the session's identity. A mutation
//     (any method but GET, HEAD, OPTIONS) must then carry the session's CSRF
//     token in CSRFHeader and come from this origin; otherwise it is refused
//     with 403 and the refusal is audited.
//   - No cookie, or an unknown or expired one, adds nothing: the guards
//     answer 401 and the page asks to sign in again.
func (u *UI) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.Header.Values("Authorization")) > 0 || u.tokens() == nil {
			next.ServeHTTP(w, r)
			return
		}
		sess, _, ok := u.cookieSession(r)
		if !ok || !u.tokens().Holds(sess.id) { // its token was removed on reload: the session is over

			next.ServeHTTP(w, r)
			return
		}
		if !safeMethod(r.Method) {
			if reason := csrfRefusal(r, sess.csrf); reason != "" {
				u.deny(w, r, http.StatusForbidden, reason, "ui:"+sess.id.Name)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(auth.WithIdentity(r.Context(), sess.id)))
	})
}

func (u *UI) cookieSession(r *http.Request) (session, string, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return session{}, "", false
	}
	sess, ok := u.sessions.lookup(c.Value, u.clock.Now())
	return sess, c.Value, ok
}

func (u *UI) deny(w http.ResponseWriter, r *http.Request, status int, reason, actor string) {
	u.opts.Record(r.Context(), medic.Event{Kind: medic.EventAPIDenied, Target: r.Method + " " + r.URL.Path,
		Actor: actor, Reason: fmt.Sprintf("%d: %s", status, reason)})
	w.Header().Set("Cache-Control", "no-store")
	api.WriteError(w, status, "%s", reason)
}

// loginBody is the body of POST /ui/login.
type loginBody struct {
	Token string `json:"token"`
}

// login exchanges an API token for a session cookie. The body must be JSON
// (a cross-site HTML form cannot send that without a CORS preflight) and the
// browser's Origin, when sent, must be this origin.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	anon := "ui:" + clientAddr(r)
	if u.tokens() == nil {
		u.deny(w, r, http.StatusForbidden, "no tokens_file configured: the dashboard is read-only and nobody signs in", anon)
		return
	}
	if reason := crossOrigin(r); reason != "" {
		u.deny(w, r, http.StatusForbidden, reason, anon)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		api.WriteError(w, http.StatusUnsupportedMediaType, "sign in with a JSON body {\"token\": \"...\"}")
		return
	}
	var body loginBody
	if err := api.DecodeBody(r, &body); err != nil {
		api.WriteError(w, http.StatusBadRequest, "%v", err)
		return
	}
	id, ok := u.tokens().Authenticate(body.Token)
	if !ok {
		u.deny(w, r, http.StatusUnauthorized, "sign-in refused: invalid token", anon)
		return
	}
	now := u.clock.Now()
	secret, sess := u.sessions.create(id, now)
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: secret, Path: "/",
		Expires: sess.expires, MaxAge: int(sess.expires.Sub(now) / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	u.opts.Record(r.Context(), medic.Event{Kind: EventLogin, Target: "dashboard", Actor: "api:" + id.Name,
		Reason: fmt.Sprintf("signed in to the dashboard as %s (role %s) until %s", id.Name, id.Role, sess.expires.UTC().Format(time.RFC3339))})
	w.Header().Set("Cache-Control", "no-store")
	api.WriteJSON(w, http.StatusOK, SessionDoc{Name: id.Name, Role: id.Role, CSRF: sess.csrf, Expires: sess.expires, Auth: "session", Endpoints: u.endpoints()})
}

// logout ends the cookie's session (CSRF-checked like any mutation) and
// clears the cookie. Without a live session it only clears the cookie.
func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	sess, secret, ok := u.cookieSession(r)
	if ok {
		if reason := csrfRefusal(r, sess.csrf); reason != "" {
			u.deny(w, r, http.StatusForbidden, reason, "ui:"+sess.id.Name)
			return
		}
		u.sessions.remove(secret)
		u.opts.Record(r.Context(), medic.Event{Kind: EventLogout, Target: "dashboard", Actor: "api:" + sess.id.Name,
			Reason: "signed out of the dashboard"})
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	w.Header().Set("Cache-Control", "no-store")
	api.WriteJSON(w, http.StatusOK, map[string]string{"result": "signed out"})
}

// session tells the page who it is (SessionDoc). Without a live session it
// answers 200 with Auth "required" rather than 401, so that opening the
// page signed out logs no error in the browser's console. The CSRF token is
// readable only by same-origin scripts (no CORS headers are ever sent).
func (u *UI) session(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if u.tokens() == nil {
		api.WriteJSON(w, http.StatusOK, SessionDoc{Name: auth.AnonymousName, Role: auth.RoleViewer, Auth: "none", Endpoints: u.endpoints()})
		return
	}
	sess, _, ok := u.cookieSession(r)
	if !ok {
		api.WriteJSON(w, http.StatusOK, SessionDoc{Auth: "required"})
		return
	}
	api.WriteJSON(w, http.StatusOK, SessionDoc{Name: sess.id.Name, Role: sess.id.Role, CSRF: sess.csrf, Expires: sess.expires, Auth: "session", Endpoints: u.endpoints()})
}

func clientAddr(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}
