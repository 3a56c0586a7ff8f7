package app

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
)

// reloadClientKeys reads every proxy's client keys file again (whatever the
// config file holds: a revoked key must stop naming its class now) and
// audits what changed. A file that does not parse, that its group or others
// may write, or that names a class the proxy lacks is rejected with its
// file:line:col, and the keys in force stay.
func (m *Main) reloadClientKeys(ctx context.Context, actor string) {
	if m.traffic == nil {
		return
	}
	m.traffic.mu.RLock()
	names := make([]string, 0, len(m.traffic.proxies))
	for name := range m.traffic.proxies {
		names = append(names, name)
	}
	m.traffic.mu.RUnlock()
	sort.Strings(names)
	for _, name := range names {
		p := m.traffic.get(name)
		if p == nil || p.KeysFile() == "" {
			continue
		}
		target := "client-keys:" + name
		added, removed, err := p.ReloadClientKeys()
		if err != nil {
			m.Record(ctx, medic.Event{Kind: medic.EventConfigReload, Target: target, Actor: actor,
				Reason: "client keys file rejected, the keys in force stay: " + oneLine(err.Error(), 400),
				Fields: map[string]string{"errors": err.Error(), "file": p.KeysFile()}})
			continue
		}
		if len(added)+len(removed) == 0 {
			continue
		}
		m.Record(ctx, medic.Event{Kind: medic.EventConfigReload, Target: target, Actor: actor,
			Reason: fmt.Sprintf("client keys of %s reloaded: %d added, %d removed; removed keys are served in the default class from now on", name, len(added), len(removed)),
			Fields: map[string]string{"added": join(added), "removed": join(removed), "file": p.KeysFile()}})
	}
}

// proxiesKept names the services whose proxy section a reload changes: the
// running proxies keep their settings until medic restarts (their client
// keys files are read again at every reload, reloadClientKeys).
func proxiesKept(cur, next *config.Config) []string {
	var out []string
	for name, s := range next.Services {
		old, ok := cur.Services[name]
		if !ok || old.Proxy == nil || s.Proxy == nil {
			continue
		}
		if !reflect.DeepEqual(old.Proxy, s.Proxy) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// oneLine joins the lines of a multi-line error (a header, then one
// file:line:col problem a line) with "; ", cut at max bytes.
func oneLine(s string, max int) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), ":\n", ": ")
	s = strings.ReplaceAll(s, "\n", "; ")
	if len(s) > max {
		s = s[:max] + " …"
	}
	return s
}
