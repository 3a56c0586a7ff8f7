package supervise

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/medic-dev/medic/internal/config"
)

// Resource limits (services.X.limits): each instance's memory and pids are
// bounded through cgroups. Where the unified (v2) hierarchy offers the memory
// and pids controllers to medic's cgroup, they are enabled in its
// cgroup.subtree_control and each instance cgroup gets memory.max and
// pids.max. cgroup v2's "no internal processes" rule forbids enabling a
// controller for the children of a cgroup that holds processes, so medic
// first moves the processes of its own cgroup (itself, and a self-supervisor
// sharing it) into a leaf child, <its cgroup>/agent, as systemd's delegation
// documentation asks. The root cgroup is exempt from the rule.
//
// Where v2 does not offer a controller (a hybrid host, where memory and pids
// are bound to v1 hierarchies), its v1 hierarchy is used instead:
// <mount>/<medic's v1 cgroup>/medic-<hash>/<instance run>. A v1 cgroup cannot
// be entered at clone as CLONE_INTO_CGROUP enters a v2 one, so the starting
// thread of medic (locked to its goroutine) joins the run's v1 cgroups just
// for the fork — the child inherits them before its first instruction — and
// goes back. The thread counts against pids.max for that moment: the limit is
// written one higher until the thread has left.
//
// A controller neither hierarchy offers makes a config that sets its limit
// refused, at start and at reload, with the reason.

// Limits of one instance; 0: no limit.
type Limits struct {
	Memory int64 // bytes: memory.max (v2), memory.limit_in_bytes (v1)
	Pids   int64 // pids.max
}

func (l Limits) set() bool { return l.Memory > 0 || l.Pids > 0 }

// limitControllers are the controllers limits need, in a stable order.
var limitControllers = []string{"memory", "pids"}

// v1Order is every v1 controller a run may use (limits, or tracking), in a
// stable order.
var v1Order = []string{"memory", "pids", "freezer"}

// limitPlan is how this host applies limits: each controller through v2
// (enabled for the instance cgroups), or through its v1 hierarchy, or not at
// all (why names the reason).
type limitPlan struct {
	v2  map[string]bool   // controller enabled in the unified tree
	v1  map[string]v1Tree // controller → its v1 tree
	why map[string]string // controller → why it cannot be used
	// track is the v1 controller whose hierarchy tracks every process of an
	// instance when cgroup v2 cannot be used (pids or freezer; "" when v2
	// tracks them, or nothing can: process groups then).
	track string
}

// v1Tree is this medic's parent group in one v1 hierarchy.
type v1Tree struct {
	mount string // e.g. /sys/fs/cgroup/memory
	own   string // medic's own cgroup in it, e.g. /process_api/x
	dir   string // <mount>/<own>/medic-<hash>
}

// chooseLimits decides, per controller, how limits are applied: v2 when the
// unified tree enabled it, else v1 when its hierarchy is usable, else not,
// with both reasons. It is a pure function of what was found on the host.
func chooseLimits(v2 []string, v2Why string, v1 map[string]v1Tree, v1Why map[string]string) limitPlan {
	p := limitPlan{v2: map[string]bool{}, v1: map[string]v1Tree{}, why: map[string]string{}}
	for _, c := range limitControllers {
		switch t, ok := v1[c]; {
		case slices.Contains(v2, c):
			p.v2[c] = true
		case ok:
			p.v1[c] = t
		default:
			why := v2Why
			if why == "" {
				why = "cgroup v2 does not offer the " + c + " controller"
			}
			if w := v1Why[c]; w != "" {
				why += "; " + w
			}
			p.why[c] = why
		}
	}
	return p
}

