package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const proxyConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d"}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 3
    port: %[3]d
    stop: {grace: 1s}
    proxy: {listen: "127.0.0.1:0", try_timeout: 300ms}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 300ms, timeout: 200ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 200ms, timeout: 150ms, failure_threshold: 1}
`

// TestProxyUnderLoadKillAndHang: clients talk to medic's proxy while one
// instance is SIGKILLed and another hangs; no client sees an error.
func TestProxyUnderLoadKillAndHang(t *testing.T) {
	a := startAgent(t, proxyConfig)
	a.eventually(15*time.Second, "3 ready", func() bool { return a.status().Services[0].Ready == 3 })
	doc := a.status()
	if len(doc.Proxies) != 1 {
		t.Fatalf("proxies in status: %+v", doc.Proxies)
	}
	url := "http://" + doc.Proxies[0].Listen + "/"

	// 16 closed-loop clients for at most 12 s (bounded in count and time).
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
	defer cancel()
	var requests, failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 20000 && ctx.Err() == nil; n++ {
				resp, err := client.Get(url)
				if ctx.Err() != nil {
					return
				}
				requests.Add(1)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v %v", err, resp))
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	killed := a.instance("web", 0)
	syscall.Kill(killed.PID, syscall.SIGKILL)
	time.Sleep(3 * time.Second)
	hung := a.instance("web", 1)
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/fault/hang", hung.Port), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	a.eventually(15*time.Second, "hung instance restarted and all 3 ready", func() bool {
		st := a.status().Services[0]
		return st.Ready == 3 && a.instance("web", 1).PID != hung.PID
	})
	wg.Wait()
	if requests.Load() < 500 {
		t.Fatalf("only %d requests: the load did not run", requests.Load())
	}
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d of %d requests failed through the proxy; first: %v", f, requests.Load(), firstErr.Load())
	}
	t.Logf("%d requests through the proxy while one instance was killed and another hung: 0 errors", requests.Load())
}
