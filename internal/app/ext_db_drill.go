package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/pgha"
)

// dbDrills gives the drill manager the database scenarios' injectors and
// their write load. A drill acts on this host only: it may kill the
// processes of a member that runs here (found by the host name and process
// ids the member publishes), cut this agent from etcd, or ask for a
// switchover; it never reaches into another machine.
type dbDrills struct {
	dbs []*dbMember
	cut *etcd.Cut // nil: no database allows drills
	// record makes an event durable (the restore drill's db.restore.*).
	record func(ctx context.Context, ev medic.Event)
	objs   map[string]*config.Objectives // declared objectives by database
}

func (h *dbDrills) register(inj *drill.Injectors) {
	inj.Register("db-kill-primary", drill.InjectorFunc(h.killPrimary))
	inj.Register("db-kill-postgres", drill.InjectorFunc(h.killPostgres))
	inj.Register("db-partition", drill.InjectorFunc(h.partition))
	inj.Register("db-switchover", drill.InjectorFunc(h.switchover))
	inj.Register("db-restore", drill.InjectorFunc(h.restoreDrill))
}

func (h *dbDrills) member(name string) (*dbMember, error) {
	for _, d := range h.dbs {
		if d.name == name {
			return d, nil
		}
	}
	return nil, fmt.Errorf("database %q: not kept by this agent", name)
}

// primary returns the drilled database's member on this agent and the
// database's primary as this agent sees it now.
func (h *dbDrills) primary(ctx context.Context, t *drill.Target) (*dbMember, pgha.MemberInfo, error) {
	d, err := h.member(t.Service)
	if err != nil {
		return nil, pgha.MemberInfo{}, err
	}
	mi, err := primaryOf(ctx, d)
	return d, mi, err
}

func primaryOf(ctx context.Context, d *dbMember) (pgha.MemberInfo, error) {
	st := d.agent.Status(ctx)
	if !st.Etcd {
		return pgha.MemberInfo{}, errors.New("this agent cannot reach etcd: the primary is unknown")
	}
	if st.Leader == nil {
		return pgha.MemberInfo{}, errors.New("the database has no primary now")
	}
	for _, mi := range st.Members {
		if mi.Name == st.Leader.Member {
			return mi, nil
		}
	}
	return pgha.MemberInfo{}, fmt.Errorf("the primary %s has published no status", st.Leader.Member)
}

// sameHost checks that member mi runs on this machine, where a drill may
// signal its processes.
func sameHost(mi pgha.MemberInfo) error {
	host, _ := os.Hostname()
	if mi.Host == "" || mi.Host != host {
		return fmt.Errorf("the primary %s runs on host %q, not here (%s): a drill acts on this host only", mi.Name, mi.Host, host)
	}
	return nil
}

// checkProc confirms that pid is still the process a member published
// (its command's base name), so that a stale id never kills a stranger.
func checkProc(pid int, want string) error {
	if pid <= 1 {
		return fmt.Errorf("no process id published (want a %s)", want)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return fmt.Errorf("process %d: %w", pid, err)
	}
	if base := filepath.Base(strings.TrimSuffix(exe, " (deleted)")); base != want {
		return fmt.Errorf("process %d runs %s, not %s: the published id is stale", pid, base, want)
	}
	return nil
}

func selfExe() string {
	exe, err := os.Executable()
	if err != nil {
		return "medic"
	}
	return filepath.Base(exe)
}

func (h *dbDrills) killPrimary(ctx context.Context, t *drill.Target) (drill.Restore, error) {
	d, mi, err := h.primary(ctx, t)
	if err != nil {
		return nil, err
	}
	if mi.Name == d.agent.Name() {
		return nil, fmt.Errorf("this agent keeps the primary %s: run db-kill-primary from a replica's agent, which outlives the primary's host", mi.Name)
	}
	if err := sameHost(mi); err != nil {
		return nil, err
	}
	if err := checkProc(mi.AgentPID, selfExe()); err != nil {
		return nil, fmt.Errorf("the primary's agent: %w", err)
	}
	if err := checkProc(mi.PostgresPID, "postgres"); err != nil {
		return nil, fmt.Errorf("the primary's postgres: %w", err)
	}
	// The agent first, so that it cannot react to its postgres dying.
	if err := syscall.Kill(mi.AgentPID, syscall.SIGKILL); err != nil {
		return nil, fmt.Errorf("SIGKILL the primary's agent (pid %d): %w", mi.AgentPID, err)
	}
	if err := syscall.Kill(-mi.PostgresPID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return nil, fmt.Errorf("SIGKILL the primary's postgres (pid %d): %w", mi.PostgresPID, err)
	}
	t.Note("SIGKILLed the primary %s: its agent (pid %d) and its postgres (process group %d)", mi.Name, mi.AgentPID, mi.PostgresPID)
	return func(context.Context) error {
		t.Note("the drill does not restart %s's agent: start it again and it rejoins as a replica", mi.Name)
		return nil
	}, nil
}

