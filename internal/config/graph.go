package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// checkPortOverlap reports services whose port ranges overlap another
// service's or include the API's port: two instances would fight over one
// port and the loser would crash-loop. A service's range runs from port to
// port+n-1 where n is the larger of instances and remedy.max_instances:
// scaling out to max_instances must not land on the next service's ports.
func checkPortOverlap(ck *checker, c *Config) {
	type span struct {
		name     string
		lo, hi   int
		location string
		scaled   bool // the range reaches past instances to remedy.max_instances
		fleet    bool // ... to this host's largest fleet share
	}
	var spans []span
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if s == nil || s.Port <= 0 || s.Port > 65535 || s.Instances < 1 || s.Instances > maxInstances {
			continue
		}
		n := s.Instances
		if s.Remedy != nil && s.Remedy.MaxInstances > n && s.Remedy.MaxInstances <= maxInstances {
			n = s.Remedy.MaxInstances
		}
		fleet := false
		if s.Fleet != nil && s.Fleet.Instances >= 1 && s.Fleet.Instances <= maxInstances && s.Fleet.MaxShare() > n {
			n, fleet = s.Fleet.MaxShare(), true // this host's largest share of the fleet, with a rebalance's surge
		}
		spans = append(spans, span{name, s.Port, s.Port + n - 1, "services." + name + ".port", n > s.Instances, fleet})
	}
	_, apiPort, err := splitHostPort(c.API.Listen)
	for j, b := range spans {
		use := uses(b.lo, b.hi)
		if b.fleet {
			use = fmt.Sprintf("with this host's largest fleet share (%d, fleet.max_per_host or fleet.instances, +1 while rebalancing), instances use ports %d-%d", b.hi-b.lo+1, b.lo, b.hi)
		} else if b.scaled {
			use = fmt.Sprintf("scaled out to remedy.max_instances (%d), instances use ports %d-%d", b.hi-b.lo+1, b.lo, b.hi)
		}
		if err == nil && apiPort > 0 && b.lo <= apiPort && apiPort <= b.hi {
			ck.add(b.location, "%s, which include port %d of api.listen", use, apiPort)
		}
		for _, a := range spans[:j] {
			if a.lo <= b.hi && b.lo <= a.hi {
				ck.add(b.location, "%s, overlapping services.%s (%s)", use, a.name, portRange(a.lo, a.hi))
			}
		}
	}
}

func uses(lo, hi int) string {
	if lo == hi {
		return fmt.Sprintf("the instance uses port %d", lo)
	}
	return fmt.Sprintf("instances use ports %d-%d", lo, hi)
}

func portRange(lo, hi int) string {
	if lo == hi {
		return fmt.Sprintf("port %d", lo)
	}
	return fmt.Sprintf("ports %d-%d", lo, hi)
}

// checkCycles reports each dependency cycle once, at the depends_on entry of
// its alphabetically first service, with the whole path: a service in a cycle
// would wait forever for itself to become ready.
func checkCycles(ck *checker, services map[string]*Service) {
	const (
		unvisited = iota
		onStack
		done
	)
	state := map[string]int{}
	var stack []string
	reported := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		state[name] = onStack
		stack = append(stack, name)
		for _, dep := range services[name].DependsOn {
			if dep == name || services[dep] == nil {
				continue // reported by Service.validate
			}
			switch state[dep] {
			case unvisited:
				visit(dep)
			case onStack:
				cycle := slices.Clone(stack[slices.Index(stack, dep):])
				// Rotate so the cycle starts at its smallest name: the same
				// cycle found from another start is reported once.
				first := slices.Index(cycle, slices.Min(cycle))
				cycle = append(cycle[first:], cycle[:first]...)
				key := strings.Join(cycle, ">")
				if reported[key] {
					continue
				}
				reported[key] = true
				next := cycle[1%len(cycle)]
				at := slices.Index(services[cycle[0]].DependsOn, next)
				ck.add(fmt.Sprintf("services.%s.depends_on[%d]", cycle[0], at),
					"dependency cycle: %s -> %s", strings.Join(cycle, " -> "), cycle[0])
			}
		}
		stack = stack[:len(stack)-1]
		state[name] = done
	}
	for _, name := range sortedKeys(services) {
		if services[name] != nil && state[name] == unvisited {
			visit(name)
		}
	}
}

// sortedKeys returns the keys of m in order, for deterministic messages.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp.Compare[string])
	return keys
}

// suggest returns `; did you mean "x"?` for the closest of names, or "" when
// none is close: at most one edit per three characters.
func suggest(s string, names []string) string {
	if len(s) > 64 {
		return ""
	}
	best, bestDist := "", len(s)/3+1
	for _, n := range names {
		if d := editDistance(s, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}
