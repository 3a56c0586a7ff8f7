package config

import (
	"path/filepath"
	"time"
)

// The defaults, documented on the fields in types.go and in docs/config.md.
const (
	DefaultDataDir   = "./.medic"
	DefaultAPIListen = "127.0.0.1:7070"
	DefaultHost      = "127.0.0.1"
	DefaultStatus    = "200-399"
	DefaultLogSize   = ByteSize(10 << 20)
	DefaultLogFiles  = 3
	DefaultLogMode   = 0o640
	// DefaultSocketName is the admin socket's file in data_dir (api.socket).
	DefaultSocketName = "medic.sock"
	// SocketOff as api.socket serves no admin socket.
	SocketOff     = "none"
	DefaultJitter = 0.2
	// DefaultProbeTimeout is a probe's timeout when none is set, capped at
	// its period.
	DefaultProbeTimeout = time.Second
)

// Default returns a config with no services and every default applied.
func Default() *Config {
	c := &Config{}
	c.SetDefaults()
	return c
}

// SetDefaults fills every field left unset with its default, and makes the
// relative paths (data_dir, api.tokens_file, services.*.dir) absolute against
// the directory of c.Path when c.Path is set. A field is unset when it holds
// its zero value — except in a config from Parse, where a value written in
// the file is kept even when it is zero ("instances: 0" stays 0 and fails
// validation instead of quietly becoming 1). Then the SetDefaults method of
// every section that has one runs (see SectionDefaulter). SetDefaults is
// idempotent.
func (c *Config) SetDefaults() {
	d := filler{src: c.src}
	d.str("data_dir", &c.DataDir, DefaultDataDir)
	d.str("api.listen", &c.API.Listen, DefaultAPIListen)
	c.API.Limits.SetDefaults(DefaultAPILimits)
	base := ""
	if c.Path != "" {
		if abs, err := filepath.Abs(filepath.Dir(c.Path)); err == nil {
			base = abs
		}
	}
	c.DataDir = resolve(base, c.DataDir)
	switch c.API.Socket {
	case "":
		c.API.Socket = filepath.Join(c.DataDir, DefaultSocketName)
	case SocketOff:
	default:
		c.API.Socket = resolve(base, c.API.Socket)
	}
	d.str("api.socket_mode", &c.API.SocketMode, "0600")
	if c.API.TokensFile != "" {
		c.API.TokensFile = resolve(base, c.API.TokensFile)
	}
	for name, s := range c.Services {
		if s == nil {
			s = &Service{}
			c.Services[name] = s
		}
		s.setDefaults(d, "services."+name, base)
	}
	c.addBackupConditions() // before the sections' defaults, which fill theirs
	c.sectionDefaults()
}

func (s *Service) setDefaults(d filler, p, base string) {
	if s.Dir == "" {
		s.Dir = base
	} else {
		s.Dir = resolve(base, s.Dir)
	}
	d.int(p+".instances", &s.Instances, 1)
	r := &s.Restart
	d.str(p+".restart.policy", &r.Policy, "always")
	d.dur(p+".restart.initial", &r.Initial, time.Second)
	d.float(p+".restart.multiplier", &r.Multiplier, 2)
	d.dur(p+".restart.max", &r.Max, 5*time.Minute)
	if r.Jitter == nil {
		j := DefaultJitter
		r.Jitter = &j
	}
	d.dur(p+".restart.reset_after", &r.ResetAfter, 10*time.Minute)
	d.int(p+".restart.crash_loop.restarts", &r.CrashLoop.Restarts, 5)
	d.dur(p+".restart.crash_loop.window", &r.CrashLoop.Window, time.Minute)
	d.str(p+".stop.signal", &s.Stop.Signal, "TERM")
	d.dur(p+".stop.grace", &s.Stop.Grace, 10*time.Second)
	for role, pr := range s.Probes.all() {
		if pr != nil {
			pr.setDefaults(d, p+".probes."+role)
		}
	}
	if s.MinAvailable == nil {
		m := max(s.Instances-1, 0)
		s.MinAvailable = &m
	}
	if s.Proxy != nil && s.Proxy.Clients != nil && s.Proxy.Clients.KeysFile != "" {
		s.Proxy.Clients.KeysFile = resolve(base, s.Proxy.Clients.KeysFile)
	}
	for _, dep := range s.Dependencies {
		if dep != nil && dep.Fallback != nil && dep.Fallback.File != "" {
			dep.Fallback.File = resolve(base, dep.Fallback.File)
		}
	}
	d.bytes(p+".logs.max_size", &s.Logs.MaxSize, DefaultLogSize)
	d.int(p+".logs.max_files", &s.Logs.MaxFiles, DefaultLogFiles)
	d.str(p+".logs.mode", &s.Logs.Mode, "0640")
}

func (pr *Probe) setDefaults(d filler, p string) {
	d.dur(p+".period", &pr.Period, 10*time.Second)
	// A default must never make a valid-looking probe invalid: with
	// period: 500ms the timeout defaults to the period (Kubernetes users
	// write short periods without a timeout).
	d.dur(p+".timeout", &pr.Timeout, min(DefaultProbeTimeout, pr.Period.D()))
	d.int(p+".success_threshold", &pr.SuccessThreshold, 1)
	d.int(p+".failure_threshold", &pr.FailureThreshold, 3)
	if h := pr.HTTP; h != nil {
		d.str(p+".http.path", &h.Path, "/")
		d.str(p+".http.host", &h.Host, DefaultHost)
		d.str(p+".http.scheme", &h.Scheme, "http")
		d.str(p+".http.status", &h.Status, DefaultStatus)
	}
	if t := pr.TCP; t != nil {
		d.str(p+".tcp.host", &t.Host, DefaultHost)
	}
	if g := pr.GRPC; g != nil {
		d.str(p+".grpc.host", &g.Host, DefaultHost)
	}
}

// all returns the probes by role name, nil ones included.
func (ps *Probes) all() map[string]*Probe {
	return map[string]*Probe{"startup": ps.Startup, "liveness": ps.Liveness, "readiness": ps.Readiness}
}

// filler sets a field to its default when it is zero and was not written
// in the file.
type filler struct{ src *source }

func (d filler) str(path string, v *string, def string) {
	if *v == "" && !d.src.set(path) {
		*v = def
	}
}

func (d filler) int(path string, v *int, def int) {
	if *v == 0 && !d.src.set(path) {
		*v = def
	}
}

func (d filler) float(path string, v *float64, def float64) {
	if *v == 0 && !d.src.set(path) {
		*v = def
	}
}

func (d filler) dur(path string, v *Duration, def time.Duration) {
	if *v == 0 && !d.src.set(path) {
		*v = Duration(def)
	}
}

func (d filler) bytes(path string, v *ByteSize, def ByteSize) {
	if *v == 0 && !d.src.set(path) {
		*v = def
	}
}

// resolve makes p absolute against base, unless p is absolute or base unknown.
func resolve(base, p string) string {
	if p == "" || base == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}
