package rawconn_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/rawconn"
)

// pair is a connected pair of loopback TCP connections; a is wrapped.
func pair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- nil
			return
		}
		acc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	a = rawconn.Wrap(c, c)
	if _, ok := a.(*rawconn.Conn); !ok {
		t.Fatalf("Wrap of a TCP connection gave %T", a)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestReadWrite(t *testing.T) {
	a, b := pair(t)
	if _, err := b.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := io.ReadAtLeast(a, buf, 4)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	// larger than the socket buffers: the write waits in the poller (EAGAIN) and completes
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	done := make(chan error, 1)
	go func() {
		_, err := a.Write(big)
		done <- err
	}()
	got, err := io.ReadAll(io.LimitReader(b, int64(len(big))))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("peer read %d of %d bytes, %v", len(got), len(big), err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestEOFAndClosed(t *testing.T) {
	a, b := pair(t)
	b.Close()
	if n, err := a.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v; want 0, EOF", n, err)
	}
	a.Close()
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v; want net.ErrClosed", err)
	}
}

func TestDeadline(t *testing.T) {
	a, _ := pair(t)
	if err := a.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := a.Read(make([]byte, 8))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v; want a timeout", err)
	}
}

func TestResetIsAnError(t *testing.T) {
	a, b := pair(t)
	_ = b.(*net.TCPConn).SetLinger(0)
	b.Close() // RST
	var err error
	for range 100 { // the RST may follow a first write that still succeeds
		if _, err = a.Write([]byte("x")); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var oe *net.OpError
	if err == nil || !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("write to a reset connection: %v; want a write *net.OpError", err)
	}
}

func TestWrapWithoutDescriptor(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	if w := rawconn.Wrap(c1, c1); w != c1 {
		t.Fatalf("Wrap of a pipe gave %T; want the pipe itself", w)
	}
}

// TestConcurrentWriters: net.Conn allows calls from several goroutines;
// every write arrives whole (run with -race).
func TestConcurrentWriters(t *testing.T) {
	a, b := pair(t)
	const writers, each = 4, 200
	msg := []byte("0123456789")
	done := make(chan error, writers)
	for range writers {
		go func() {
			for range each {
				if _, err := a.Write(msg); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	got, err := io.ReadAll(io.LimitReader(b, int64(writers*each*len(msg))))
	if err != nil || !bytes.Equal(got, bytes.Repeat(msg, writers*each)) {
		t.Fatalf("peer read %d bytes (%v), want %d copies of %q", len(got), err, writers*each, msg)
	}
	for range writers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
