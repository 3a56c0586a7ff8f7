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
	// Host and HostPort are its pgBackRest TLS server's address when the
	// backup reaches it through that server (pg2-host); "" for a replica
	// on this host, read through its socket.
	Host     string
	HostPort int
}

// Self is the member that takes the backup (the primary), for ChooseStandby.
type Self struct {
	Member string
	Host   string // the host name its agent runs on
	TLS    bool   // it has backup.tls: it can reach the other members' TLS servers
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
	// Server is host:port of its pgBackRest TLS server ("" when it runs none).
	Server string
}

// StateDirOf is the backup state directory medic keeps beside a member's
// data directory (its pgbackrest.conf, and the postgres socket pgBackRest
// reaches it through): the same convention on every member, so that the
// primary's agent finds a replica's socket from its data directory.
func StateDirOf(data string) string { return data + ".backup" }

// socketDirOf is the socket directory in a state directory.
func socketDirOf(stateDir string) string { return filepath.Join(stateDir, "sock") }

// ChooseStandby picks the replica a backup on self copies from: a ready
// replica streaming from self, the least behind first (pgBackRest waits for
// its replay to reach the backup's start), by name on a tie. A replica that
// publishes a pgBackRest TLS server is reached through it whenever self has
// backup.tls, on whatever host it runs (one path, whether or not the host
// names differ); otherwise only a replica on self's host qualifies, through
// its socket. Without one it answers why, for the backup's record: the
// backup then copies from the primary.
func ChooseStandby(self Self, cs []Candidate) (Standby, string, bool) {
	type choice struct {
		c  Candidate
		sb Standby
	}
	var ok []choice
	var why []string
	primary := self.Member
	for _, c := range cs {
		switch {
		case c.Member == primary || !c.Replica:
		case !c.Streaming || c.Upstream != primary:
			why = append(why, fmt.Sprintf("%s does not stream from %s", c.Member, primary))
		case !c.Ready:
			why = append(why, fmt.Sprintf("%s is not ready", c.Member))
		case c.Data == "":
			why = append(why, fmt.Sprintf("%s does not publish its data directory", c.Member))
		default:
			port, err := portOf(c.Postgres)
			if err != nil {
				why = append(why, fmt.Sprintf("%s publishes no postgres port (%q)", c.Member, c.Postgres))
				continue
			}
			sb := Standby{Member: c.Member, Path: c.Data, Port: port, Socket: socketDirOf(StateDirOf(c.Data))}
			switch {
			case c.Server != "" && self.TLS:
				host, p, err := net.SplitHostPort(c.Server)
				hp, perr := strconv.Atoi(p)
				if err != nil || perr != nil || host == "" || hp <= 0 || hp > 65535 {
					why = append(why, fmt.Sprintf("%s publishes no usable pgBackRest TLS server address (%q)", c.Member, c.Server))
					continue
				}
				sb.Host, sb.HostPort = host, hp
			case c.Host == self.Host:
			case c.Server == "":
				why = append(why, fmt.Sprintf("%s runs on host %s, not %s, and runs no pgBackRest TLS server (set backup.tls on it)", c.Member, c.Host, self.Host))
				continue
			default:
				why = append(why, fmt.Sprintf("%s runs on host %s, not %s, and this member has no backup.tls to reach its pgBackRest TLS server", c.Member, c.Host, self.Host))
				continue
			}
			ok = append(ok, choice{c, sb})
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
		if ok[i].c.LagBytes != ok[j].c.LagBytes {
			return ok[i].c.LagBytes < ok[j].c.LagBytes
		}
		return ok[i].c.Member < ok[j].c.Member
	})
	return ok[0].sb, "", true
}

func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}