// refuse returns why l cannot be applied here (nil: it can).
func (p limitPlan) refuse(l Limits) error {
	var need []string
	if l.Memory > 0 {
		need = append(need, "memory")
	}
	if l.Pids > 0 {
		need = append(need, "pids")
	}
	var msgs []string
	for _, c := range need {
		if w := p.why[c]; w != "" {
			msgs = append(msgs, fmt.Sprintf("%s limit: %s", c, w))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

// summary says, once at start, how limits are applied.
func (p limitPlan) summary() (string, bool) {
	var parts []string
	ok := true
	for _, c := range limitControllers {
		switch {
		case p.v2[c]:
			parts = append(parts, c+": cgroup v2")
		case p.v1[c].dir != "":
			parts = append(parts, c+": cgroup v1 "+p.v1[c].dir)
		default:
			ok = false
			parts = append(parts, c+": unavailable ("+p.why[c]+")")
		}
	}
	return strings.Join(parts, "; "), ok
}

// planLimits finds how this host can apply limits, enabling the v2
// controllers in tree t (nil: no usable unified tree) on the way. key names
// this medic's groups in the v1 hierarchies, as in the v2 tree.
func planLimits(t *cgroupTree, treeErr error, name string, mode string) limitPlan {
	if mode == CgroupsNone {
		why := "cgroups are not used (cgroups: none)"
		return limitPlan{v2: map[string]bool{}, v1: map[string]v1Tree{}, why: map[string]string{"memory": why, "pids": why}}
	}
	p := planLimitsOf(t, treeErr, name)
	if t != nil {
		return p
	}
	usable := map[string]bool{}
	for c := range p.v1 {
		usable[c] = true
	}
	trees := map[string]v1Tree{}
	for _, c := range trackControllers {
		if usable[c] {
			continue
		}
		if tr, err := openV1Tree(c, name); err == nil {
			usable[c], trees[c] = true, tr
		}
	}
	p.track = chooseTracking(false, usable)
	if tr, ok := trees[p.track]; ok {
		p.v1[p.track] = tr
	}
	return p
}

// trackControllers are the v1 hierarchies that can track an instance's
// processes without v2, in order of preference: pids (a kill can first forbid
// every fork: pids.max 0), then freezer (freeze, kill, thaw).
var trackControllers = []string{"pids", "freezer"}

// chooseTracking decides how every process of an instance is tracked: "v2"
// (the unified hierarchy), else the first usable v1 hierarchy of
// trackControllers, else "" (process groups and the record of their ids).
func chooseTracking(v2 bool, v1 map[string]bool) string {
	if v2 {
		return "v2"
	}
	for _, c := range trackControllers {
		if v1[c] {
			return c
		}
	}
	return ""
}

func planLimitsOf(t *cgroupTree, treeErr error, name string) limitPlan {
	var v2 []string
	v2Why := ""
	if t == nil {
		v2Why = "cgroup v2 cannot be used"
		if treeErr != nil {
			v2Why += " (" + treeErr.Error() + ")"
		}
	} else {
		var err error
		v2, err = t.enableControllers(limitControllers)
		if err != nil {
			v2Why = err.Error()
		}
	}
	v1, v1Why := map[string]v1Tree{}, map[string]string{}
	for _, c := range limitControllers {
		if slices.Contains(v2, c) {
			continue
		}
		tr, err := openV1Tree(c, name)
		if err != nil {
			v1Why[c] = err.Error()
			continue
		}
		v1[c] = tr
	}
	return chooseLimits(v2, v2Why, v1, v1Why)
}

// enableControllers enables what it can of want for the instance cgroups
// under t and returns what is enabled; the error says why the rest is not.
func (t *cgroupTree) enableControllers(want []string) ([]string, error) {
	own := filepath.Dir(t.group)
	ownDir := filepath.Join(t.mount, own)
	avail := strings.Fields(readTrim(filepath.Join(ownDir, "cgroup.controllers")))
	var can []string
	for _, c := range want {
		if slices.Contains(avail, c) {
			can = append(can, c)
		}
	}
	if len(can) == 0 {
		return nil, fmt.Errorf("cgroup v2 does not offer %s to medic's cgroup %s (cgroup.controllers: %q): not delegated", strings.Join(want, " or "), own, strings.Join(avail, " "))
	}
	enabled := strings.Fields(readTrim(filepath.Join(ownDir, "cgroup.subtree_control")))
	var missing []string
	for _, c := range can {
		if !slices.Contains(enabled, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		if own != "/" {
			// No internal processes: move the processes of medic's own
			// cgroup into a leaf before enabling controllers for its children.
			if err := moveProcsToLeaf(ownDir, filepath.Join(ownDir, "agent")); err != nil {
				return nil, err
			}
		}
		if err := writeControl(filepath.Join(ownDir, "cgroup.subtree_control"), missing); err != nil {
			return nil, fmt.Errorf("enable %s in %s: %w", strings.Join(missing, " "), ownDir, err)
		}
	}
	t.controllers = can
	var err error
	if len(can) < len(want) {
		err = fmt.Errorf("cgroup v2 offers only %s to medic's cgroup %s", strings.Join(can, " "), own)
	}
	return can, err
}

// enableInTree enables the controllers in medic's parent group, for the
// instance cgroups (created again when the tree was removed).
func (t *cgroupTree) enableInTree() error {
	if len(t.controllers) == 0 {
		return nil
	}
	dir := filepath.Join(t.mount, t.group)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	have := strings.Fields(readTrim(filepath.Join(dir, "cgroup.subtree_control")))
	var missing []string
	for _, c := range t.controllers {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := writeControl(filepath.Join(dir, "cgroup.subtree_control"), missing); err != nil {
		return fmt.Errorf("enable %s in %s: %w", strings.Join(missing, " "), dir, err)
	}
	return nil
}

func writeControl(path string, ctrls []string) error {
	var b strings.Builder
	for i, c := range ctrls {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("+" + c)
	}
	return os.WriteFile(path, []byte(b.String()), 0)
}

// moveProcsToLeaf moves every process of from into the leaf to.
func moveProcsToLeaf(from, to string) error {
	if err := os.MkdirAll(to, 0o755); err != nil {
		return fmt.Errorf("create leaf cgroup %s for medic: %w", to, err)
	}
	for _, pid := range strings.Fields(readTrim(filepath.Join(from, "cgroup.procs"))) {
		if err := os.WriteFile(filepath.Join(to, "cgroup.procs"), []byte(pid), 0); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("move process %s into leaf cgroup %s: %w", pid, to, err)
		}
	}
	return nil
}

// openV1Tree finds the v1 hierarchy of controller c and medic's parent group
// in it, checking that it can be created.
func openV1Tree(c, name string) (v1Tree, error) {
	mount, err := v1Mount(c)
	if err != nil {
		return v1Tree{}, err
	}
	own, err := ownV1Cgroup(c)
	if err != nil {
		return v1Tree{}, err
	}
	t := v1Tree{mount: mount, own: own, dir: filepath.Join(mount, own, name)}
	_, statErr := os.Stat(t.dir)
	if err := os.MkdirAll(t.dir, 0o755); err != nil {
		return v1Tree{}, fmt.Errorf("cgroup v1 %s: create %s: %w", c, t.dir, err)
	}
	if statErr != nil {
		os.Remove(t.dir)
	}
	return t, nil
}

// v1Mount returns where the v1 hierarchy holding controller c is mounted.
func v1Mount(c string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || qf[0] != "cgroup" {
			continue
		}
		if slices.Contains(strings.Split(qf[2], ","), c) {
			return pf[4], nil
		}
	}
	return "", fmt.Errorf("no cgroup v1 hierarchy with the %s controller is mounted", c)
}

// ownV1Cgroup returns this process's cgroup in the v1 hierarchy of c.
func ownV1Cgroup(c string) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("read own cgroup: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && slices.Contains(strings.Split(f[1], ","), c) {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("this process is in no cgroup v1 %s hierarchy", c)
}

// limitRun is the limits of one run of an instance: values written to its v2
// cgroup, or its own cgroups in the v1 hierarchies.
type limitRun struct {
	lim     Limits
	v1      map[string]string // controller → the run's v1 cgroup dir
	v1Own   map[string]string // controller → medic's own v1 cgroup dir (where the starting thread returns)
	v2      *cgroup           // the run's v2 cgroup when memory is limited there
	oomBase int64             // oom_kill count when the run started (adopted: when taken over)
}

// openLimits creates the v1 cgroups of one run (v2 limits were written when
// its cgroup was created) and returns nil when no limit is set.
//
// With a v1 tracking hierarchy, every run gets a cgroup there, limits or not.
func (p limitPlan) open(name string, l Limits, cg *cgroup) (*limitRun, error) {
	if !l.set() && p.track == "" {
		return nil, nil
	}
	if err := p.refuse(l); err != nil {
		return nil, err
	}
	r := &limitRun{lim: l, v1: map[string]string{}, v1Own: map[string]string{}}
	if l.Memory > 0 && p.v2["memory"] {
		r.v2 = cg
	}
	for _, c := range v1Order {
		t, ok := p.v1[c]
		if !ok || c != p.track && (c == "memory" && l.Memory == 0 || c == "pids" && l.Pids == 0 || c == "freezer") {
			continue
		}
		dir := filepath.Join(t.dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			r.remove()
			return nil, fmt.Errorf("create cgroup v1 %s: %w", dir, err)
		}
		r.v1[c], r.v1Own[c] = dir, filepath.Join(t.mount, t.own)
		var err error
		switch {
		case c == "memory" && l.Memory > 0:
			err = os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(l.Memory, 10)), 0)
		case c == "pids" && l.Pids > 0:
			// One more while medic's starting thread is in it (see start).
			err = os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.FormatInt(l.Pids+1, 10)), 0)
		}
		if err != nil {
			r.remove()
			return nil, fmt.Errorf("set the %s limit in %s: %w", c, dir, err)
		}
	}
	r.oomBase = r.oomKills()
	return r, nil
}

