// Package adminsock is the agent's admin socket: the API served on a unix
// socket in data_dir, for the operator on the same machine. The kernel says
// who connects (SO_PEERCRED), so root and the agent's own user need no token,
// and the socket sits outside the TCP listener's caps: an operator never
// queues behind a flood of the API port (issue 12: `medic status` took 1.5 s
// behind 30 000 flood connections on the TCP port).
package adminsock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"syscall"
	"time"
)

// Name is the socket's file name in data_dir.
const Name = "medic.sock"

// MaxPath is the longest path a unix socket can have on Linux (sun_path
// holds 108 bytes with the terminating NUL).
const MaxPath = 107

// ErrInUse means another live process serves the socket (another agent on the
// same data_dir).
var ErrInUse = errors.New("adminsock: another process serves this socket")

// Listener is the admin socket. Close removes the file only while it is
// still this listener's: a medic that took over during an upgrade keeps its own.
type Listener struct {
	net.Listener
	path string
	ino  uint64
}

// Listen creates the socket at path with mode (0600 or 0660), replacing a
// stale one left by a medic that died. takeOver replaces a live one too (the
// new medic of a seamless upgrade); without it a live socket is ErrInUse.
func Listen(path string, mode os.FileMode, takeOver bool) (*Listener, error) {
	if len(path) > MaxPath {
		return nil, fmt.Errorf("adminsock: path %s is %d bytes; a unix socket path may not exceed %d", path, len(path), MaxPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("adminsock: %s exists and is not a socket (%v): medic does not remove it", path, fi.Mode().Type())
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			if !takeOver {
				return nil, fmt.Errorf("%w: %s", ErrInUse, path)
			}
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("adminsock: remove the stale socket %s: %w", path, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("adminsock: create %s: %w", filepath.Dir(path), err)
	}
	// The socket is created with the process's umask; it is narrowed to mode
	// before anyone is served (connect(2) needs write permission).
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("adminsock: listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false) // Close unlinks only its own file (see Close)
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("adminsock: chmod %s %o: %w", path, mode, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		ln.Close()
		return nil, fmt.Errorf("adminsock: stat %s: %w", path, err)
	}
	return &Listener{Listener: ln, path: path, ino: st.Ino}, nil
}

// Path is the socket's path.
func (l *Listener) Path() string { return l.path }

// Close stops listening and removes the socket file if it is still this one.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	var st syscall.Stat_t
	if syscall.Stat(l.path, &st) == nil && st.Ino == l.ino {
		os.Remove(l.path)
	}
	return err
}

// Peer is the process at the other end of a unix connection, as the kernel
// saw it when it connected.
type Peer struct {
	PID      int32
	UID, GID uint32
}

// PeerOf reads c's peer credentials (SO_PEERCRED).
func PeerOf(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		if u, ok := c.(interface{ NetConn() net.Conn }); ok {
			return PeerOf(u.NetConn())
		}
		return Peer{}, fmt.Errorf("adminsock: %T is not a unix connection", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("adminsock: peer credentials: %w", err)
	}
	var cred *syscall.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return Peer{}, fmt.Errorf("adminsock: peer credentials: %w", err)
	}
	if serr != nil {
		return Peer{}, fmt.Errorf("adminsock: peer credentials: %w", serr)
	}
	return Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}

// Trusted is the rule: root and the agent's own user are the operator of
// this agent (they can signal it and read its data_dir anyway); anyone else
// the socket's mode lets in (its group, with 0660) needs a token.
func Trusted(p Peer, agentUID uint32) bool { return p.UID == 0 || p.UID == agentUID }

// Name names the peer in audit records: "unix:root", "unix:alice" or "unix:uid=1001".
func (p Peer) Name() string {
	if p.UID == 0 {
		return "unix:root"
	}
	if u, err := user.LookupId(fmt.Sprint(p.UID)); err == nil && u.Username != "" {
		return "unix:" + u.Username
	}
	return fmt.Sprintf("unix:uid=%d", p.UID)
}

type ctxKey struct{}

// ConnContext is an http.Server's ConnContext: it puts the connection's peer
// in the context of its requests (PeerFrom).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	p, err := PeerOf(c)
	if err != nil {
		return ctx // no peer: judged as any client, by its token
	}
	return context.WithValue(ctx, ctxKey{}, p)
}

// PeerFrom returns the peer ConnContext found.
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(ctxKey{}).(Peer)
	return p, ok
}
