package backup

import (
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Standby is a replica a backup copies its data files from (pgBackRest's
// --backup-standby: the primary starts and stops the backup and gives the
// few files a standby cannot, the replica gives the rest, sparing the
// primary's disks). It is configured as pg2 beside the primary's pg1.
type Standby struct {
	Member string
	Path   string // its data directory
	Port   int    // its postgres port
	Socket string // its postgres unix socket directory
}

// Candidate is a cluster member as its agent published it, for ChooseStandby.
type Candidate struct {
	Member    string
	Host      string // the host name its agent runs on
	Data      string // its data directory ("" from an agent that does not publish it)
	Postgres  string // host:port of its postgres
	Replica   bool   // running in recovery
	Streaming bool   // receiving WAL over streaming replication
	Upstream  string // the member it streams from
	Ready     bool
	LagBytes  uint64
}

// StateDirOf is the backup state directory medic keeps beside a member's
// data directory (its pgbackrest.conf, and the postgres socket pgBackRest
// reaches it through): the same convention on every member, so that the
// primary's agent finds a replica's socket from its data directory.
func StateDirOf(data string) string { return data + ".backup" }

// socketDirOf is the socket directory in a state directory.
func socketDirOf(stateDir string) string { return filepath.Join(stateDir, "sock") }

// ChooseStandby picks the replica a backup on primary (running on host)
// copies from: a ready replica streaming from primary on the same host, the
// least behind first (pgBackRest waits for its replay to reach the backup's
// start), by name on a tie. Without one it answers why, for the backup's
// record: the backup then copies from the primary. A replica on another
// host would need pgBackRest's TLS server or SSH (pg2-host), which medic
// does not set up.
func ChooseStandby(primary, host string, cs []Candidate) (Standby, string, bool) {
	var ok []Candidate
	var why []string
	for _, c := range cs {
		switch {
		case c.Member == primary || !c.Replica:
		case !c.Streaming || c.Upstream != primary:
			why = append(why, fmt.Sprintf("%s does not stream from %s", c.Member, primary))
		case !c.Ready:
			why = append(why, fmt.Sprintf("%s is not ready", c.Member))
		case c.Data == "":
			why = append(why, fmt.Sprintf("%s does not publish its data directory", c.Member))
		case c.Host != host:
			why = append(why, fmt.Sprintf("%s runs on host %s, not %s (a backup from another host needs pgBackRest's TLS server, not set up)", c.Member, c.Host, host))
		default:
			if _, p, err := net.SplitHostPort(c.Postgres); err != nil {
				why = append(why, fmt.Sprintf("%s publishes no postgres port (%q)", c.Member, c.Postgres))
			} else if _, err := strconv.Atoi(p); err != nil {
				why = append(why, fmt.Sprintf("%s publishes no postgres port (%q)", c.Member, c.Postgres))
			} else {
				ok = append(ok, c)
			}
		}
	}
	if len(ok) == 0 {
		if len(why) == 0 {
			return Standby{}, "no replica streams from " + primary, false
		}
		sort.Strings(why)
		return Standby{}, "no replica to copy from: " + strings.Join(why, "; "), false
	}
	sort.Slice(ok, func(i, j int) bool {
		if ok[i].LagBytes != ok[j].LagBytes {
			return ok[i].LagBytes < ok[j].LagBytes
		}
		return ok[i].Member < ok[j].Member
	})
	c := ok[0]
	_, p, _ := net.SplitHostPort(c.Postgres)
	port, _ := strconv.Atoi(p)
	return Standby{Member: c.Member, Path: c.Data, Port: port, Socket: socketDirOf(StateDirOf(c.Data))}, "", true
}
