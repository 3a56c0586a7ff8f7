package config

// ResourceLimits bound what one instance (the process and every descendant)
// may use, through its cgroup: cgroup v2's memory.max and pids.max where the
// unified hierarchy has the controllers, else the v1 memory and pids
// hierarchies. Each instance gets the whole limit (it is not shared by the
// service's instances).
type ResourceLimits struct {
	// Memory the instance may use (RSS and page cache), e.g. 256MiB. At the limit the kernel's
	// OOM killer kills a process of the instance: medic reports the exit as oom_killed (event
	// instance.oom_killed) and restarts it by the restart policy. Default 0: no limit. At least 1MiB.
	Memory ByteSize `yaml:"memory" json:"memory,omitempty"`
	// Processes and threads the instance may have at once: a fork beyond it fails (EAGAIN), so a
	// fork bomb stays inside its instance. Default 0: no limit. At least 1.
	Pids int `yaml:"pids" json:"pids,omitempty" jsonschema:"minimum=0"`
}

// MinMemoryLimit is the smallest memory limit accepted: below it not even a
// shell starts.
const MinMemoryLimit = ByteSize(1 << 20)

func (l *ResourceLimits) validate(ck *checker, p string) {
	if l.Memory < 0 || l.Memory > 0 && l.Memory < MinMemoryLimit {
		ck.add(p+".memory", "must be at least 1MiB when set, got %d bytes", int64(l.Memory))
	}
	if l.Pids < 0 {
		ck.add(p+".pids", "must not be negative, got %d", l.Pids)
	}
}

// Set reports whether any limit is set.
func (l *ResourceLimits) Set() bool { return l != nil && (l.Memory > 0 || l.Pids > 0) }