// start runs fork (which starts the process) from a thread that is, for that
// moment, in the run's v1 cgroups, so the child is born in them.
func (r *limitRun) start(fork func() error) error {
	if r == nil || len(r.v1) == 0 {
		return fork()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		tid := []byte(strconv.Itoa(unix.Gettid()))
		var joined []string
		back := func() bool {
			ok := true
			for _, c := range joined {
				if err := os.WriteFile(filepath.Join(r.v1Own[c], "tasks"), tid, 0); err != nil {
					ok = false
				}
			}
			return ok
		}
		for _, c := range v1Order {
			dir, ok := r.v1[c]
			if !ok {
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, "tasks"), tid, 0); err != nil {
				if back() {
					runtime.UnlockOSThread()
				}
				errc <- fmt.Errorf("enter cgroup v1 %s to start the instance: %w", dir, err)
				return
			}
			joined = append(joined, c)
		}
		err := fork()
		if back() {
			// Otherwise the thread stays locked: the runtime ends it with
			// this goroutine, and it never runs anything of medic's again.
			runtime.UnlockOSThread()
		}
		if dir, ok := r.v1["pids"]; ok && r.lim.Pids > 0 {
			if werr := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.FormatInt(r.lim.Pids, 10)), 0); werr != nil && err == nil {
				err = fmt.Errorf("set the pids limit in %s: %w", dir, werr)
			}
		}
		errc <- err
	}()
	return <-errc
}

