package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/medic-dev/medic/internal/auth"
)

// Cookie and header names of a dashboard session.
const (
	// CookieName holds the session's secret (HttpOnly: scripts never see it).
	CookieName = "medic_session"
	// CSRFHeader must carry the session's CSRF token on every mutation made
	// with the cookie. A cross-site page can make the browser send the cookie
	// (SameSite=Strict already stops that in current browsers) but cannot set
	// a custom header without a CORS preflight, which medic never grants, and
	// cannot read the token from GET /ui/session.
	CSRFHeader = "X-CSRF-Token"
)

// DefaultSessionTTL is how long a sign-in lasts: an operator's shift. The
// expiry is absolute (not sliding), so a cookie left in a browser stops
// working on its own.
const DefaultSessionTTL = 12 * time.Hour

// maxSessions bounds the session table; signing in past it forgets the
// session that expires first.
const maxSessions = 1000

// session is one signed-in browser.
type session struct {
	id      auth.Identity
	csrf    string
	expires time.Time
}

// sessions is the in-memory session table, keyed by the SHA-256 of the cookie
// value so that lookups compare digests, not secrets. Sessions do not survive
// a restart of medic: the page asks for the token again.
type sessions struct {
	ttl time.Duration

	mu    sync.Mutex
	table map[[sha256.Size]byte]session
}

func newSessions(ttl time.Duration) *sessions {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	return &sessions{ttl: ttl, table: map[[sha256.Size]byte]session{}}
}

// create starts a session for id at now and returns its cookie secret.
func (s *sessions) create(id auth.Identity, now time.Time) (string, session) {
	secret := randomToken()
	sess := session{id: id, csrf: randomToken(), expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.table {
		if !now.Before(v.expires) {
			delete(s.table, k)
		}
	}
	if len(s.table) >= maxSessions {
		var oldest [sha256.Size]byte
		var first time.Time
		for k, v := range s.table {
			if first.IsZero() || v.expires.Before(first) {
				oldest, first = k, v.expires
			}
		}
		delete(s.table, oldest)
	}
	s.table[sha256.Sum256([]byte(secret))] = sess
	return secret, sess
}

// lookup returns the live session of a cookie secret at now.
func (s *sessions) lookup(secret string, now time.Time) (session, bool) {
	if secret == "" {
		return session{}, false
	}
	k := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.table[k]
	if !ok {
		return session{}, false
	}
	if !now.Before(sess.expires) {
		delete(s.table, k)
		return session{}, false
	}
	return sess, true
}

// remove ends the session of a cookie secret.
func (s *sessions) remove(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.table, sha256.Sum256([]byte(secret)))
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// safeMethod reports whether a method only reads (RFC 9110 §9.2.1).
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// csrfRefusal returns why a cookie-authenticated mutation must be refused,
// or "" to admit it: the CSRF header must equal the session's token, and a
// browser-supplied Origin (or Sec-Fetch-Site) must say the request comes
// from this same origin.
func csrfRefusal(r *http.Request, token string) string {
	if reason := crossOrigin(r); reason != "" {
		return reason
	}
	got := r.Header.Get(CSRFHeader)
	if got == "" {
		return "missing " + CSRFHeader + " header: mutations from the dashboard need the session's CSRF token"
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
		return "wrong " + CSRFHeader + " header for this session"
	}
	return ""
}

// crossOrigin returns a reason when the browser says the request was made
// by another site, or "" otherwise. Origin is compared with the origin the
// request was addressed to (scheme from the connection, host from Host).
func crossOrigin(r *http.Request) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return "cross-site request refused (Sec-Fetch-Site: " + site + ")"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	u, err := url.Parse(origin)
	if err != nil || origin == "null" {
		return "cross-origin request refused (Origin: " + origin + ")"
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if u.Scheme != scheme || u.Host != r.Host {
		return "cross-origin request refused (Origin " + origin + " is not " + scheme + "://" + r.Host + ")"
	}
	return ""
}
