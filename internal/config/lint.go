package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Lint returns the findings in a valid config that are probably mistakes,
// sorted by position (positions are known for a config from Parse). None of
// them stops medic; `medic validate` and `medic run` print them.
//
//   - A liveness probe that checks the same thing as the readiness probe (the
//     same HTTP endpoint, or the same exec command): readiness usually covers
//     dependencies, and a dependency outage must not restart every instance.
//   - A liveness timeout not shorter than its period.
//   - More than one instance with min_available 0: a rolling restart may stop
//     them all at once.
//   - No services at all.
//
// Sections add their own warnings through SectionLinter.
func Lint(c *Config) []Warning {
	var ws []Warning
	warn := func(path, format string, args ...any) {
		e := c.src.errorAt(path, fmt.Sprintf(format, args...))
		ws = append(ws, Warning(*e))
	}
	if len(c.Services) == 0 {
		warn("services", "no services defined: medic has nothing to supervise")
	}
	for _, name := range sortedKeys(c.Services) {
		s, p := c.Services[name], "services."+name
		if s == nil {
			continue
		}
		live, ready := s.Probes.Liveness, s.Probes.Readiness
		if live != nil && ready != nil {
			if what := sameCheck(live, ready, s.Port); what != "" {
				warn(p+".probes.liveness", "checks the same %s as readiness: a dependency outage must not restart every instance; let liveness check only that the process itself works", what)
			}
		}
		if live != nil && live.Timeout > 0 && live.Timeout >= live.Period {
			warn(p+".probes.liveness.timeout", "%v is not shorter than the period (%v): a slow probe runs into the next one", live.Timeout, live.Period)
		}
		if m := s.MinAvailable; m != nil && *m == 0 && s.Instances > 1 {
			warn(p+".min_available", "is 0 with %d instances: a rolling restart may stop every instance at once", s.Instances)
		}
	}
	c.sectionWarnings(warn)
	slices.SortStableFunc(ws, func(a, b Warning) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col), cmp.Compare(a.Field, b.Field))
	})
	return ws
}

// sameCheck describes what two probes both check, or returns "" when they
// differ.
func sameCheck(a, b *Probe, servicePort int) string {
	port := func(p int) int {
		if p == 0 {
			return servicePort
		}
		return p
	}
	switch {
	case a.HTTP != nil && b.HTTP != nil:
		x, y := a.HTTP, b.HTTP
		if x.Path == y.Path && port(x.Port) == port(y.Port) && x.Host == y.Host {
			return fmt.Sprintf("endpoint (GET %s)", x.Path)
		}
	case a.Exec != nil && b.Exec != nil:
		if len(a.Exec.Command) > 0 && slices.Equal(a.Exec.Command, b.Exec.Command) {
			return fmt.Sprintf("command (%s)", strings.Join(a.Exec.Command, " "))
		}
	}
	return ""
}
