package proxy_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
)

func writeKeys(t *testing.T, keys map[string][2]string) string {
	t.Helper()
	text := "keys:\n"
	for key, nc := range keys {
		text += fmt.Sprintf("  - {name: %s, class: %s, sha256: %s}\n", nc[0], nc[1], auth.Digest(key))
	}
	p := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestClientClassesIsolateHumans runs both data planes with real sockets: an
// agent class hammering without backoff is refused by its class rate, the
// humans are all served, and made-up keys share the default class's bucket.
func TestClientClassesIsolateHumans(t *testing.T) {
	for _, plane := range []string{config.ProxyDataPlaneFast, config.ProxyDataPlaneNetHTTP} {
		t.Run(plane, func(t *testing.T) {
			cfg := baseConfig()
			cfg.DataPlane = plane
			cfg.Shed.Enabled = boolp(true)
			one := 1.0
			cfg.Clients = &config.ProxyClients{
				KeysFile: writeKeys(t, map[string][2]string{"h-secret": {"web", "human"}, "a-secret": {"bot", "agent"}}),
				Default:  "anonymous",
				Classes: map[string]*config.ProxyClass{
					"human":     {Priority: 10, Share: &one, Rate: 1000},
					"agent":     {Priority: 1, Share: &one, Rate: 20, Burst: 20},
					"anonymous": {Rate: 2, Burst: 2},
				},
			}
			h := mustStart(t, cfg, nil)
			h.p.SetBackend("web/0", backend(t, named("a")), true)
			c := client(t)

			var agentOK, agentLimited atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; n < 5000; n++ { // bounded
						select {
						case <-stop:
							return
						default:
						}
						switch r := do(c, http.MethodGet, h.url+"/", nil, map[string]string{"X-API-Key": "a-secret"}); r.status {
						case 200:
							agentOK.Add(1)
						case 429:
							agentLimited.Add(1)
						}
					}
				}()
			}
			for i := range 50 {
				r := do(c, http.MethodGet, h.url+"/", nil, map[string]string{"Authorization": "Bearer h-secret"})
				if r.status != 200 {
					t.Fatalf("human request %d while the agent storms: %d %v", i, r.status, r.err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			close(stop)
			wg.Wait()
			if agentLimited.Load() == 0 || agentOK.Load() > 20+int64(20*10) {
				t.Fatalf("agent: %d served, %d limited", agentOK.Load(), agentLimited.Load())
			}
			spoofed := 0
			for i := range 20 {
				if r := do(c, http.MethodGet, h.url+"/", nil, map[string]string{"X-API-Key": fmt.Sprintf("made-up-%d", i)}); r.status == 200 {
					spoofed++
				}
			}
			if spoofed > 2+1 { // the default class's burst, plus what refills during the loop
				t.Fatalf("20 made-up keys: %d served, want the default class's burst of 2", spoofed)
			}
			st := h.p.Stats()
			byName := map[string]int{}
			for i, cs := range st.Classes {
				byName[cs.Name] = i
			}
			if hs := st.Classes[byName["human"]]; hs.Admitted != 50 || hs.RateLimited != 0 || hs.Shed != 0 {
				t.Fatalf("human stats %+v", hs)
			}
			if as := st.Classes[byName["agent"]]; as.RateLimited != uint64(agentLimited.Load()) {
				t.Fatalf("agent stats %+v, clients saw %d limited", as, agentLimited.Load())
			}
		})
	}
}

func TestClientKeysFileProblemsFailStart(t *testing.T) {
	cfg := baseConfig()
	cfg.Clients = &config.ProxyClients{
		KeysFile: writeKeys(t, map[string][2]string{"x": {"bot", "robots"}}),
		Classes:  map[string]*config.ProxyClass{"default": {}},
	}
	p, err := proxy.New(proxy.Options{Service: "web", Config: &cfg})
	if err == nil {
		p.Close()
		t.Fatal("keys naming an undefined class: started")
	}
	if !strings.Contains(err.Error(), "clients.keys_file") || !strings.Contains(err.Error(), "robots") {
		t.Fatalf("error does not say what is wrong: %v", err)
	}
}
