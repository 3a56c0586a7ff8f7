package app

import (
	"slices"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

// TestReloadKeepsDependencies: a reload never hands instances a dependency
// listener that is not running: changed, added and removed dependencies are
// put back to what the listeners serve, and the services are named.
func TestReloadKeepsDependencies(t *testing.T) {
	dep := func(listen string) map[string]*config.Dependency {
		return map[string]*config.Dependency{"pay": {URL: "http://10.0.0.1", Listen: listen}}
	}
	cur := &config.Config{Services: map[string]*config.Service{
		"same":    {Command: []string{"x"}, Dependencies: dep("127.0.0.1:9701")},
		"moved":   {Command: []string{"x"}, Dependencies: dep("127.0.0.1:9702")},
		"dropped": {Command: []string{"x"}, Dependencies: dep("127.0.0.1:9703")},
	}}
	next := &config.Config{Services: map[string]*config.Service{
		"same":    {Command: []string{"x"}, Dependencies: dep("127.0.0.1:9701")},
		"moved":   {Command: []string{"x"}, Dependencies: dep("127.0.0.1:9799")},
		"dropped": {Command: []string{"x"}},
		"new":     {Command: []string{"x"}, Dependencies: dep("127.0.0.1:9704")},
	}}
	kept := keepDependencies(cur, next)
	if !slices.Equal(kept, []string{"dropped", "moved", "new"}) {
		t.Fatalf("kept %v", kept)
	}
	if next.Services["moved"].Dependencies["pay"].Listen != "127.0.0.1:9702" || next.Services["dropped"].Dependencies == nil || next.Services["new"].Dependencies != nil {
		t.Fatalf("next after keep: moved %v, dropped %v, new %v", next.Services["moved"].Dependencies["pay"], next.Services["dropped"].Dependencies, next.Services["new"].Dependencies)
	}
}
