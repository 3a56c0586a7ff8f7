package supervise

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
)

// Cgroups: where the cgroup v2 unified hierarchy is mounted and writable,
// every instance runs in its own cgroup, born there (clone3 with
// CLONE_INTO_CGROUP), so that every descendant — forks, orphans whose parent
// died, setsid escapees that left the process group — is found in
// cgroup.procs and stopped with cgroup.kill. The tree is
//
//	<mount>/<medic's own cgroup>/medic-<hash of the state dir>/<service>.<index>
//
// so that two medics on one host (or in one test run) never share a cgroup,
// and a restarted medic with the same data_dir finds the cgroups of the last
// one. The cgroup of a running instance is recorded with its pid (processes.json),
// so a next medic started from another cgroup still finds it.
//
// Where cgroups cannot be used (no cgroup2 mount, not writable, not root),
// the supervisor says so once and falls back to process groups plus the
// persisted record of every group id with its start time.

// cgroupTree is the parent cgroup of this supervisor's instances.
type cgroupTree struct {
	mount       string   // where cgroup2 is mounted, e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified
	group       string   // the parent group relative to mount, starting with "/"
	controllers []string // enabled for the instance cgroups (limits.go): memory, pids
}

// cgroup is one instance's cgroup.
type cgroup struct {
	mount, group string
	m            *cgroup2.Manager
}

// openCgroupTree finds the unified hierarchy and creates the parent group of
// this supervisor (named after key: the state dir). The error says why
// cgroups cannot be used.
func openCgroupTree(key string) (*cgroupTree, error) {
	mount, err := cgroup2Mount()
	if err != nil {
		return nil, err
	}
	own, err := ownCgroup()
	if err != nil {
		return nil, err
	}
	t := &cgroupTree{mount: mount, group: filepath.Join(own, treeName(key))}
	// Check that it can be created; it is created again with the first
	// instance, so a supervisor that never starts one leaves nothing behind.
	dir := filepath.Join(mount, t.group)
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	if statErr != nil {
		os.Remove(dir)
	}
	return t, nil
}

// treeName names this medic's parent group (in v2 and in each v1 hierarchy)
// after key, the absolute state dir.
func treeName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "medic-" + hex.EncodeToString(sum[:4])
}

// instance creates the cgroup of one run of an instance, with the limits of
// l that the unified tree can apply (memory.max, pids.max).
func (t *cgroupTree) instance(name string, l Limits) (*cgroup, error) {
	group := t.group + "/" + name
	res := &cgroup2.Resources{}
	if slices.Contains(t.controllers, "memory") && l.Memory > 0 {
		res.Memory = &cgroup2.Memory{Max: &l.Memory}
	}
	if slices.Contains(t.controllers, "pids") && l.Pids > 0 {
		res.Pids = &cgroup2.Pids{Max: l.Pids}
	}
	if res.Memory != nil || res.Pids != nil {
		if err := t.enableInTree(); err != nil {
			return nil, err
		}
	}
	m, err := cgroup2.NewManager(t.mount, group, res)
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", group, err)
	}
	return &cgroup{mount: t.mount, group: group, m: m}, nil
}

// remove deletes the parent group with every empty cgroup left in it (a
// run's cgroup whose own removal failed): best effort, a populated cgroup
// stays, and a detached medic does not call it.
func (t *cgroupTree) remove() { removeEmptyTree(filepath.Join(t.mount, t.group)) }

// removeEmptyTree removes dir's empty child cgroups, then dir (rmdir: a
// cgroup that still holds a process, or a child, is left).
func removeEmptyTree(dir string) {
	if es, err := os.ReadDir(dir); err == nil {
		for _, e := range es {
			if e.IsDir() {
				removeEmptyTree(filepath.Join(dir, e.Name()))
			}
		}
	}
	os.Remove(dir)
}

