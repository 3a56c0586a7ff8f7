package proxy_test

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
)

// TestSignedRequests: a client may sign its requests instead of sending its
// key (both data planes, real sockets). A good signature names its class; a
// malformed, oversized, stale, wrongly keyed or replayed-elsewhere one is
// refused with 401 and never reaches an instance.
func TestSignedRequests(t *testing.T) {
	for _, plane := range []string{config.ProxyDataPlaneFast, config.ProxyDataPlaneNetHTTP} {
		t.Run(plane, func(t *testing.T) {
			cfg := baseConfig()
			cfg.DataPlane = plane
			cfg.Clients = &config.ProxyClients{
				KeysFile:  writeKeys(t, map[string][2]string{"a-secret": {"bot", "agent"}, "h-secret": {"web", "human"}}),
				Default:   "anonymous",
				Signature: &config.ProxySignature{Window: config.Duration(time.Minute)},
				Classes: map[string]*config.ProxyClass{
					"human": {}, "agent": {}, "anonymous": {},
				},
			}
			h := mustStart(t, cfg, nil)
			h.p.SetBackend("web/0", backend(t, named("a")), true)
			c := client(t)
			now := time.Now()
			admitted := func() map[string]uint64 {
				out := map[string]uint64{}
				for _, cs := range h.p.Stats().Classes {
					out[cs.Name] = cs.Admitted
				}
				return out
			}
			sig := func(v string) map[string]string { return map[string]string{"X-Medic-Signature": v} }

			before := admitted()
			r := do(c, http.MethodGet, h.url+"/orders?id=7", nil, sig(auth.Sign("bot", "a-secret", "GET", "/orders?id=7", now)))
			if r.status != 200 || admitted()["agent"] != before["agent"]+1 {
				t.Fatalf("a good signature: %d %q; admitted %v → %v", r.status, r.body, before, admitted())
			}
			r = do(c, http.MethodPost, h.url+"/pay", []byte("x"), sig(auth.Sign("web", "h-secret", "POST", "/pay", now.Add(-50*time.Second))))
			if r.status != 200 || admitted()["human"] != before["human"]+1 {
				t.Fatalf("a good signature 50 s old (window 1 m): %d %q", r.status, r.body)
			}

			good := auth.Sign("bot", "a-secret", "GET", "/orders?id=7", now)
			for name, tc := range map[string]struct {
				method, path, value, want string
			}{
				"garbage":       {"GET", "/", "hello", "malformed"},
				"empty fields":  {"GET", "/", "::", "malformed"},
				"oversized":     {"GET", "/", "bot:1:" + strings.Repeat("a", 300), "malformed"},
				"short mac":     {"GET", "/", "bot:" + now.Format("0") + ":abcd", "malformed"},
				"non-hex mac":   {"GET", "/", "bot:1700000000:" + strings.Repeat("z", 64), "malformed"},
				"negative time": {"GET", "/", "bot:-5:" + strings.Repeat("a", 64), "malformed"},
				"huge time":     {"GET", "/", "bot:99999999999999999999:" + strings.Repeat("a", 64), "malformed"},
				"bad name":      {"GET", "/", "b o t:1:" + strings.Repeat("a", 64), "malformed"},
				"stale":         {"GET", "/", auth.Sign("bot", "a-secret", "GET", "/", now.Add(-2*time.Minute)), "outside the window"},
				"future":        {"GET", "/", auth.Sign("bot", "a-secret", "GET", "/", now.Add(2*time.Minute)), "outside the window"},
				"wrong key":     {"GET", "/", auth.Sign("bot", "h-secret", "GET", "/", now), "does not verify"},
				"unknown name":  {"GET", "/", auth.Sign("ghost", "a-secret", "GET", "/", now), "does not verify"},
				"other path":    {"GET", "/orders?id=8", good, "does not verify"},
				"other method":  {"DELETE", "/orders?id=7", good, "does not verify"},
				"digest as key": {"GET", "/", auth.Sign("bot", auth.Digest("a-secret"), "GET", "/", now), "does not verify"},
				"name of other": {"GET", "/", auth.Sign("web", "a-secret", "GET", "/", now), "does not verify"},
			} {
				before := admitted()
				r := do(c, tc.method, h.url+tc.path, nil, sig(tc.value))
				if r.status != http.StatusUnauthorized || !strings.Contains(r.body, tc.want) {
					t.Errorf("%s: %d %q; want 401 saying %q", name, r.status, r.body, tc.want)
				}
				if after := admitted(); after["agent"] != before["agent"] || after["human"] != before["human"] || after["anonymous"] != before["anonymous"] {
					t.Errorf("%s: a refused signature was admitted: %v → %v", name, before, after)
				}
			}
			// The same signed request again, within the window: a replay.
			before = admitted()
			r = do(c, http.MethodGet, h.url+"/orders?id=7", nil, sig(auth.Sign("bot", "a-secret", "GET", "/orders?id=7", now)))
			if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "already used") || admitted()["agent"] != before["agent"] {
				t.Errorf("a replayed signature: %d %q; want 401 saying already used, not admitted", r.status, r.body)
			}
			// Without the header the key header still works.
			if r := do(c, http.MethodGet, h.url+"/", nil, map[string]string{"X-API-Key": "h-secret"}); r.status != 200 {
				t.Fatalf("a key header beside signatures: %d", r.status)
			}
		})
	}
}

