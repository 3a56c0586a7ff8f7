// Command backup measures medic's pgBackRest orchestration on real
// PostgreSQL 15 and pgBackRest (Debian's packages), the long forms of the
// e2e test TestDBBackupRestoreFailover:
//
//	restore   restore time and throughput of a database of -size (default 1GB,
//	          pgbench tables): full backup, then a restore to latest into a scratch
//	          postgres, files and recovery timed apart
//	pitr      -runs point-in-time restores to a moment between two acknowledged
//	          writes: the first must be present, the second absent
//	latest    the restore drill's promise, long form: -rate single-row
//	          transactions per second for -seconds with archiving on; at the end
//	          (T) the archive as it stood is restored into a scratch postgres and
//	          every acknowledged id is read back: none acknowledged more than
//	          -archive-timeout before T may be missing
//	overhead  commit latency of single-row transactions at -rate per second for
//	          -seconds, with WAL archiving on (archive_timeout -archive-timeout)
//	          beside archiving off, interleaved in rounds
//
// Run as root on Debian 12 with postgresql-15 and pgbackrest:
//
//	go run ./bench/backup -scenarios restore,pitr,overhead
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/medic-dev/medic/internal/backup"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/ports"
)

const binDir = "/usr/lib/postgresql/15/bin"

func main() {
	scenarios := flag.String("scenarios", "restore,pitr,latest,overhead", "comma-separated: restore, pitr, latest, overhead")
	size := flag.Int("size", 1024, "restore: database size in MiB (pgbench scale ≈ size/15)")
	runs := flag.Int("runs", 10, "pitr: restores")
	rate := flag.Float64("rate", 100, "overhead, latest: transactions per second")
	seconds := flag.Int("seconds", 30, "overhead: seconds per round; latest: seconds of load")
	rounds := flag.Int("rounds", 2, "overhead: rounds (archiving on, then off, alternating which goes first)")
	archiveTimeout := flag.Duration("archive-timeout", 60*time.Second, "archive.timeout")
	keep := flag.Bool("keep", false, "keep the temporary directory")
	flag.Parse()
	dir, err := os.MkdirTemp("", "medic-bench-backup-")
	check(err)
	os.Chmod(dir, 0o755)
	if !*keep {
		defer os.RemoveAll(dir)
	}
	fmt.Printf("# medic backup benchmarks, %s\n\npgBackRest: %s", time.Now().UTC().Format(time.RFC3339), out("pgbackrest", "version"))
	fmt.Printf("postgres: %s\n", out(filepath.Join(binDir, "postgres"), "--version"))
	for _, s := range strings.Split(*scenarios, ",") {
		switch s {
		case "restore":
			benchRestore(dir, *size, *archiveTimeout)
		case "pitr":
			benchPITR(dir, *runs, *archiveTimeout)
		case "latest":
			benchLatest(dir, *rate, *seconds, *archiveTimeout)
		case "overhead":
			benchOverhead(dir, *rate, *seconds, *rounds, *archiveTimeout)
		default:
			fmt.Fprintf(os.Stderr, "unknown scenario %q\n", s)
			os.Exit(2)
		}
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/backup:", err)
		os.Exit(1)
	}
}

func out(bin string, args ...string) string {
	b, err := exec.Command(bin, args...).Output()
	if err != nil {
		return "unknown (" + err.Error() + ")\n"
	}
	return string(b)
}

// instance is a standalone postgres, archiving into its own repository when archive is set.
type instance struct {
	pg   *pgha.Postgres
	m    *backup.Manager
	addr string
	dir  string
}

