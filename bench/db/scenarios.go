package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// result is one scenario's figures on one system.
type result struct {
	system, scenario string
	runs             int
	rtos             []time.Duration
	lost             int // acknowledged writes missing on the new primary, all runs
	acked            int
	dual             int // probe rounds that found both members writable
	failovers        int // stall: leader changes that should not have happened
	errs             []string
}

// bench is one system under one scenario: a fresh etcd and cluster.
type bench struct {
	c   cluster
	w   *writer
	log func(format string, args ...any)
}

func setup(c cluster, log func(string, ...any)) (*bench, error) {
	if err := c.start("a"); err != nil {
		return nil, err
	}
	if err := waitUntil(120*time.Second, "a serves as primary", func() bool { return c.primary() == "a" }); err != nil {
		return nil, err
	}
	if err := c.start("b"); err != nil {
		return nil, err
	}
	if err := waitUntil(180*time.Second, "b streams from a", c.healthy); err != nil {
		return nil, err
	}
	err := query(c.pg("a"), 10*time.Second, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "CREATE TABLE acks (id int PRIMARY KEY, at timestamptz DEFAULT now())")
		return err
	})
	if err != nil {
		return nil, err
	}
	b := &bench{c: c, w: startWriter(c.dsn(), 1), log: log}
	return b, b.w.waitMore(200, 30*time.Second)
}

// round prepares a run: the cluster healthy and writes flowing.
func (b *bench) ready() (string, error) {
	// Healthy for 3s on end: a member that just rejoined may still rewind,
	// and in sync mode it is eligible only once named the standby again.
	var since time.Time
	err := waitUntil(240*time.Second, "cluster healthy for 3s", func() bool {
		if !b.c.healthy() {
			since = time.Time{}
			return false
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) >= 3*time.Second
	})
	if err != nil {
		return "", err
	}
	if err := b.w.waitMore(100, 60*time.Second); err != nil {
		return "", err
	}
	return b.c.primary(), nil
}

// afterFailover waits for the other member to serve and writes to flow
// again, and returns the client-visible outage since t.
func (b *bench) afterFailover(p string, t time.Time, within time.Duration) (time.Duration, error) {
	if err := waitUntil(within, "the other member serves", func() bool { q := b.c.primary(); return q != "" && q != p }); err != nil {
		return 0, err
	}
	if err := b.w.waitMore(100, within); err != nil {
		return 0, err
	}
	return b.w.gap(t.Add(-time.Second)), nil
}

// backAfter is -back: how long after a kill the lost member starts again (0: after the failover).
var backAfter time.Duration

// rejoinBound is issue 14's bound: a member back from a kill streams from
// the new primary within 30 s of its return.
const rejoinBound = 30 * time.Second

func (b *bench) kill(r *result) error {
	p, err := b.ready()
	if err != nil {
		return err
	}
	before, _ := lost(b.c.pg(p), b.w.ids())
	t := time.Now()
	b.c.crash(p)
	if backAfter > 0 {
		time.Sleep(backAfter)
		if err := b.c.start(p); err != nil {
			return err
		}
		back := time.Now()
		rto, err := b.afterFailover(p, t, 180*time.Second)
		if err != nil {
			return err
		}
		err = waitUntil(rejoinBound, "the old primary streams from the new one", func() bool { return b.c.healthy() && b.c.primary() == other(p) })
		rejoin := time.Since(back)
		ids := b.w.ids()
		n, lerr := lost(b.c.pg(other(p)), ids)
		if lerr != nil {
			return lerr
		}
		r.rtos, r.lost, r.acked = append(r.rtos, rto), r.lost+n-before, len(ids)
		b.log("  kill %s, back after %v: RTO %v, %d acknowledged writes lost, streams from %s %v after its return",
			p, backAfter, rto.Round(time.Millisecond), n-before, other(p), rejoin.Round(100*time.Millisecond))
		if err != nil {
			r.errs = append(r.errs, fmt.Sprintf("kill %s, back after %v: not streaming from %s within %v of its return", p, backAfter, other(p), rejoinBound))
		}
		return nil
	}
	rto, err := b.afterFailover(p, t, 180*time.Second)
	if err != nil {
		return err
	}
	ids := b.w.ids()
	n, err := lost(b.c.pg(other(p)), ids)
	if err != nil {
		return err
	}
	r.rtos, r.lost, r.acked = append(r.rtos, rto), r.lost+n-before, len(ids)
	b.log("  kill %s: RTO %v, %d acknowledged writes lost", p, rto.Round(time.Millisecond), n-before)
	return b.c.start(p)
}

