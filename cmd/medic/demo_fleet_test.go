package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

// TestDemoFleetHostsProbeTheirOwnInstances: in `medic demo --fleet` each
// host's instances of web are where that host's probes and proxy look for
// them (127.0.0.1 and the instance's port) and where the other hosts reach
// them (fleet.address and the port), and no two hosts' instances share an
// address, over every instance a host may run (demoFleetShare). With the
// instances on 127.0.0.N and one port block for all, h2's and h3's probes
// reached h1's instances: theirs were ready only while h1 ran the same
// index, and the placement waited forever for an assignment that gave
// them more than h1.
func TestDemoFleetHostsProbeTheirOwnInstances(t *testing.T) {
	blocks := []int{20000, 20000 + demoFleetShare, 20000 + 2*demoFleetShare}
	owner := map[string]string{}
	for n := 1; n <= 3; n++ {
		host := fmt.Sprintf("h%d", n)
		cfg, err := config.Parse(host+".yaml", []byte(demoFleetConfig(n, t.TempDir(), "/bin/medic",
			[]string{"127.0.0.1:2379"}, "19000", "19001", blocks[n-1])))
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		web := cfg.Services["web"]
		if web == nil || web.Fleet == nil || web.Probes.Readiness == nil || web.Probes.Liveness == nil {
			t.Fatalf("%s: no web with a fleet section and both probes", host)
		}
		if web.Fleet.MaxShare() != demoFleetShare {
			t.Fatalf("%s: web's largest share %d, the port block %d", host, web.Fleet.MaxShare(), demoFleetShare)
		}
		for i := range demoFleetShare {
			port := web.Port + i
			listen := strings.ReplaceAll(web.Command[len(web.Command)-1], "${PORT}", fmt.Sprint(port))
			local := fmt.Sprintf("127.0.0.1:%d", port) // internal/app/traffic.go: the proxy's own instances
			published := fmt.Sprintf("%s:%d", cfg.Fleet.Address, port)
			for role, p := range map[string]*config.Probe{"readiness": web.Probes.Readiness, "liveness": web.Probes.Liveness} {
				h, pp := p.HTTP.Host, p.HTTP.Port
				if h == "" {
					h = "127.0.0.1" // config.HTTPProbe.Host's default
				}
				if pp == 0 {
					pp = port
				}
				if probed := fmt.Sprintf("%s:%d", h, pp); probed != listen {
					t.Errorf("%s web/%d: listens on %s, its %s probe asks %s", host, i, listen, role, probed)
				}
			}
			if local != listen || published != listen {
				t.Errorf("%s web/%d: listens on %s; its proxy sends to %s, the others to %s", host, i, listen, local, published)
			}
			if o, ok := owner[listen]; ok {
				t.Errorf("%s web/%d and %s listen on %s", host, i, o, listen)
			}
			owner[listen] = fmt.Sprintf("%s web/%d", host, i)
		}
	}
}
