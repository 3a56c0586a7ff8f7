package supervise

import (
	"sort"

	"github.com/medic-dev/medic/internal/config"
)

// depOrder returns service names with every dependency before its dependents
// (config validation rejects cycles; any left are broken by name order).
func depOrder(svcs map[string]*config.Service) []string {
	names := make([]string, 0, len(svcs))
	for n := range svcs {
		names = append(names, n)
	}
	sort.Strings(names)
	seen := map[string]int{} // 0 new, 1 visiting, 2 done
	var out []string
	var visit func(string)
	visit = func(n string) {
		if seen[n] != 0 {
			return
		}
		seen[n] = 1
		if s := svcs[n]; s != nil {
			deps := append([]string(nil), s.DependsOn...)
			sort.Strings(deps)
			for _, d := range deps {
				if _, ok := svcs[d]; ok {
					visit(d)
				}
			}
		}
		seen[n] = 2
		out = append(out, n)
	}
	for _, n := range names {
		visit(n)
	}
	return out
}