func (b *bench) cut(r *result) error {
	p, err := b.ready()
	if err != nil {
		return err
	}
	var dual atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if writable(b.c.pg("a")) && writable(b.c.pg("b")) {
				dual.Add(1)
			}
		}
	}()
	t := time.Now()
	b.c.cut(p, true)
	rto, err := b.afterFailover(p, t, 180*time.Second)
	close(stop)
	<-done
	b.c.cut(p, false)
	if err != nil {
		return err
	}
	r.rtos, r.dual = append(r.rtos, rto), r.dual+int(dual.Load())
	b.log("  cut %s from etcd: outage %v, %d probe rounds with two writable members", p, rto.Round(time.Millisecond), dual.Load())
	return waitUntil(240*time.Second, "the old primary rejoins", func() bool { return b.c.healthy() && b.c.primary() == other(p) })
}

func (b *bench) switchover(r *result) error {
	p, err := b.ready()
	if err != nil {
		return err
	}
	t := time.Now()
	if err := b.c.switchover(); err != nil {
		return err
	}
	rto, err := b.afterFailover(p, t, 120*time.Second)
	if err != nil {
		return err
	}
	r.rtos = append(r.rtos, rto)
	b.log("  switchover from %s: RTO %v", p, rto.Round(time.Millisecond))
	return nil
}

// stall saturates both cores for 60s and stops the primary's agent for 2s
// in the middle: no failover may follow.
func (b *bench) stall(r *result, dir string) error {
	p, err := b.ready()
	if err != nil {
		return err
	}
	t := time.Now()
	var hogs []*proc
	for i := range 2 {
		h, err := startProc(filepath.Join(dir, fmt.Sprintf("hog%d.log", i)), nil, dir, "/bin/sh", "-c", "while :; do :; done")
		if err != nil {
			return err
		}
		hogs = append(hogs, h)
	}
	time.Sleep(30 * time.Second)
	b.c.stall(p, 2*time.Second)
	time.Sleep(30 * time.Second)
	for _, h := range hogs {
		h.stop(syscall.SIGKILL, time.Second)
	}
	time.Sleep(5 * time.Second)
	changed := b.c.primary() != p
	if changed {
		r.failovers++
	}
	gap := b.w.gap(t)
	r.rtos = append(r.rtos, gap)
	b.log("  60s of both cores busy, %s's agent stopped 2s: failover %v, longest write gap %v", p, changed, gap.Round(time.Millisecond))
	return nil
}

func run(sys, scen string, runs int, mode, dir string, mk func(dir, etcd string) (cluster, error), log func(string, ...any)) result {
	r := result{system: sys, scenario: scen}
	fail := func(err error) result { r.errs = append(r.errs, err.Error()); log("  error: %v", err); return r }
	os.MkdirAll(dir, 0o755)
	etcd, etcdAddr, err := startEtcd(dir)
	if err != nil {
		return fail(err)
	}
	defer etcd.stop(syscall.SIGTERM, 5*time.Second)
	c, err := mk(dir, etcdAddr)
	if err != nil {
		return fail(err)
	}
	defer c.stop()
	r.system = c.label()
	b, err := setup(c, log)
	if b != nil {
		defer b.w.stop()
	}
	if err != nil {
		return fail(err)
	}
	for i := range runs {
		log("%s %s run %d/%d", sys, scen, i+1, runs)
		var err error
		switch scen {
		case "kill":
			err = b.kill(&r)
		case "cut":
			err = b.cut(&r)
		case "switchover":
			err = b.switchover(&r)
		case "stall":
			err = b.stall(&r, dir)
		default:
			err = fmt.Errorf("unknown scenario %q", scen)
		}
		if err != nil {
			return fail(err)
		}
		r.runs++
	}
	return r
}
