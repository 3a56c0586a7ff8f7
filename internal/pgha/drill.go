package pgha

// Name is this agent's member name.
func (a *Agent) Name() string { return a.o.Member }

// Mode is the replication mode, async or sync.
func (a *Agent) Mode() string { return a.o.Config.Replication.Mode }

// CrashPostgres SIGKILLs this member's postgres and its children, as a crash
// would (a drill's "kill only postgres"); the agent then decides as after any
// crash. It returns the postmaster's pid, 0 when none was running.
func (a *Agent) CrashPostgres() int {
	pid := a.pg.Crash()
	a.poke()
	return pid
}

// Postgres is the member's local server manager (its commands run as the
// postgres OS user; backups use it).
func (a *Agent) Postgres() *Postgres { return a.pg }