// With signatures on, a keys file its group or others may read is refused:
// its digests sign requests.
func TestSignedKeysFileMustBePrivate(t *testing.T) {
	cfg := baseConfig()
	path := writeKeys(t, map[string][2]string{"a-secret": {"bot", "default"}})
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Clients = &config.ProxyClients{KeysFile: path, Signature: &config.ProxySignature{},
		Classes: map[string]*config.ProxyClass{"default": {}}}
	p, err := proxy.New(proxy.Options{Service: "web", Config: &cfg})
	if err == nil {
		p.Close()
		t.Fatal("a group-readable keys file with signatures on: started")
	}
	if !strings.Contains(err.Error(), "readable by its group or others") {
		t.Fatalf("error does not say what is wrong: %v", err)
	}
}

// The signatures remembered are bounded (clients.signature.max_seen): when
// full, a new signature is refused with 503 and Retry-After, never let
// through unremembered; a replay is still refused as one.
func TestSignedRequestsSeenFull(t *testing.T) {
	for _, plane := range []string{config.ProxyDataPlaneFast, config.ProxyDataPlaneNetHTTP} {
		t.Run(plane, func(t *testing.T) {
			cfg := baseConfig()
			cfg.DataPlane = plane
			cfg.Clients = &config.ProxyClients{
				KeysFile:  writeKeys(t, map[string][2]string{"a-secret": {"bot", "agent"}}),
				Default:   "anonymous",
				Signature: &config.ProxySignature{Window: config.Duration(time.Minute), MaxSeen: 2},
				Classes:   map[string]*config.ProxyClass{"agent": {}, "anonymous": {}},
			}
			h := mustStart(t, cfg, nil)
			h.p.SetBackend("web/0", backend(t, named("a")), true)
			c := client(t)
			now := time.Now()
			sig := func(path string) map[string]string {
				return map[string]string{"X-Medic-Signature": auth.Sign("bot", "a-secret", "GET", path, now)}
			}
			for _, p := range []string{"/1", "/2"} {
				if r := do(c, http.MethodGet, h.url+p, nil, sig(p)); r.status != 200 {
					t.Fatalf("%s: %d %q", p, r.status, r.body)
				}
			}
			r := do(c, http.MethodGet, h.url+"/3", nil, sig("/3"))
			if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "too many signed requests") || r.header.Get("Retry-After") == "" {
				t.Errorf("a third signature with max_seen 2: %d %q Retry-After %q; want 503 with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
			}
			if r := do(c, http.MethodGet, h.url+"/1", nil, sig("/1")); r.status != http.StatusUnauthorized {
				t.Errorf("a replay while full: %d %q, want 401", r.status, r.body)
			}
		})
	}
}
