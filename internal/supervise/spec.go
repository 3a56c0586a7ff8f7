package supervise

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/medic-dev/medic/internal/backoff"
	"github.com/medic-dev/medic/internal/config"
)

// Resolve turns a service's config into one Spec per instance: ${PORT},
// ${INSTANCE}, ${SERVICE} and ${VAR} (service env, then medic's environment)
// are expanded in the command; relative paths are taken from baseDir.
func Resolve(name string, svc *config.Service, baseDir, logDir string) []Spec {
	jitter := 0.2
	if svc.Restart.Jitter != nil {
		jitter = *svc.Restart.Jitter
	}
	pol := backoff.Policy{
		Mode: backoff.Mode(svc.Restart.Policy), Initial: svc.Restart.Initial.D(), Multiplier: svc.Restart.Multiplier,
		Max: svc.Restart.Max.D(), Jitter: jitter, ResetAfter: svc.Restart.ResetAfter.D(),
		CrashLoopRestarts: svc.Restart.CrashLoop.Restarts, CrashLoopWindow: svc.Restart.CrashLoop.Window.D(),
	}
	if pol.Mode == "" {
		pol.Mode = backoff.Always
	}
	dir := svc.Dir
	if dir == "" {
		dir = baseDir
	} else if !filepath.IsAbs(dir) {
		dir = filepath.Join(baseDir, dir)
	}
	n := svc.Instances
	if n < 1 {
		n = 1
	}
	out := make([]Spec, 0, n)
	for i := 0; i < n; i++ {
		port := 0
		if svc.Port > 0 {
			port = svc.Port + i
		}
		vars := map[string]string{"PORT": strconv.Itoa(port), "INSTANCE": strconv.Itoa(i), "SERVICE": name}
		// Each dependency's listener, DEP_<NAME>_URL or _ADDR, so the instance (and its
		// command line, as ${DEP_<NAME>_URL}) calls out through medic; each flag's
		// value at start, FLAG_<NAME>.
		depKeys := make([]string, 0, len(svc.Dependencies))
		for dn, d := range svc.Dependencies {
			if d != nil {
				k := config.DependencyEnv(dn, d)
				vars[k] = config.DependencyEnvValue(d)
				depKeys = append(depKeys, k)
			}
		}
		for f, v := range svc.Flags {
			k := config.FlagEnv(f)
			vars[k] = strconv.FormatBool(v)
			depKeys = append(depKeys, k)
		}
		sort.Strings(depKeys)
		lookup := func(k string) string {
			if v, ok := vars[k]; ok {
				return v
			}
			if v, ok := svc.Env[k]; ok {
				return v
			}
			return os.Getenv(k)
		}
		argv := make([]string, len(svc.Command))
		for j, a := range svc.Command {
			argv[j] = expand(a, lookup)
		}
		env := os.Environ()
		inherited := len(env)
		keys := make([]string, 0, len(svc.Env))
		for k := range svc.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			env = append(env, k+"="+expand(svc.Env[k], lookup))
		}
		for _, k := range depKeys {
			env = append(env, k+"="+vars[k])
		}
		env = append(env, "PORT="+vars["PORT"], "MEDIC_SERVICE="+name, "MEDIC_INSTANCE="+name+"/"+vars["INSTANCE"])
		maxFiles := svc.Logs.MaxFiles
		var lim Limits
		if l := svc.Limits; l != nil {
			lim = Limits{Memory: int64(l.Memory), Pids: int64(l.Pids)}
		}
		out = append(out, Spec{
			Service: name, Index: i, Argv: argv, Env: env, Dir: dir, Port: port, Policy: pol,
			StopSignal: parseSignal(svc.Stop.Signal), Grace: svc.Stop.Grace.D(), Probes: svc.Probes, Notify: svc.Notify,
			LogPath: filepath.Join(logDir, name+"-"+strconv.Itoa(i)+".log"), LogMax: int64(svc.Logs.MaxSize), LogFiles: maxFiles,
			LogMode: os.FileMode(svc.Logs.FileMode()), Limits: lim,
			Hash: specHash(argv, env[inherited:], dir, port, lim),
		})
	}
	return out
}

// expand replaces ${NAME} (NAME of letters, digits and _) with lookup(NAME).
// Nothing else is touched: $x, $!, $$ and the rest reach the command as
// written, so shell snippets in `sh -c` commands keep working.
func expand(s string, lookup func(string) string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 || !isName(s[i+2:i+j]) {
			b.WriteString(s[:i+2])
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		b.WriteString(lookup(s[i+2 : i+j]))
		s = s[i+j+1:]
	}
}

func isName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// specHash names what an instance's process was started with — the command,
// the environment the config sets, the directory and the port; not medic's
// own environment — so that a next medic adopts a running process only if the
// config still asks for the same one.
//
// Limits count only when set, so the processes of a medic that knew no
// limits are adopted by one that does.
func specHash(argv, env []string, dir string, port int, lim Limits) string {
	var l *Limits
	if lim.set() {
		l = &lim
	}
	b, _ := json.Marshal(struct {
		Argv, Env []string
		Dir       string
		Port      int
		Limits    *Limits `json:",omitempty"`
	}{argv, env, dir, port, l})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
