// Command fsyncstall measures what goroutines blocked in fsync cost the
// other requests of the same Go process (docs/deploys.md, "Where the rest
// of the cost is"): it starts itself as an HTTP server (GOMAXPROCS -procs,
// -fsync goroutines each writing and fsyncing a file in -dir every 2 ms),
// sends it 1 000 GETs at 200 per second from this process, prints the
// latency's p50, p99 and max, and stops the server by its PID.
//
//	go run ./bench/fsyncstall -procs 2 -fsync 0
//	go run ./bench/fsyncstall -procs 2 -fsync 3
//	go run ./bench/fsyncstall -procs 8 -fsync 3
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"
)

func main() {
	server := flag.Bool("server", false, "run as the server (internal)")
	procs := flag.Int("procs", 2, "the server's GOMAXPROCS")
	fs := flag.Int("fsync", 0, "server goroutines writing and fsyncing a file in a loop")
	dir := flag.String("dir", os.TempDir(), "where the fsynced files are (the disk to measure)")
	n := flag.Int("n", 1000, "requests (at most 100000)")
	flag.Parse()
	if *server {
		serve(*fs, *dir)
		return
	}
	*n = min(max(*n, 1), 100000)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	cmd := exec.Command(self, "-server", "-fsync", strconv.Itoa(*fs), "-dir", *dir)
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(*procs), "FSYNCSTALL_ADDR="+addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for i := 0; ; i++ { // wait for the server, at most 5 s
		if r, err := c.Get("http://" + addr + "/"); err == nil {
			r.Body.Close()
			break
		}
		if i == 100 {
			fail(fmt.Errorf("server at %s did not answer within 5 s", addr))
		}
		time.Sleep(50 * time.Millisecond)
	}
	done := make(chan time.Duration, *n)
	tick := time.NewTicker(5 * time.Millisecond)
	for range *n {
		<-tick.C
		go func() {
			t := time.Now()
			if r, err := c.Get("http://" + addr + "/"); err == nil {
				_, _ = io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
			done <- time.Since(t)
		}()
	}
	lat := make([]time.Duration, 0, *n)
	for range *n {
		lat = append(lat, <-done)
	}
	slices.Sort(lat)
	fmt.Printf("GOMAXPROCS %d, %d fsync goroutines: p50 %v p99 %v max %v of %d requests\n", *procs, *fs,
		lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)*99/100].Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond), len(lat))
}

func serve(fs int, dir string) {
	for i := range fs {
		f, err := os.CreateTemp(dir, "fsyncstall")
		if err != nil {
			fail(err)
		}
		_ = os.Remove(f.Name()) // unlinked at once: the server is stopped by a kill
		go func() {
			for {
				_, _ = fmt.Fprintln(f, i)
				_ = f.Sync()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	ln, err := net.Listen("tcp", os.Getenv("FSYNCSTALL_ADDR"))
	if err != nil {
		fail(err)
	}
	fail(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fsyncstall:", err)
	os.Exit(1)
}
