package supervise

import (
	"sync"
	"time"

	"github.com/medic-dev/medic"
)

// ProbeStatus is the latest edge of one probe role.
type ProbeStatus struct {
	Health medic.Health `json:"health"`
	Detail string       `json:"detail,omitempty"`
	Since  time.Time    `json:"since"`
}

// InstanceStatus is a snapshot of one instance, as /v1/status shows it.
type InstanceStatus struct {
	ID        string                          `json:"id"`
	Service   string                          `json:"service"`
	Index     int                             `json:"index"`
	State     medic.InstanceState             `json:"state"`
	PID       int                             `json:"pid,omitempty"`
	Port      int                             `json:"port,omitempty"`
	Started   bool                            `json:"started"` // startup passed (or not configured)
	Ready     bool                            `json:"ready"`
	Restarts  int                             `json:"restarts"`
	Since     time.Time                       `json:"since"`                // when State was entered
	StartedAt time.Time                       `json:"started_at,omitempty"` // when the current process started
	LastExit  *medic.Exit                     `json:"last_exit,omitempty"`
	Reason    string                          `json:"reason,omitempty"` // the last decision's reason
	Probes    map[medic.ProbeKind]ProbeStatus `json:"probes,omitempty"`
	Notified  bool                            `json:"notified_ready,omitempty"` // sd_notify READY=1 received
	Stderr    string                          `json:"stderr_tail,omitempty"`    // kept in crash loop: the evidence
	RSSBytes  uint64                          `json:"rss_bytes,omitempty"`
	CPU       float64                         `json:"cpu_seconds,omitempty"` // user+system seconds of the main process
	FDs       int32                           `json:"open_fds,omitempty"`
}

// ServiceStatus groups a service's instances.
type ServiceStatus struct {
	Name         string           `json:"name"`
	Desired      int              `json:"desired"`
	Ready        int              `json:"ready"`
	MinAvailable int              `json:"min_available"`
	Rollout      string           `json:"rollout,omitempty"`  // the step a reload, rollback or scale waits for ("" when none is under way)
	Strategy     string           `json:"strategy,omitempty"` // deploy.strategy of the running spec: rolling, blue-green or canary
	Instances    []InstanceStatus `json:"instances"`
}

// broadcast wakes every waiter when something changes: Wait returns a channel
// closed at the next Notify.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func (b *broadcast) Wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}
