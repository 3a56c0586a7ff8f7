package adminsock_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/adminsock"
)

func TestListenModeStaleAndInUse(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, adminsock.Name)
	// A stale socket (its medic died) is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	ln, err := adminsock.Listen(path, 0o600, false)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket %v %v; want a 0600 socket", fi.Mode(), err)
	}
	// A live one is another agent's: refused, unless taking over (an upgrade).
	if _, err := adminsock.Listen(path, 0o600, false); !errors.Is(err, adminsock.ErrInUse) {
		t.Fatalf("listen over a live socket: %v, want ErrInUse", err)
	}
	next, err := adminsock.Listen(path, 0o660, true)
	if err != nil {
		t.Fatalf("take over: %v", err)
	}
	// The old listener's Close leaves the new socket alone.
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the old medic's Close removed the new socket: %v", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := next.Accept()
	if err != nil {
		t.Fatal(err)
	}
	p, err := adminsock.PeerOf(s)
	if err != nil || p.UID != uint32(os.Getuid()) || p.PID != int32(os.Getpid()) {
		t.Fatalf("peer %+v %v; want this process (uid %d, pid %d)", p, err, os.Getuid(), os.Getpid())
	}
	if !adminsock.Trusted(p, uint32(os.Getuid())) || adminsock.Trusted(adminsock.Peer{UID: 4242}, 1000) || !adminsock.Trusted(adminsock.Peer{UID: 0}, 1000) {
		t.Fatal("trust: want root and the agent's user only")
	}
	s.Close()
	c.Close()
	next.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("Close left the socket file: %v", err)
	}
	// A regular file is never removed.
	os.WriteFile(path, []byte("x"), 0o600)
	if _, err := adminsock.Listen(path, 0o600, false); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("listen over a regular file: %v", err)
	}
	if _, err := adminsock.Listen("/"+strings.Repeat("x", 120), 0o600, false); err == nil {
		t.Fatal("a path over 107 bytes was accepted")
	}
}
