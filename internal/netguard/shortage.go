package netguard

import (
	"errors"
	"strings"
	"syscall"
)

// shortages are the errors that say medic itself is short of a resource,
// whatever the peer: descriptors (EMFILE, ENFILE), kernel buffers or memory
// (ENOBUFS, ENOMEM), local ports (EADDRNOTAVAIL), processes (EAGAIN from fork).
var shortages = []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRNOTAVAIL, syscall.EAGAIN}

// OwnShortage reports whether err comes from medic's own shortage rather
// than from the peer it was talking to. Such a failure says nothing about
// the peer: a probe that meets it is unknown, a proxy try does not count
// against the instance. Errors that lost their errno (gRPC statuses) are
// matched by the kernel's message.
func OwnShortage(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range shortages {
		if errors.Is(err, e) {
			return true
		}
	}
	msg := err.Error()
	for _, e := range shortages[:5] {
		if strings.Contains(msg, e.Error()) {
			return true
		}
	}
	return false
}
