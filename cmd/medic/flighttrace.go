package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/trace"
	"syscall"
	"time"
)

// startFlightTrace keeps the last seconds of Go's runtime trace in memory
// when MEDIC_RUNTIME_TRACE names a file, and writes them there on each
// SIGUSR1 (bench/deploy.sh TRACE=1: what the agent did during a deploy; go
// tool trace reads it). Unset, the default: nothing is recorded and SIGUSR1
// keeps its default action. The window is MEDIC_RUNTIME_TRACE_AGE (a Go
// duration, default 3s).
func startFlightTrace() {
	path := os.Getenv("MEDIC_RUNTIME_TRACE")
	if path == "" {
		return
	}
	age := 3 * time.Second
	if v := os.Getenv("MEDIC_RUNTIME_TRACE_AGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > time.Minute {
			fmt.Fprintf(os.Stderr, "medic: MEDIC_RUNTIME_TRACE_AGE=%q: want a duration from 1ns to 1m\n", v)
			os.Exit(exitUsage)
		}
		age = d
	}
	fr := trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: age})
	if err := fr.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "medic: MEDIC_RUNTIME_TRACE: start the flight recorder: %v\n", err)
		return
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		for range ch {
			f, err := os.Create(path)
			if err == nil {
				_, err = fr.WriteTo(f)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "medic: MEDIC_RUNTIME_TRACE: write %s: %v\n", path, err)
			}
		}
	}()
}
