package main

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// writer commits one single-row transaction every 10ms (100/s) through dsn
// and logs every acknowledgment. A failed statement drops the connection;
// the next tick reconnects (what a pool with a health check does).
type writer struct {
	dsn    string
	mu     sync.Mutex
	acks   []ack
	errs   int
	nextID int
	cancel context.CancelFunc
	done   chan struct{}
}

type ack struct {
	id int
	at time.Time
}

func startWriter(dsn string, firstID int) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{dsn: dsn, nextID: firstID, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(w.done); w.run(ctx) }()
	return w
}

func (w *writer) stop() { w.cancel(); <-w.done }

func (w *writer) run(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			c, err := pgx.Connect(cctx, w.dsn)
			cancel()
			if err != nil {
				w.fail()
				continue
			}
			conn = c
		}
		w.mu.Lock()
		id := w.nextID
		w.nextID++
		w.mu.Unlock()
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := conn.Exec(qctx, "INSERT INTO acks (id) VALUES ($1)", id)
		cancel()
		if err != nil {
			w.fail()
			conn.Close(context.Background())
			conn = nil
			continue
		}
		w.mu.Lock()
		w.acks = append(w.acks, ack{id, time.Now()})
		w.mu.Unlock()
	}
}

func (w *writer) fail() {
	w.mu.Lock()
	w.errs++
	w.mu.Unlock()
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks)
}

// waitAcks waits until n more acknowledgments than now arrived.
func (w *writer) waitMore(n int, within time.Duration) error {
	want := w.count() + n
	return waitUntil(within, "writes acknowledged", func() bool { return w.count() >= want })
}

// gap is the longest time between consecutive acknowledgments after from
// (the client-visible outage: last ack before, first ack after).
func (w *writer) gap(from time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var g time.Duration
	for i := 1; i < len(w.acks); i++ {
		if w.acks[i].at.After(from) {
			g = max(g, w.acks[i].at.Sub(w.acks[i-1].at))
		}
	}
	return g
}

func (w *writer) ids() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]int, len(w.acks))
	for i, a := range w.acks {
		out[i] = a.id
	}
	return out
}

// lost counts acknowledged ids missing on the primary at hostport.
func lost(hostport string, ids []int) (int, error) {
	var n int
	err := query(hostport, 10*time.Second, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT count(*) FROM acks WHERE id = ANY($1)", ids).Scan(&n)
	})
	return len(ids) - n, err
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
