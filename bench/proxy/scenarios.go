package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const clientTimeout = 2 * time.Second

type eventsRow struct {
	peer                    string
	round                   int
	all, before, kill, hang summary
	notes                   string
}

// runEvents: per proxy, fresh instances; kill one at 5 s, hang another at 10 s.
func (b *bench) runEvents() ([]eventsRow, error) {
	var rows []eventsRow
	for round := 1; round <= b.repeat; round++ {
		for _, peer := range b.peers {
			row, err := b.eventsOnce(peer)
			if err != nil {
				return nil, err
			}
			row.round = round
			rows = append(rows, row)
			if b.ctx.Err() != nil {
				return rows, nil
			}
		}
	}
	return rows, nil
}

func (b *bench) eventsOnce(peer string) (eventsRow, error) {
	backends, bps, err := b.startBackends(3, 0, 0)
	if err != nil {
		return eventsRow{}, err
	}
	p, port, err := b.startPeer(peer, backends, true)
	if err != nil {
		stopProcs(bps...)
		return eventsRow{}, err
	}
	url := "http://" + addr(port) + "/"
	b.logf("events: %s warming up", peer)
	closedLoop(url, b.conns, time.Second, clientTimeout, nil)
	b.logf("events: %s for %v (kill at 5s, hang at 10s)", peer, b.duration)
	events := map[time.Duration]func(){
		5 * time.Second: func() { bps[0].signal(syscall.SIGKILL) },
		10 * time.Second: func() {
			if err := hang(backends[1].Addr); err != nil {
				b.logf("events: hang %s: %v", backends[1].Name, err)
			}
		},
	}
	ss := closedLoop(url, b.conns, b.duration, clientTimeout, events)
	stopProcs(p)
	stopProcs(bps...)
	row := eventsRow{peer: peer,
		all: summarize(ss, 0, b.duration), before: summarize(ss, 0, 5*time.Second),
		kill: summarize(ss, 5*time.Second, 10*time.Second), hang: summarize(ss, 10*time.Second, b.duration)}
	if peer == "medic" {
		row.notes = medicNotes(filepath.Join(b.dir, "medic.log"))
	}
	return row, nil
}

// hang makes a demoapp instance hang: every request blocks from now on.
func hang(a string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	res, err := c.Post("http://"+a+"/fault/hang", "text/plain", nil)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST /fault/hang: %s", res.Status)
	}
	return nil
}

// medicNotes summarises the proxy's decisions from its log: ejections,
// readiness edges, and the final Stats it logs on exit.
func medicNotes(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := string(b)
	notes := fmt.Sprintf("%d ejections, %d returns by readiness, %d refused ejections",
		strings.Count(s, `"msg":"instance ejected"`), strings.Count(s, `"reason":"readiness probe passed"`),
		strings.Count(s, `"msg":"proxy ejection refused"`))
	for _, line := range strings.Split(s, "\n") {
		var l struct {
			Msg   string
			Stats struct {
				Requests, Errors, Retries, Shed uint64
				RateLimited                     uint64 `json:"rate_limited"`
			}
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "final stats" {
			st := l.Stats
			notes += fmt.Sprintf("; proxy counted %d requests, %d retries, %d errors, %d shed, %d rate-limited",
				st.Requests, st.Retries, st.Errors, st.Shed, st.RateLimited)
		}
	}
	return notes
}

type overheadRow struct {
	target string
	round  int
	s      summary
	cpu    float64 // the proxy's CPU seconds during the run; 0 for direct
	// the load generator's (this process's) and the instances' CPU seconds
	// during the run: on one machine they share the CPUs with the proxy, so
	// a proxy that makes them work harder per request costs throughput
	client, instances float64
}

// runOverhead: healthy instances, straight to one and through each proxy,
// the targets in a rotating order.
func (b *bench) runOverhead() ([]overheadRow, error) {
	backends, bps, err := b.startBackends(3, 0, 0)
	if err != nil {
		return nil, err
	}
	defer stopProcs(bps...)
	const d = 10 * time.Second
	var rows []overheadRow
	all := append([]string{"direct"}, b.peers...)
	for round := 1; round <= b.repeat; round++ {
		// the order rotates every round, so that no target always runs
		// right after the same other one (or first) on a drifting machine
		for k := range all {
			target := all[(round-1+k)%len(all)]
			if b.ctx.Err() != nil {
				return rows, nil
			}
			row, err := b.overheadOnce(target, backends, bps, d)
			if err != nil {
				return nil, err
			}
			row.round = round
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// overheadOnce runs one target of the overhead scenario.
func (b *bench) overheadOnce(target string, backends []instanceAddr, bps []*proc, d time.Duration) (overheadRow, error) {
	p, port, err := b.startPeer(target, backends, true)
	if err != nil {
		return overheadRow{}, err
	}
	url := "http://" + addr(port) + "/"
	closedLoop(url, b.conns, time.Second, clientTimeout, nil)
	b.logf("overhead: %s for %v", target, d)
	var cpu0, cpu1 float64
	if p != nil {
		cpu0, _ = cpuSeconds(p.pid())
	}
	client0, inst0 := selfCPUSeconds(), procsCPUSeconds(bps)
	ss := closedLoop(url, b.conns, d, clientTimeout, nil)
	client1, inst1 := selfCPUSeconds(), procsCPUSeconds(bps)
	if p != nil {
		cpu1, _ = cpuSeconds(p.pid())
		stopProcs(p)
	}
	return overheadRow{target: target, s: summarize(ss, 0, d), cpu: cpu1 - cpu0, client: client1 - client0, instances: inst1 - inst0}, nil
}

type overloadRow struct {
	peer   string
	rate   int
	s      summary
	steady summary // after the first second, once a limit had time to settle
}

const (
	overloadWorkers  = 8
	overloadWork     = 20 * time.Millisecond
	overloadCapacity = 3 * overloadWorkers * int(time.Second/overloadWork) // requests/s
)

// runOverload: fixed-capacity instances; medic at half capacity for the
// normal latency, then every proxy at twice capacity (open loop).
func (b *bench) runOverload() ([]overloadRow, error) {
	const d = 10 * time.Second
	type run struct {
		peer string
		rate int
	}
	runs := []run{{"medic", overloadCapacity / 2}}
	for _, p := range b.peers {
		runs = append(runs, run{p, 2 * overloadCapacity})
	}
	var rows []overloadRow
	for _, r := range runs {
		if b.ctx.Err() != nil {
			break
		}
		backends, bps, err := b.startBackends(3, overloadWorkers, overloadWork)
		if err != nil {
			return nil, err
		}
		p, port, err := b.startPeer(r.peer, backends, true)
		if err != nil {
			stopProcs(bps...)
			return nil, err
		}
		url := "http://" + addr(port) + "/"
		openLoop(url, overloadCapacity/2, 3*time.Second, clientTimeout) // normal load first
		b.logf("overload: %s at %d/s for %v", r.peer, r.rate, d)
		ss := openLoop(url, r.rate, d, clientTimeout)
		stopProcs(p)
		stopProcs(bps...)
		rows = append(rows, overloadRow{peer: r.peer, rate: r.rate, s: summarize(ss, 0, d), steady: summarize(ss, time.Second, d)})
	}
	return rows, nil
}
