package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/medic-dev/medic"
)

// Ownership across medic's lifetimes: a medic owns the processes it started
// and records each (pid, start time, cgroup, spec hash) in processes.json in
// the data dir. When it dies (crash, SIGKILL, upgrade) the processes keep
// running: their output goes straight to their log files, their cgroups are
// not medic's. The next medic on the same data dir reads the record and, for
// each configured instance, adopts the recorded process if it is the same one
// (pidfd opened, then the start time checked: a recycled pid is never
// adopted) and the config still asks for the same command, environment,
// directory and port; otherwise it stops what is left of it (every process of
// its cgroup) within the instance's grace and starts a new one. Recorded
// instances that are no longer configured are stopped in parallel, each
// within its grace. Every adoption and every stop is an audited event with
// its reason.

// adoption is a process a previous medic started, verified and taken over.
type adoption struct {
	p      *process
	rec    procRecord
	reason string
}

// tryAdopt verifies the recorded process of this instance and takes it over;
// it returns nil (after stopping whatever was left of the old run) when the
// instance must be started anew.
func (in *Instance) tryAdopt(ctx context.Context, rec procRecord) *adoption {
	var cg *cgroup
	if rec.Group != "" {
		if c, err := loadCgroup(rec.Mount, rec.Group); err == nil {
			cg = c
		}
	}
	leftover := func(why string) *adoption {
		line := reapOne(in.id.String(), rec, in.spec.Grace)
		if in.env.procs != nil {
			in.env.procs.exited(in.id.String())
		}
		if line != "" {
			in.env.Logger.Warn(line, "why", why)
			in.emit(ctx, medic.EventLeftover, fmt.Sprintf("not adopted (%s): %s", why, line), map[string]string{"pid": strconv.Itoa(rec.PGID)})
		}
		return nil
	}
	if rec.Spec == "" || rec.Spec != in.spec.Hash {
		return leftover("the config asks for another command, environment, directory or port")
	}
	p, err := adoptProcess(rec.PGID, rec.Start, cg, in.env.Clock.Now)
	if err != nil {
		if !errors.Is(err, errNotSame) {
			in.env.Logger.Warn("adopt", "instance", in.id, "err", err)
		}
		return leftover("the recorded process is gone")
	}
	if cg != nil {
		in.cg = cg
	}
	p.lr = adoptLimits(rec, cg, in.spec.Limits, in.env.limits)
	up := in.env.Clock.Now().Sub(rec.StartedAt).Round(time.Millisecond)
	return &adoption{p: p, rec: rec, reason: fmt.Sprintf("adopted pid %d left running by a previous medic: same process (pidfd, start time) and same config; up %v", rec.PGID, up)}
}

// adoptOrReap hands each configured instance the record of its last run and
// stops, in parallel, the recorded instances that are no longer configured
// and any process in this medic's cgroups that belongs to none of them.
func (s *Supervisor) adoptOrReap(ctx context.Context) {
	recs := s.procs.load()
	configured := map[string]*Instance{}
	for _, in := range s.Instances() {
		configured[in.id.String()] = in
	}
	orphans, keep := map[string]procRecord{}, map[string]bool{}
	for id, r := range recs {
		if in := configured[id]; in != nil {
			r := r
			in.adopt = &r
			keep[r.Group] = true
			for _, d := range r.V1 {
				keep[d] = true
			}
			continue
		}
		orphans[id] = r
	}
	lines := s.procs.reapRecords(orphans, 10*time.Second)
	lines = append(lines, s.sweepCgroups(keep)...)
	// A previous medic on this data dir started from other cgroups (from a
	// shell, then under systemd) made its trees there: each run cgroup in
	// them is adopted or reaped like one of ours, and the trees, once
	// empty, are removed now (what was reaped) and at shutdown (what was
	// adopted), instead of staying empty for good.
	s.oldTrees = s.foreignTrees(recs)
	for _, d := range s.oldTrees {
		removeEmptyTree(d)
	}
	for _, line := range lines {
		s.env.Logger.Warn(line)
		if s.env.Emit != nil {
			id, _, _ := strings.Cut(line, ":")
			s.env.Emit(ctx, medic.Event{Time: s.env.Clock.Now(), Kind: medic.EventLeftover, Target: id, Actor: "supervisor",
				Reason: line + "; it belongs to no configured instance"})
		}
	}
}

// sweepCgroups kills, in parallel, the processes of every cgroup under this
// medic's parent group that is not the recorded cgroup of a configured
// instance (a crashed medic that could not write its record leaves them),
// and removes the cgroups.
func (s *Supervisor) sweepCgroups(keep map[string]bool) []string {
	t := s.env.cgroups
	var ents []os.DirEntry
	if t != nil {
		ents, _ = os.ReadDir(filepath.Join(t.mount, t.group))
	}
	var (
		mu  sync.Mutex
		out []string
		wg  sync.WaitGroup
	)
	for _, e := range ents {
		group := t.group + "/" + e.Name()
		if !e.IsDir() || keep[group] {
			continue
		}
		cg, err := loadCgroup(t.mount, group)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := len(cg.pids())
			if n > 0 {
				cg.kill(time.Second)
				mu.Lock()
				out = append(out, fmt.Sprintf("%s: killed %d unrecorded processes of cgroup %s", e.Name(), n, cg.group))
				mu.Unlock()
			}
			cg.remove()
		}()
	}
	wg.Wait()
	for _, c := range v1Order {
		t, ok := s.env.limits.v1[c]
		if !ok {
			continue
		}
		ents, _ := os.ReadDir(t.dir)
		for _, e := range ents {
			dir := filepath.Join(t.dir, e.Name())
			if !e.IsDir() || keep[dir] {
				continue
			}
			if n := len(v1Procs(dir)); n > 0 {
				out = append(out, fmt.Sprintf("%s: killed %d unrecorded processes of cgroup v1 %s", e.Name(), n, dir))
			}
			removeV1(dir)
		}
	}
	return out
}

// foreignTrees returns the medic-* parents of the recorded cgroups (v2 and
// v1) that are not this medic's own trees.
func (s *Supervisor) foreignTrees(recs map[string]procRecord) []string {
	own := map[string]bool{}
	if t := s.env.cgroups; t != nil {
		own[filepath.Join(t.mount, t.group)] = true
	}
	for _, t := range s.env.limits.v1 {
		own[t.dir] = true
	}
	var out []string
	add := func(run string) {
		d := filepath.Dir(run)
		if strings.HasPrefix(filepath.Base(d), "medic-") && !own[d] && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	for _, r := range recs {
		if r.Group != "" {
			add(filepath.Join(r.Mount, r.Group))
		}
		for _, d := range r.V1 {
			add(d)
		}
	}
	sort.Strings(out)
	return out
}