// loadCgroup opens a recorded cgroup; it fails if the directory is gone.
func loadCgroup(mount, group string) (*cgroup, error) {
	if _, err := os.Stat(filepath.Join(mount, group, "cgroup.procs")); err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", group, err)
	}
	m, err := cgroup2.Load(group, cgroup2.WithMountpoint(mount))
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", group, err)
	}
	return &cgroup{mount: mount, group: group, m: m}, nil
}

func (c *cgroup) path() string { return filepath.Join(c.mount, c.group) }

// dir opens the cgroup directory, for SysProcAttr.CgroupFD.
func (c *cgroup) dir() (*os.File, error) {
	f, err := os.OpenFile(c.path(), os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup dir: %w", err)
	}
	return f, nil
}

// pids lists every process in the cgroup and its children.
func (c *cgroup) pids() []int {
	ps, err := c.m.Procs(true)
	if err != nil {
		return nil
	}
	out := make([]int, 0, len(ps))
	for _, p := range ps {
		out = append(out, int(p))
	}
	return out
}

// populated reports whether any process is left in the cgroup (cgroup.events).
func (c *cgroup) populated() bool {
	f, err := os.Open(filepath.Join(c.path(), "cgroup.events"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == "populated" {
			return v == "1"
		}
	}
	return len(c.pids()) > 0
}

// signal sends sig to every process of the cgroup (a stop signal reaches the
// setsid escapees too, as systemd's KillMode=control-group does).
func (c *cgroup) signal(sig syscall.Signal) {
	for _, pid := range c.pids() {
		syscall.Kill(pid, sig)
	}
}

// kill SIGKILLs every process of the cgroup (cgroup.kill, or freeze and kill
// each on kernels before 5.14) and waits up to wait for it to be empty.
func (c *cgroup) kill(wait time.Duration) error {
	if !c.populated() {
		return nil
	}
	if err := c.m.Kill(); err != nil {
		return fmt.Errorf("kill cgroup %s: %w", c.group, err)
	}
	if !c.waitEmpty(wait) {
		return fmt.Errorf("kill cgroup %s: still populated after %v", c.group, wait)
	}
	return nil
}

// waitEmpty polls cgroup.events until no process is left, at most d.
// Processes killed with SIGKILL leave within milliseconds.
func (c *cgroup) waitEmpty(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for c.populated() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// remove deletes the (empty) cgroup. The kernel may still count a process
// that was just reaped (rmdir answers EBUSY): it waits up to 2s for the
// cgroup to be empty and tries again.
func (c *cgroup) remove() error {
	err := c.m.Delete()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.waitEmpty(2 * time.Second)
		err = c.m.Delete()
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cgroup %s: %w", c.group, err)
	}
	return nil
}

// cgroup2Mount returns where the unified hierarchy is mounted (/proc/self/mountinfo).
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - cgroup2 cgroup2 rw
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) >= 5 && len(qf) >= 1 && qf[0] == "cgroup2" {
			found = append(found, pf[4])
		}
	}
	if len(found) == 0 {
		return "", errors.New("no cgroup2 (unified) hierarchy is mounted")
	}
	for _, m := range found {
		if m == "/sys/fs/cgroup" {
			return m, nil
		}
	}
	return found[0], nil
}

// ownCgroup returns this process's cgroup in the unified hierarchy ("0::/path").
func ownCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("read own cgroup: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			if p == "" || p[0] != '/' {
				return "", fmt.Errorf("own cgroup %q is not a path", p)
			}
			return p, nil
		}
	}
	return "", errors.New("no cgroup2 entry in /proc/self/cgroup")
}

// cgroupOf returns the unified-hierarchy cgroup of pid, or "".
func cgroupOf(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}

// CgroupSupport reports why this process cannot run instances in their own
// cgroups (nil: it can). Tests use it to skip with the reason.
func CgroupSupport() error {
	t, err := openCgroupTree(fmt.Sprintf("support-check-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err != nil {
		return err
	}
	t.remove()
	return nil
}
