package config

// Etcd is the consensus store's client settings. (Owned by the database work; extended there.)
type Etcd struct{}

// Database is one managed PostgreSQL cluster member on this host. (Owned by the database work.)
type Database struct{}
