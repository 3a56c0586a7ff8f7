package supervise

import (
	"slices"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

func TestExpandOnlyBracedNames(t *testing.T) {
	vars := map[string]string{"PORT": "9100", "INSTANCE": "2"}
	lookup := func(k string) string { return vars[k] }
	for in, want := range map[string]string{
		"127.0.0.1:${PORT}":            "127.0.0.1:9100",
		"sleep 1 & echo $! > pid":      "sleep 1 & echo $! > pid",
		"$PORT ${INSTANCE}${INSTANCE}": "$PORT 22",
		"${1bad} ${} ${PORT":           "${1bad} ${} ${PORT",
		"${MISSING}x":                  "x",
	} {
		if got := expand(in, lookup); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestResolveDependencyEnv: each instance gets its dependencies' listeners in
// DEP_<NAME>_URL / _ADDR, usable in the command line too.
func TestResolveDependencyEnv(t *testing.T) {
	svc := &config.Service{Command: []string{"app", "--pay=${DEP_PAY_NOW_URL}"}, Instances: 2, Flags: map[string]bool{"new-ui": true}, Dependencies: map[string]*config.Dependency{
		"pay-now": {URL: "https://pay.example", Listen: "127.0.0.1:9701"},
		"db":      {Address: "10.0.0.5:5432", Listen: "127.0.0.1:9702"},
	}}
	specs := Resolve("shop", svc, "/", "/tmp")
	for _, s := range specs {
		if s.Argv[1] != "--pay=http://127.0.0.1:9701" {
			t.Errorf("argv %q", s.Argv)
		}
		if !slices.Contains(s.Env, "DEP_PAY_NOW_URL=http://127.0.0.1:9701") || !slices.Contains(s.Env, "DEP_DB_ADDR=127.0.0.1:9702") || !slices.Contains(s.Env, "FLAG_NEW_UI=true") {
			t.Errorf("instance %d env lacks the dependency listeners: %q", s.Index, s.Env[len(s.Env)-6:])
		}
	}
}