func start(parent, name string, archive bool, timeout time.Duration) *instance {
	dir := filepath.Join(parent, name)
	check(os.MkdirAll(dir, 0o755))
	port, err := ports.Free(1)
	check(err)
	o := pgha.PostgresOptions{Member: name, BinDir: binDir, Data: filepath.Join(dir, "pg"), Listen: fmt.Sprintf("127.0.0.1:%d", port),
		Superuser: "postgres", LogPath: filepath.Join(dir, "pg.log"), StatePath: filepath.Join(dir, "role.json"),
		Parameters: map[string]string{"shared_buffers": "256MB", "max_wal_size": "4GB"}}
	probe, err := pgha.NewPostgres(o)
	check(err)
	in := &instance{addr: o.Listen, dir: dir}
	if archive {
		uid, gid := probe.Owner()
		bc := &config.Backup{Repository: filepath.Join(dir, "repo")}
		bc.SetDefaults()
		bc.Archive.Timeout = config.Duration(timeout)
		bc.Schedule = config.BackupSchedule{Full: "@every 10000h", Diff: "off"}
		in.m, err = backup.New(backup.Options{Cluster: "bench", Config: bc, Repository: bc.Repository, Data: o.Data, Port: port,
			BinDir: binDir, StateDir: filepath.Join(dir, "state"), Command: probe.Command, UID: uid, GID: gid})
		check(err)
		check(in.m.Prepare())
		o.Settings = in.m.Settings()
	}
	in.pg, err = pgha.NewPostgres(o)
	check(err)
	ctx := context.Background()
	check(in.pg.InitDB(ctx))
	check(in.pg.Start(true, "", "", in.pg.Epoch(), 0))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := connect(in.addr); err == nil {
			c.Close(ctx)
			break
		}
		if time.Now().After(deadline) {
			check(fmt.Errorf("%s did not start", name))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if archive {
		check(in.m.StanzaCreate(ctx))
	}
	return in
}

func (in *instance) stop() { in.pg.Stop(context.Background(), 30*time.Second) }

func connect(addr string) (*pgx.Conn, error) {
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable", host, port))
}

func benchRestore(parent string, sizeMiB int, timeout time.Duration) {
	fmt.Printf("\n## restore of a %d MiB database\n\n", sizeMiB)
	in := start(parent, "restore", true, timeout)
	defer in.stop()
	host, port, _ := strings.Cut(in.addr, ":")
	scale := max(1, sizeMiB/15)
	t0 := time.Now()
	cmd := exec.Command("runuser", "-u", "postgres", "--", filepath.Join(binDir, "pgbench"), "-i", "-q", "-s", fmt.Sprint(scale), "-h", host, "-p", port, "-U", "postgres", "postgres")
	if b, err := cmd.CombinedOutput(); err != nil {
		check(fmt.Errorf("pgbench -i: %v: %s", err, b))
	}
	fmt.Printf("pgbench -i -s %d: %.1fs\n", scale, time.Since(t0).Seconds())
	ctx := context.Background()
	t0 = time.Now()
	info, err := in.m.Backup(ctx, backup.Full)
	check(err)
	last := info.Last()
	fmt.Printf("full backup: %d MiB in %.1fs (pgBackRest's own timing %v), %d MiB in the repository\n",
		last.Size>>20, time.Since(t0).Seconds(), last.Duration(), last.RepositorySize>>20)
	check(in.m.Check(ctx))
	p, err := ports.Free(1)
	check(err)
	s, err := in.m.Restore(ctx, filepath.Join(parent, "restore", "scratch"), p, backup.Latest)
	check(err)
	defer s.Remove(context.Background())
	check(s.Start(ctx))
	total := s.Restore + s.Recover
	fmt.Printf("\n| database | files (pgbackrest restore) | recovery (start → accepts writes) | total | throughput |\n|---|---|---|---|---|\n")
	fmt.Printf("| %d MiB | %.1f s | %.1f s | %.1f s | %.0f MiB/s |\n", last.Size>>20, s.Restore.Seconds(), s.Recover.Seconds(), total.Seconds(),
		float64(last.Size)/(1<<20)/total.Seconds())
}

func benchPITR(parent string, runs int, timeout time.Duration) {
	fmt.Printf("\n## point-in-time restore between two acknowledged writes, %d runs\n\n", runs)
	in := start(parent, "pitr", true, timeout)
	defer in.stop()
	ctx := context.Background()
	c, err := connect(in.addr)
	check(err)
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "CREATE TABLE marks (id serial PRIMARY KEY, v text NOT NULL)")
	check(err)
	_, err = in.m.Backup(ctx, backup.Full)
	check(err)
	// pgBackRest records the backup's stop time in whole seconds, and a
	// point-in-time restore needs a backup that stopped before the target.
	time.Sleep(2 * time.Second)
	fmt.Printf("| run | first present | second absent | files | recovery |\n|---|---|---|---|---|\n")
	passed := 0
	var files, recov []float64
	for i := 1; i <= runs; i++ {
		first, second := fmt.Sprintf("first-%d", i), fmt.Sprintf("second-%d", i)
		_, err := c.Exec(ctx, "INSERT INTO marks (v) VALUES ($1)", first)
		check(err)
		time.Sleep(200 * time.Millisecond)
		target := time.Now()
		time.Sleep(200 * time.Millisecond)
		_, err = c.Exec(ctx, "INSERT INTO marks (v) VALUES ($1)", second)
		check(err)
		check(in.m.Check(ctx)) // the WAL past the target reaches the archive
		p, err := ports.Free(1)
		check(err)
		s, err := in.m.Restore(ctx, filepath.Join(parent, "pitr", fmt.Sprintf("r%d", i)), p, backup.Target{Time: target})
		check(err)
		check(s.Start(ctx))
		rc, err := connect(s.Addr())
		check(err)
		var hasFirst, hasSecond bool
		check(rc.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM marks WHERE v = $1), EXISTS (SELECT 1 FROM marks WHERE v = $2)", first, second).Scan(&hasFirst, &hasSecond))
		rc.Close(ctx)
		check(s.Remove(ctx))
		if hasFirst && !hasSecond {
			passed++
		}
		files, recov = append(files, s.Restore.Seconds()), append(recov, s.Recover.Seconds())
		fmt.Printf("| %d | %t | %t | %.1f s | %.1f s |\n", i, hasFirst, !hasSecond, s.Restore.Seconds(), s.Recover.Seconds())
	}
	fmt.Printf("\n%d of %d runs exact; median files %.1f s, recovery %.1f s\n", passed, runs, median(files), median(recov))
}

