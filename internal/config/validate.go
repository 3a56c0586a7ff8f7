package config

import (
	"fmt"
	"math"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	maxInstances = 1000
	// minPeriod is the shortest probe period and watchdog interval: below
	// it a probe is a load test of the service (consul's MinInterval: "we
	// risk fork bombing a system").
	minPeriod = 100 * time.Millisecond
)

var (
	serviceName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	envName     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	headerName  = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
	// reservedEnv are set by medic for every instance (see Service.Env).
	reservedEnv = []string{"PORT", "MEDIC_INSTANCE", "MEDIC_SERVICE"}
	signals     = []string{"TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "KILL"}
	policies    = []string{"always", "on-failure", "never"}
)

// Validate checks the semantic rules of a config with defaults applied:
// value ranges, enums, probe shapes, port ranges that must not overlap,
// dependencies that must exist and not form a cycle; then it runs the checks
// of every section that has them (SectionValidator, SectionRefValidator).
// It returns nil or Errors; for a config from Parse each Error carries the
// position of the offending field (or of its parent when the field is
// missing), for one built in code only the field path.
func (c *Config) Validate() error {
	if errs := c.validate(); len(errs) > 0 {
		return sortErrors(errs)
	}
	return nil
}

// checker collects problems by field path. Problems under a path that failed
// to decode are dropped: the decode error already names it.
type checker struct {
	src  *source
	errs Errors
}

func (ck *checker) add(path, format string, args ...any) {
	if ck.src.underBad(path) {
		return
	}
	ck.errs = append(ck.errs, ck.src.errorAt(path, fmt.Sprintf(format, args...)))
}

func (c *Config) validate() Errors {
	ck := &checker{src: c.src}
	if c.DataDir == "" {
		ck.add("data_dir", "must not be empty")
	}
	c.API.validate(ck)
	names := sortedKeys(c.Services)
	for _, name := range names {
		p := "services." + name
		if !serviceName.MatchString(name) {
			ck.add(p, "invalid service name %q: use lowercase letters, digits, - and _, starting with a letter or digit", name)
		}
		if s := c.Services[name]; s != nil {
			s.validate(ck, p, c.Services)
			if s.Fleet != nil {
				s.Fleet.validate(ck, p+".fleet", c)
			}
		}
	}
	checkPortOverlap(ck, c)
	checkCycles(ck, c.Services)
	c.sectionIssues(ck)
	return ck.errs
}

func (a *API) validate(ck *checker) {
	host, _, err := splitHostPort(a.Listen)
	if err != nil {
		ck.add("api.listen", "%v", err)
		return
	}
	if a.TokensFile == "" && !isLoopback(host) {
		ck.add("api.listen", "%q is not a loopback address: without api.tokens_file anyone who can reach it could read the status; set tokens_file or listen on 127.0.0.1", a.Listen)
	}
	if ck.src.set("api.socket") && a.Socket != SocketOff && len(a.Socket) > maxSocketPath {
		ck.add("api.socket", "%s is %d bytes; a unix socket path may not exceed %d", a.Socket, len(a.Socket), maxSocketPath)
	}
	if _, ok := a.SocketFileMode(); !ok {
		ck.add("api.socket_mode", "%q: want \"0600\" (the agent's user and root) or \"0660\" (its group too); others never get the admin socket", a.SocketMode)
	}
}

// maxSocketPath is the longest unix socket path (adminsock.MaxPath).
const maxSocketPath = 107

// SocketPath is the admin socket's path, or "" when it is off.
func (a API) SocketPath() string {
	if a.Socket == SocketOff {
		return ""
	}
	return a.Socket
}

// SocketFileMode is the parsed socket_mode (0600 when unset); false when it
// is not one of the two allowed.
func (a API) SocketFileMode() (uint32, bool) {
	switch a.SocketMode {
	case "", "0600", "600":
		return 0o600, true
	case "0660", "660":
		return 0o660, true
	}
	return 0o600, false
}

// splitHostPort checks a listen address "host:port" (port 0 picks a free one).
func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port such as 127.0.0.1:7070, got %q", addr)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port of %q must be a number from 0 to 65535", addr)
	}
	return host, port, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Service) validate(ck *checker, p string, all map[string]*Service) {
	if len(s.Command) == 0 {
		ck.add(p+".command", "required: the program and its arguments, e.g. [./web, --port, \"${PORT}\"]")
	} else if s.Command[0] == "" {
		ck.add(p+".command[0]", "the program must not be empty")
	}
	for _, k := range sortedKeys(s.Env) {
		switch {
		case !envName.MatchString(k):
			ck.add(p+".env."+k, "invalid variable name %q: use letters, digits and _, not starting with a digit", k)
		case slices.Contains(reservedEnv, k):
			ck.add(p+".env."+k, "%s is set by medic for each instance and cannot be overridden", k)
		}
	}
	if s.Instances < 1 {
		ck.add(p+".instances", "must be at least 1, got %d", s.Instances)
	} else if s.Instances > maxInstances {
		ck.add(p+".instances", "must be at most %d, got %d", maxInstances, s.Instances)
	}
	if s.Port < 0 || s.Port > 65535 {
		ck.add(p+".port", "must be 0 (no port) or from 1 to 65535, got %d", s.Port)
	} else if last := s.Port + s.Instances - 1; s.Port > 0 && s.Instances > 1 && last > 65535 {
		ck.add(p+".port", "instances use ports %d-%d, beyond 65535", s.Port, last)
	}
	s.Restart.validate(ck, p+".restart")
	if s.Deploy != nil {
		s.Deploy.validate(ck, p+".deploy", s)
	}
	s.validateDependencies(ck, p)
	if !slices.Contains(signals, s.Stop.Signal) {
		ck.add(p+".stop.signal", "must be one of %s, got %q", strings.Join(signals, ", "), s.Stop.Signal)
	}
	if s.Stop.Grace < 0 {
		ck.add(p+".stop.grace", "must not be negative")
	}
	for _, role := range []string{"startup", "liveness", "readiness"} {
		if pr := s.Probes.all()[role]; pr != nil {
			pr.validate(ck, p+".probes."+role, role, s.Port)
		}
	}
	name := p[len("services."):]
	seen := map[string]bool{}
	for i, dep := range s.DependsOn {
		dp := fmt.Sprintf("%s.depends_on[%d]", p, i)
		switch {
		case dep == name:
			ck.add(dp, "a service cannot depend on itself")
		case all[dep] == nil:
			ck.add(dp, "unknown service %q%s", dep, suggest(dep, sortedKeys(all)))
		case seen[dep]:
			ck.add(dp, "%q is listed twice", dep)
		}
		seen[dep] = true
	}
	if m := s.MinAvailable; m != nil {
		if *m < 0 {
			ck.add(p+".min_available", "must not be negative, got %d", *m)
		} else if *m > s.Instances && s.Instances >= 1 {
			ck.add(p+".min_available", "must not exceed instances (%d), got %d", s.Instances, *m)
		}
	}
	if n := s.Notify; n != nil && n.Watchdog > 0 && n.Watchdog.D() < minPeriod {
		ck.add(p+".notify.watchdog", "must be at least %v when set, got %v", minPeriod, n.Watchdog)
	}
	if s.Logs.MaxSize <= 0 {
		ck.add(p+".logs.max_size", "must be greater than 0")
	}
	if m := s.Logs.Mode; m != "" && (len(m) < 3 || len(m) > 4 || strings.Trim(m, "01234567") != "" || len(m) == 4 && m[0] != '0') {
		ck.add(p+".logs.mode", "want an octal file mode such as 0640, got %q", m)
	} else if s.Logs.FileMode()&0o002 != 0 {
		ck.add(p+".logs.mode", "%s lets anyone write the instance's log; drop the others' write bit", m)
	}
	if s.Logs.MaxFiles < 0 {
		ck.add(p+".logs.max_files", "must not be negative, got %d", s.Logs.MaxFiles)
	}
	if l := s.Limits; l != nil {
		l.validate(ck, p+".limits")
	}
}

