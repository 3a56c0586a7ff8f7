package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/config"
)

// keyCmd manages the client keys of a service's proxy (proxy.clients): the
// file keeps only their SHA-256, the key is printed once.
func keyCmd() *cobra.Command {
	c := &cobra.Command{Use: "key", Short: "Manage a service's client API keys (proxy.clients.keys_file keeps only their SHA-256)"}
	var name string
	add := &cobra.Command{
		Use:   "add SERVICE CLASS",
		Short: "Create a client key of CLASS for SERVICE's proxy, store its hash in the keys file and print the key once",
		Long: `Create a random key (256 bits) for a client of SERVICE in CLASS, add
{name, class, sha256} to services.SERVICE.proxy.clients.keys_file of -c FILE
(created with mode 0600; an existing file keeps its mode and comments and is
replaced atomically) and print the key once on stdout. It is in force after
'medic reload' (or SIGHUP).`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, clients, err := keysFileOf(cmd, args[0])
			if err != nil {
				return err
			}
			class := args[1]
			if _, ok := clients.Classes[class]; !ok {
				return usageError{fmt.Errorf("service %s has no client class %q (classes: %v)", args[0], class, clients.ClassNames())}
			}
			n := name
			if n == "" {
				b := make([]byte, 4)
				rand.Read(b)
				n = class + "-" + hex.EncodeToString(b)
			}
			key, err := auth.AddClientKey(path, n, class)
			if err != nil {
				return err
			}
			fmt.Println(key)
			fmt.Fprintf(os.Stderr, "added key %s (class %s) to %s; give the client the key above, it is not stored; run `medic reload` (or send SIGHUP) to put it in force\n", n, class, path)
			return nil
		},
	}
	add.Flags().StringVar(&name, "name", "", "name of the key's client (default CLASS-<random>); a metric and log label")
	var asJSON bool
	list := &cobra.Command{
		Use:   "list SERVICE",
		Short: "List the client keys of SERVICE's proxy: name, class, SHA-256 (never the key)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, _, err := keysFileOf(cmd, args[0])
			if err != nil {
				return err
			}
			keys, err := auth.ListClientKeys(path)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"file": path, "keys": keys})
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tCLASS\tSHA256")
			for _, k := range keys {
				fmt.Fprintf(w, "%s\t%s\t%s…\n", k.Name, k.Class, k.SHA256[:16])
			}
			return w.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	revoke := &cobra.Command{
		Use:   "revoke SERVICE NAME",
		Short: "Remove the key NAME from SERVICE's keys file; after `medic reload` (or SIGHUP) it is served in the default class",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, _, err := keysFileOf(cmd, args[0])
			if err != nil {
				return err
			}
			if err := auth.RevokeClientKey(path, args[1]); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "revoked key %s in %s; run `medic reload` (or send SIGHUP) so that the agent stops honouring it\n", args[1], path)
			return nil
		},
	}
	c.AddCommand(add, list, revoke)
	return c
}

// keysFileOf returns services.SERVICE.proxy.clients of the config -c FILE and its keys file.
func keysFileOf(cmd *cobra.Command, service string) (string, *config.ProxyClients, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return "", nil, err
	}
	svc, ok := cfg.Services[service]
	if !ok {
		return "", nil, usageError{fmt.Errorf("no service %q in %s", service, cfg.Path)}
	}
	if svc.Proxy == nil || !svc.Proxy.Clients.Enabled() {
		return "", nil, usageError{fmt.Errorf("service %s has no client classes (services.%s.proxy.clients)", service, service)}
	}
	if svc.Proxy.Clients.KeysFile == "" {
		return "", nil, usageError{fmt.Errorf("service %s has no keys file: set services.%s.proxy.clients.keys_file", service, service)}
	}
	return svc.Proxy.Clients.KeysFile, svc.Proxy.Clients, nil
}