func benchOverhead(parent string, rate float64, seconds, rounds int, timeout time.Duration) {
	fmt.Printf("\n## write overhead of WAL archiving, %.0f single-row transactions/s for %ds per round, %d rounds\n\n", rate, seconds, rounds)
	on := start(parent, "archiving-on", true, timeout)
	defer on.stop()
	// As the agent does: a full backup first, then medic's loop (stanza,
	// archive.timeout, the repository's state) beside the load.
	_, err := on.m.Backup(context.Background(), backup.Full)
	check(err)
	loop, err := backup.NewLoop(backup.LoopOptions{Manager: on.m, Primary: func() bool { return true }})
	check(err)
	lctx, stopLoop := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	go func() { loop.Serve(lctx); close(loopDone) }()
	defer func() { stopLoop(); <-loopDone }()
	off := start(parent, "archiving-off", false, timeout)
	defer off.stop()
	lat := map[string][]float64{}
	for r := 0; r < rounds; r++ {
		order := []*instance{on, off}
		if r%2 == 1 {
			order = []*instance{off, on}
		}
		for _, in := range order {
			name := "archiving off"
			if in == on {
				name = "archiving on"
			}
			lat[name] = append(lat[name], writeLoad(in.addr, rate, time.Duration(seconds)*time.Second)...)
		}
	}
	fmt.Printf("| | transactions | median | p90 | p99 | max |\n|---|---|---|---|---|---|\n")
	for _, name := range []string{"archiving on", "archiving off"} {
		l := lat[name]
		sort.Float64s(l)
		fmt.Printf("| %s | %d | %.2f ms | %.2f ms | %.2f ms | %.2f ms |\n", name, len(l), q(l, 0.5), q(l, 0.9), q(l, 0.99), q(l, 1))
	}
	if st, err := backup.ReadArchiver(context.Background(), "host="+strings.Split(on.addr, ":")[0]+" port="+strings.Split(on.addr, ":")[1]+" user=postgres dbname=postgres sslmode=disable"); err == nil {
		fmt.Printf("\narchiving on: %d segments archived, %d failed pushes\n", st.ArchivedCount, st.FailedCount)
	}
}

// writeLoad commits single-row transactions at rate for d (one connection,
// paced: a late transaction does not start the next early) and returns each
// commit latency in ms.
func writeLoad(addr string, rate float64, d time.Duration) []float64 {
	ctx := context.Background()
	c, err := connect(addr)
	check(err)
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "CREATE TABLE IF NOT EXISTS load (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), pad text)")
	check(err)
	var out []float64
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		<-tick.C
		t0 := time.Now()
		_, err := c.Exec(ctx, "INSERT INTO load (pad) VALUES (repeat('x', 200))")
		check(err)
		out = append(out, float64(time.Since(t0).Microseconds())/1000)
	}
	return out
}

func q(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return q(s, 0.5)
}