// oomKills returns how many processes of the run the OOM killer has killed
// (memory.events of v2, memory.oom_control of v1); -1 when unknown.
func (r *limitRun) oomKills() int64 {
	if r == nil {
		return -1
	}
	switch {
	case r.v2 != nil:
		return keyedValue(filepath.Join(r.v2.path(), "memory.events"), "oom_kill")
	case r.v1["memory"] != "":
		return keyedValue(filepath.Join(r.v1["memory"], "memory.oom_control"), "oom_kill")
	}
	return -1
}

// oomKilled reports whether the OOM killer killed a process of the run since
// it started, and how many.
func (r *limitRun) oomKilled() (int64, bool) {
	n := r.oomKills()
	if n < 0 || r.oomBase < 0 {
		return 0, false
	}
	return n - r.oomBase, n > r.oomBase
}

// pids lists the processes in the run's v1 cgroups.
func (r *limitRun) pids() []int {
	if r == nil {
		return nil
	}
	var out []int
	for _, dir := range r.v1 {
		out = append(out, v1Procs(dir)...)
	}
	return out
}

// remove kills whatever is left in the run's v1 cgroups and deletes them.
func (r *limitRun) remove() {
	if r == nil {
		return
	}
	for _, dir := range r.v1 {
		removeV1(dir)
	}
}