func (r *Restart) validate(ck *checker, p string) {
	if !slices.Contains(policies, r.Policy) {
		ck.add(p+".policy", "must be one of %s, got %q", strings.Join(policies, ", "), r.Policy)
	}
	if r.Initial <= 0 {
		ck.add(p+".initial", "must be greater than 0")
	}
	if r.Multiplier < 1 || math.IsNaN(r.Multiplier) {
		ck.add(p+".multiplier", "must be at least 1, got %v", r.Multiplier)
	}
	if r.Max < r.Initial {
		ck.add(p+".max", "must not be less than initial (%v), got %v", r.Initial, r.Max)
	}
	if j := r.Jitter; j != nil && !(*j >= 0 && *j <= 1) {
		ck.add(p+".jitter", "must be between 0 and 1, got %v", *j)
	}
	if r.ResetAfter <= 0 {
		ck.add(p+".reset_after", "must be greater than 0")
	}
	if r.CrashLoop.Restarts < 1 {
		ck.add(p+".crash_loop.restarts", "must be at least 1, got %d", r.CrashLoop.Restarts)
	}
	if r.CrashLoop.Window <= 0 {
		ck.add(p+".crash_loop.window", "must be greater than 0")
	}
}

func (pr *Probe) validate(ck *checker, p, role string, servicePort int) {
	var kinds []string
	for _, k := range []struct {
		name string
		set  bool
	}{{"http", pr.HTTP != nil}, {"tcp", pr.TCP != nil}, {"exec", pr.Exec != nil}, {"grpc", pr.GRPC != nil}} {
		if k.set {
			kinds = append(kinds, k.name)
		}
	}
	switch len(kinds) {
	case 0:
		ck.add(p, "set exactly one of http, tcp, exec, grpc")
	case 1:
	default:
		ck.add(p, "sets %s; set exactly one of http, tcp, exec, grpc", strings.Join(kinds, " and "))
	}
	if h := pr.HTTP; h != nil {
		checkProbePort(ck, p+".http", h.Port, servicePort)
		if !strings.HasPrefix(h.Path, "/") {
			ck.add(p+".http.path", "must start with /, got %q", h.Path)
		}
		if h.Host == "" {
			ck.add(p+".http.host", "must not be empty")
		}
		if h.Scheme != "http" && h.Scheme != "https" {
			ck.add(p+".http.scheme", "must be http or https, got %q", h.Scheme)
		}
		if err := checkStatus(h.Status); err != "" {
			ck.add(p+".http.status", "%s", err)
		}
		for _, k := range sortedKeys(h.Headers) {
			if !headerName.MatchString(k) {
				ck.add(p+".http.headers."+k, "invalid header name %q", k)
			}
		}
	}
	if t := pr.TCP; t != nil {
		checkProbePort(ck, p+".tcp", t.Port, servicePort)
		if t.Host == "" {
			ck.add(p+".tcp.host", "must not be empty")
		}
	}
	if e := pr.Exec; e != nil {
		if len(e.Command) == 0 {
			ck.add(p+".exec.command", "required: the program and its arguments")
		} else if e.Command[0] == "" {
			ck.add(p+".exec.command[0]", "the program must not be empty")
		}
	}
	if g := pr.GRPC; g != nil {
		checkProbePort(ck, p+".grpc", g.Port, servicePort)
		if g.Host == "" {
			ck.add(p+".grpc.host", "must not be empty")
		}
	}
	if pr.Period < Duration(minPeriod) {
		ck.add(p+".period", "must be at least %v, got %v", minPeriod, pr.Period)
	}
	if pr.Timeout <= 0 {
		ck.add(p+".timeout", "must be greater than 0")
	} else if pr.Timeout > pr.Period && pr.Period >= Duration(minPeriod) {
		ck.add(p+".timeout", "must not exceed period (%v), got %v", pr.Period, pr.Timeout)
	}
	if pr.SuccessThreshold < 1 {
		ck.add(p+".success_threshold", "must be at least 1, got %d", pr.SuccessThreshold)
	} else if pr.SuccessThreshold != 1 && role != "readiness" {
		ck.add(p+".success_threshold", "must be 1 for a %s probe (as in Kubernetes), got %d", role, pr.SuccessThreshold)
	}
	if pr.FailureThreshold < 1 {
		ck.add(p+".failure_threshold", "must be at least 1, got %d", pr.FailureThreshold)
	}
}

func checkProbePort(ck *checker, p string, port, servicePort int) {
	switch {
	case port < 0 || port > 65535:
		ck.add(p+".port", "must be from 1 to 65535, got %d", port)
	case port == 0 && servicePort == 0:
		ck.add(p+".port", "required: the service has no port to default to")
	}
}

// checkStatus returns what is wrong with an accepted-status range, or "".
func checkStatus(s string) string {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err1 := strconv.Atoi(lo)
	b, err2 := a, error(nil)
	if isRange {
		b, err2 = strconv.Atoi(hi)
	}
	if err1 != nil || err2 != nil || a < 100 || b > 599 || a > b {
		return fmt.Sprintf("want LO-HI with 100 <= LO <= HI <= 599 (e.g. 200-399) or one code, got %q", s)
	}
	return ""
}
