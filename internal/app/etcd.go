package app

import (
	"os"

	"github.com/medic-dev/medic/internal/etcd"
)

// dialEtcd makes a client of the config's etcd section (which validation
// requires wherever it is used); cut, if set, lets drills cut it off.
func dialEtcd(m *Main, cut *etcd.Cut) (*etcd.Client, error) {
	e := m.cfg.Etcd
	ecfg := etcd.Config{Endpoints: e.Endpoints, DialTimeout: e.DialTimeout.D(), Username: e.Username,
		Password: os.Getenv("ETCD_PASSWORD"), Cut: cut}
	if t := e.TLS; t != nil {
		ca, cert, key := t.Files(m.cfg.Path)
		tc, err := etcd.TLSConfig(ca, cert, key, t.ServerName)
		if err != nil {
			return nil, err
		}
		ecfg.TLS = tc
	}
	return etcd.Dial(ecfg)
}