// v1Dirs are the run's v1 cgroups, for the record a next medic reaps.
func (r *limitRun) v1Dirs() []string {
	if r == nil {
		return nil
	}
	var out []string
	for _, c := range v1Order {
		if d := r.v1[c]; d != "" {
			out = append(out, d)
		}
	}
	return out
}

// removeV1 SIGKILLs every process of a v1 cgroup and removes it (a v1
// cgroup can only be removed once empty; SIGKILLed processes leave within
// milliseconds).
func removeV1(dir string) {
	// No fork gets in between: a pids cgroup allows none more, a freezer
	// cgroup is frozen (its SIGKILLed tasks die when thawed).
	freezer := false
	if len(v1Procs(dir)) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "pids.max")); err == nil {
			os.WriteFile(filepath.Join(dir, "pids.max"), []byte("0"), 0)
		}
		if _, err := os.Stat(filepath.Join(dir, "freezer.state")); err == nil {
			freezer = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("FROZEN"), 0) == nil
		}
	}
	for range 200 {
		ps := v1Procs(dir)
		if len(ps) == 0 {
			break
		}
		for _, pid := range ps {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if freezer {
			os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0)
			freezer = false
		}
		time.Sleep(5 * time.Millisecond)
	}
	os.Remove(dir)
}

func v1Procs(dir string) []int {
	var out []int
	for _, f := range strings.Fields(readTrim(filepath.Join(dir, "cgroup.procs"))) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// keyedValue reads "key N" from a flat keyed cgroup file; -1 when absent.
func keyedValue(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// check refuses a config whose limits this host cannot apply, naming the
// field and the reason.
func (p limitPlan) check(cfg *config.Config) error {
	if cfg == nil {
		return nil
	}
	var errs []error
	for _, name := range sortedServiceNames(cfg) {
		l := cfg.Services[name].Limits
		if !l.Set() {
			continue
		}
		if err := p.refuse(Limits{Memory: int64(l.Memory), Pids: int64(l.Pids)}); err != nil {
			errs = append(errs, fmt.Errorf("services.%s.limits: cannot be applied on this host: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// CheckLimits refuses a config (at reload) whose limits this host cannot apply.
func (s *Supervisor) CheckLimits(cfg *config.Config) error { return s.env.limits.check(cfg) }

func sortedServiceNames(cfg *config.Config) []string {
	names := make([]string, 0, len(cfg.Services))
	for n := range cfg.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// adoptLimits rebuilds the limits of an adopted run from its record; its
// OOM kills count from now.
func adoptLimits(rec procRecord, cg *cgroup, l Limits, plan limitPlan) *limitRun {
	if !l.set() && len(rec.V1) == 0 {
		return nil
	}
	r := &limitRun{lim: l, v1: map[string]string{}, v1Own: map[string]string{}}
	if plan.v2["memory"] && l.Memory > 0 {
		r.v2 = cg
	}
	for _, dir := range rec.V1 {
		for c, t := range plan.v1 {
			if strings.HasPrefix(dir, t.dir+"/") {
				r.v1[c], r.v1Own[c] = dir, filepath.Join(t.mount, t.own)
			}
		}
	}
	r.oomBase = r.oomKills()
	return r
}

// LimitSupport reports why this host cannot apply memory and pids limits
// (nil: it can), without changing anything: tests use it to skip with the
// reason.
func LimitSupport() error {
	return hostLimits("").refuse(Limits{Memory: 1, Pids: 1})
}

// CgroupV2LimitSupport reports why memory and pids limits cannot go through
// cgroup v2 here (nil: the unified hierarchy offers both controllers to
// medic's cgroup), without changing anything. On a hybrid host the
// controllers bound to a v1 hierarchy are never offered in v2: a controller
// is attached to one hierarchy at a time, and a private cgroup2 mount (even
// in a new mount and cgroup namespace) is the same hierarchy.
func CgroupV2LimitSupport() error {
	if err := CgroupSupport(); err != nil {
		return err
	}
	mount, err := cgroup2Mount()
	if err != nil {
		return err
	}
	own, err := ownCgroup()
	if err != nil {
		return err
	}
	offered := strings.Fields(readTrim(filepath.Join(mount, own, "cgroup.controllers")))
	var missing []string
	for _, c := range limitControllers {
		if !slices.Contains(offered, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cgroup v2 at %s offers %q to %s, not %s (bound to cgroup v1 hierarchies on this hybrid host?)",
			mount, strings.Join(offered, " "), own, strings.Join(missing, ", "))
	}
	return nil
}

// CheckHostLimits refuses a config whose limits this host cannot apply, as
// `medic run` and a reload would, without changing anything: `medic
// validate` uses it. mode is the cgroups choice (MEDIC_CGROUPS: auto, v1,
// none). Each error names the file, line and field (config.Errors).
func CheckHostLimits(cfg *config.Config, mode string) error {
	if cfg == nil {
		return nil
	}
	p := hostLimits(mode)
	var es config.Errors
	for _, name := range sortedServiceNames(cfg) {
		l := cfg.Services[name].Limits
		if !l.Set() {
			continue
		}
		if err := p.refuse(Limits{Memory: int64(l.Memory), Pids: int64(l.Pids)}); err != nil {
			es = append(es, cfg.ErrorAt("services."+name+".limits", "cannot be applied on this host: "+err.Error()))
		}
	}
	if len(es) == 0 {
		return nil
	}
	return es
}

// hostLimits is the plan medic would make here for mode, read without
// moving any process (a v1 hierarchy is probed by creating and removing an
// empty cgroup).
func hostLimits(mode string) limitPlan {
	if mode == CgroupsNone {
		return planLimits(nil, nil, "", mode)
	}
	var v2 []string
	v2Why := "cgroup v2 cannot be used"
	if mode == CgroupsV1 {
		v2Why += " (cgroups: v1)"
	} else if err := CgroupSupport(); err != nil {
		v2Why += " (" + err.Error() + ")"
	} else if mount, err := cgroup2Mount(); err == nil {
		if own, err := ownCgroup(); err == nil {
			v2 = strings.Fields(readTrim(filepath.Join(mount, own, "cgroup.controllers")))
			v2Why = fmt.Sprintf("cgroup v2 does not offer the controller to %s (cgroup.controllers: %q)", own, strings.Join(v2, " "))
		}
	}
	v1, v1Why := map[string]v1Tree{}, map[string]string{}
	for _, c := range limitControllers {
		t, err := openV1Tree(c, fmt.Sprintf("support-check-%d", os.Getpid()))
		if err != nil {
			v1Why[c] = err.Error()
			continue
		}
		v1[c] = t
	}
	return chooseLimits(v2, v2Why, v1, v1Why)
}

// V1TrackingSupport reports why no v1 hierarchy (pids, freezer) can track
// instances here (nil: one can).
func V1TrackingSupport() error {
	var errs []error
	for _, c := range trackControllers {
		if _, err := openV1Tree(c, fmt.Sprintf("support-check-%d", os.Getpid())); err == nil {
			return nil
		} else {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
