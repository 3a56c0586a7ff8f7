package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Info is the repository's state for the stanza, from pgbackrest info.
type Info struct {
	Status  string       `json:"status"` // pgBackRest's status message ("ok", "no valid backups", "missing stanza path")
	Code    int          `json:"code"`   // its status code, 0 = ok
	Backups []BackupInfo `json:"backups"`
	// The oldest and newest WAL segment in the archive ("" when none).
	ArchiveMin string `json:"archive_min,omitempty"`
	ArchiveMax string `json:"archive_max,omitempty"`
}

// BackupInfo is one backup in the repository.
type BackupInfo struct {
	Label string    `json:"label"`
	Type  string    `json:"type"` // full, diff, incr
	Start time.Time `json:"start"`
	Stop  time.Time `json:"stop"`
	// Size of the database the backup restores, and what it takes in the repository.
	Size           int64 `json:"size_bytes"`
	RepositorySize int64 `json:"repository_size_bytes"`
	// The WAL a restore needs at least (first and last segment).
	WALStart string `json:"wal_start"`
	WALStop  string `json:"wal_stop"`
}

// Duration is how long the backup took.
func (b BackupInfo) Duration() time.Duration { return b.Stop.Sub(b.Start) }

// Last is the newest backup, nil when there is none.
func (i Info) Last() *BackupInfo {
	if len(i.Backups) == 0 {
		return nil
	}
	return &i.Backups[len(i.Backups)-1]
}

// infoJSON is the part of `pgbackrest info --output=json` medic reads.
type infoJSON []struct {
	Name   string `json:"name"`
	Status struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
	Archive []struct {
		Min string `json:"min"`
		Max string `json:"max"`
	} `json:"archive"`
	Backup []struct {
		Label   string `json:"label"`
		Type    string `json:"type"`
		Archive struct {
			Start string `json:"start"`
			Stop  string `json:"stop"`
		} `json:"archive"`
		Info struct {
			Size       int64 `json:"size"`
			Repository struct {
				Delta int64 `json:"delta"`
			} `json:"repository"`
		} `json:"info"`
		Timestamp struct {
			Start int64 `json:"start"`
			Stop  int64 `json:"stop"`
		} `json:"timestamp"`
	} `json:"backup"`
}

// ParseInfo reads pgbackrest info's JSON for stanza.
func ParseInfo(b []byte, stanza string) (Info, error) {
	var doc infoJSON
	if err := json.Unmarshal(b, &doc); err != nil {
		return Info{}, fmt.Errorf("backup: parse pgbackrest info: %w", err)
	}
	for _, s := range doc {
		if s.Name != stanza {
			continue
		}
		info := Info{Status: s.Status.Message, Code: s.Status.Code}
		for _, a := range s.Archive {
			if info.ArchiveMin == "" || a.Min < info.ArchiveMin {
				info.ArchiveMin = a.Min
			}
			if a.Max > info.ArchiveMax {
				info.ArchiveMax = a.Max
			}
		}
		for _, bk := range s.Backup {
			info.Backups = append(info.Backups, BackupInfo{Label: bk.Label, Type: bk.Type,
				Start: time.Unix(bk.Timestamp.Start, 0).UTC(), Stop: time.Unix(bk.Timestamp.Stop, 0).UTC(),
				Size: bk.Info.Size, RepositorySize: bk.Info.Repository.Delta, WALStart: bk.Archive.Start, WALStop: bk.Archive.Stop})
		}
		return info, nil
	}
	return Info{}, fmt.Errorf("backup: pgbackrest info lists no stanza %q", stanza)
}

// Info reads the repository's state.
func (m *Manager) Info(ctx context.Context) (Info, error) {
	out, err := m.run(ctx, "info", "--output=json")
	if err != nil {
		return Info{}, err
	}
	return ParseInfo(out, m.stanza)
}
