// Package tcptest runs loopback TCP servers for tests and benchmarks: a
// handler per connection, and a minimal HTTP/1.1 instance that allocates
// nothing per request (the backend of the proxy and egress benchmarks).
package tcptest

import (
	"bufio"
	"net"
	"sync"
	"testing"
)

// Serve accepts TCP connections on loopback and runs handle on each in its
// own goroutine, closing the connection when handle returns. tb.Cleanup
// closes the listener and every connection and waits for the handlers. It
// returns the listener's address.
func Serve(tb testing.TB, handle func(net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// RawResponse is what RawHTTP answers to every request.
var RawResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n")

// RawHTTP is an HTTP/1.1 server that reads request headers (no bodies) and
// answers RawResponse to each, allocating nothing per request.
func RawHTTP(tb testing.TB) string {
	tb.Helper()
	return Serve(tb, func(c net.Conn) {
		br := bufio.NewReaderSize(c, 4096)
		for {
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) <= 2 {
					break
				}
			}
			if _, err := c.Write(RawResponse); err != nil {
				return
			}
		}
	})
}