func (h *dbDrills) killPostgres(ctx context.Context, t *drill.Target) (drill.Restore, error) {
	d, mi, err := h.primary(ctx, t)
	if err != nil {
		return nil, err
	}
	if mi.Name == d.agent.Name() {
		pid := d.agent.CrashPostgres()
		if pid == 0 {
			return nil, errors.New("this agent's postgres is not running")
		}
		t.Note("SIGKILLed this member's postgres (process group %d); the agent keeps running", pid)
		return nil, nil
	}
	if err := sameHost(mi); err != nil {
		return nil, err
	}
	if err := checkProc(mi.PostgresPID, "postgres"); err != nil {
		return nil, fmt.Errorf("the primary's postgres: %w", err)
	}
	if err := syscall.Kill(-mi.PostgresPID, syscall.SIGKILL); err != nil {
		return nil, fmt.Errorf("SIGKILL the primary's postgres (pid %d): %w", mi.PostgresPID, err)
	}
	t.Note("SIGKILLed the postgres of the primary %s (process group %d); its agent keeps running", mi.Name, mi.PostgresPID)
	return nil, nil
}

func (h *dbDrills) partition(ctx context.Context, t *drill.Target) (drill.Restore, error) {
	if h.cut == nil {
		return nil, errors.New("this agent's etcd connections cannot be cut (no database allows drills)")
	}
	d, mi, err := h.primary(ctx, t)
	if err != nil {
		return nil, err
	}
	if mi.Name != d.agent.Name() {
		return nil, fmt.Errorf("the primary is %s: run db-partition on its agent (a drill cuts its own agent from etcd)", mi.Name)
	}
	switch mode := t.Params["mode"]; mode {
	case "", "reject":
		h.cut.Cut()
		t.Note("cut this agent (the primary %s) from etcd: every connection closed, new ones refused", mi.Name)
	case "blackhole":
		h.cut.Blackhole()
		t.Note("blackholed this agent's (the primary %s) traffic to etcd: nothing through either way, no error", mi.Name)
	default:
		return nil, fmt.Errorf("params.mode %q: want reject (default) or blackhole", mode)
	}
	return func(ctx context.Context) error {
		h.cut.Restore()
		start := t.Clock.Now()
		for {
			st := d.agent.Status(ctx)
			if st.Etcd && st.Leader != nil && st.Leader.Member != mi.Name {
				for _, m := range st.Members {
					if m.Name == mi.Name && m.Role == pgha.RoleReplica && m.Streaming {
						t.Note("etcd reachable again; %s rejoined as a replica of %s %.1f s later", mi.Name, st.Leader.Member, t.Clock.Now().Sub(start).Seconds())
						return nil
					}
				}
			}
			if st.Etcd && st.Leader != nil && st.Leader.Member == mi.Name {
				t.Note("etcd reachable again; %s is still the primary (no replica took over)", mi.Name)
				return nil
			}
			tm := t.Clock.NewTimer(200 * time.Millisecond)
			select {
			case <-ctx.Done():
				tm.Stop()
				return fmt.Errorf("%s did not rejoin as a streaming replica within %.0f s of the restore", mi.Name, t.Clock.Now().Sub(start).Seconds())
			case <-tm.C():
			}
		}
	}, nil
}

func (h *dbDrills) switchover(ctx context.Context, t *drill.Target) (drill.Restore, error) {
	d, mi, err := h.primary(ctx, t)
	if err != nil {
		return nil, err
	}
	start := t.Clock.Now()
	to, err := d.agent.Switchover(ctx, t.Params["to"], t.Actor())
	if err != nil {
		return nil, fmt.Errorf("switchover from %s: %w", mi.Name, err)
	}
	t.Note("switched over from %s to %s in %.2f s", mi.Name, to, t.Clock.Now().Sub(start).Seconds())
	return nil, nil
}

// writes is the write load of a database drill: single-row transactions
// through every member's primary listener (pgx tries them in order and
// keeps the first that takes writes), or their postgres when none has one.
func (h *dbDrills) writes(r drill.WriteRequest) (drill.WriteLoad, error) {
	d, err := h.member(r.Database)
	if err != nil {
		return drill.WriteLoad{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st := d.agent.Status(ctx)
	var proxies, direct []string
	if d.router != nil {
		proxies = append(proxies, d.router.PrimaryAddr().String())
	}
	for _, mi := range st.Members {
		if mi.Proxy != "" && mi.Name != d.agent.Name() {
			proxies = append(proxies, mi.Proxy)
		}
		if mi.Postgres != "" {
			direct = append(direct, mi.Postgres)
		}
	}
	addrs, via := proxies, "the members' primary listeners"
	if len(addrs) == 0 {
		addrs, via = direct, "the members' postgres directly (no primary listener)"
	}
	if len(addrs) == 0 {
		return drill.WriteLoad{}, errors.New("no member address known: is etcd reachable?")
	}
	wl := &pgha.WriteLoad{Addrs: addrs, User: d.superuser, Drill: r.Drill, Rate: r.Rate, Note: r.Note}
	return drill.WriteLoad{Writes: wl, Lossless: d.agent.Mode() == "sync",
		Describe: fmt.Sprintf("%.0f single-row write transactions/s (open loop) through %s: %s", r.Rate, via, strings.Join(addrs, ", "))}, nil
}