// benchLatest: under rate single-row transactions per second for seconds
// (ids and client-side acknowledgement times kept), with archiving on and
// medic's backup loop enforcing archive.timeout, every member is "lost" at
// T, the end of the load: a restore then has exactly the WAL archived at T.
// It restores to the end of the last segment archived at T (as the
// db-restore drill does), reads every acknowledged id back, and reports
// the writes missing, those acknowledged more than timeout before T
// (must be 0), and the data loss (the newest acknowledged write against
// the newest the restore holds).
func benchLatest(parent string, rate float64, seconds int, timeout time.Duration) {
	fmt.Printf("\n## restore to latest under %.0f writes/s for %ds, archive.timeout %v\n\n", rate, seconds, timeout)
	in := start(parent, "latest", true, timeout)
	defer in.stop()
	ctx := context.Background()
	_, err := in.m.Backup(ctx, backup.Full)
	check(err)
	loop, err := backup.NewLoop(backup.LoopOptions{Manager: in.m, Primary: func() bool { return true }})
	check(err)
	lctx, stopLoop := context.WithCancel(ctx)
	loopDone := make(chan struct{})
	go func() { loop.Serve(lctx); close(loopDone) }()
	defer func() { stopLoop(); <-loopDone }()

	c, err := connect(in.addr)
	check(err)
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "CREATE TABLE acks (id int PRIMARY KEY, at timestamptz DEFAULT now())")
	check(err)
	type ack struct {
		id int
		at time.Time
	}
	var acks []ack
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	end := time.Now().Add(time.Duration(seconds) * time.Second)
	for id := 1; time.Now().Before(end); id++ {
		<-tick.C
		_, err := c.Exec(ctx, "INSERT INTO acks (id) VALUES ($1)", id)
		check(err)
		acks = append(acks, ack{id, time.Now()})
	}
	tick.Stop()
	at := time.Now() // every member lost now
	dsn := "host=" + strings.Split(in.addr, ":")[0] + " port=" + strings.Split(in.addr, ":")[1] + " user=postgres dbname=postgres sslmode=disable"
	arch, err := backup.ReadArchiver(ctx, dsn)
	check(err)
	lsn, ok := backup.LSNAfter(arch.LastArchivedWAL, arch.SegmentSize)
	if !ok {
		check(fmt.Errorf("nothing archived at the end of the load (last %q)", arch.LastArchivedWAL))
	}
	// Recovery reads past its target: let the next segment reach the archive.
	_, err = c.Exec(ctx, "SELECT pg_switch_wal()")
	check(err)
	for {
		a, err := backup.ReadArchiver(ctx, dsn)
		check(err)
		if a.LastArchivedWAL != arch.LastArchivedWAL {
			break
		}
		if time.Since(at) > timeout+time.Minute {
			check(fmt.Errorf("the archive did not move past %s", arch.LastArchivedWAL))
		}
		time.Sleep(100 * time.Millisecond)
	}
	p, err := ports.Free(1)
	check(err)
	s, err := in.m.Restore(ctx, filepath.Join(parent, "latest", "scratch"), p, backup.Target{LSN: lsn, Exclusive: true})
	check(err)
	defer s.Remove(context.Background())
	check(s.Start(ctx))
	rc, err := connect(s.Addr())
	check(err)
	defer rc.Close(ctx)
	ids := make([]int, len(acks))
	for i, a := range acks {
		ids[i] = a.id
	}
	rows, err := rc.Query(ctx, "SELECT id FROM acks WHERE id = ANY($1)", ids)
	check(err)
	present, err := pgx.CollectRows(rows, pgx.RowTo[int])
	check(err)
	has := map[int]bool{}
	for _, id := range present {
		has[id] = true
	}
	var missing, beyond int
	var newest time.Time
	for _, a := range acks {
		switch {
		case has[a.id]:
			newest = a.at
		case at.Sub(a.at) > timeout:
			beyond++
			missing++
		default:
			missing++
		}
	}
	loss := at.Sub(acks[0].at)
	if !newest.IsZero() {
		loss = acks[len(acks)-1].at.Sub(newest)
	}
	fmt.Printf("at T the primary had archived up to %s (%.1fs before T); the restore stops at %s\n\n", arch.LastArchivedWAL, at.Sub(arch.LastArchivedAt).Seconds(), lsn)
	fmt.Printf("| acknowledged | read back | missing | missing, acknowledged > archive.timeout before T | data loss | files | recovery |\n|---|---|---|---|---|---|---|\n")
	fmt.Printf("| %d | %d | %d | **%d** | %.2f s | %.1f s | %.1f s |\n", len(acks), len(present), missing, beyond, loss.Seconds(), s.Restore.Seconds(), s.Recover.Seconds())
}
