package auth

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// Concurrent adds to one file (several `medic key add` at once) must all be
// kept: the read-modify-write is under a lock.
func TestConcurrentAddClientKeyKeepsAll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "client-keys.yaml")
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := AddClientKey(path, fmt.Sprintf("k%02d", i), "agent"); err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := ListClientKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d keys in the file after %d concurrent adds, want all: %v", len(got), n, got)
	}
}

// The same for tokens, and for revokes racing adds.
func TestConcurrentAddTokenAndRevokeKeepAll(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	keys := filepath.Join(dir, "client-keys.yaml")
	const n = 8
	for i := range n {
		if _, err := AddClientKey(keys, fmt.Sprintf("old%02d", i), "agent"); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(3)
		go func() {
			defer wg.Done()
			<-start
			if _, err := AddToken(tokens, fmt.Sprintf("t%02d", i), RoleViewer); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			if err := RevokeClientKey(keys, fmt.Sprintf("old%02d", i)); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			if _, err := AddClientKey(keys, fmt.Sprintf("new%02d", i), "human"); err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	toks, err := LoadTokens(tokens)
	if err != nil {
		t.Fatal(err)
	}
	if toks.Len() != n {
		t.Errorf("%d tokens after %d concurrent adds, want all", toks.Len(), n)
	}
	got, err := ListClientKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d keys after %d revokes and %d adds of %d, want the %d new ones: %v", len(got), n, n, n, n, got)
	}
	for _, e := range got {
		if e.Class != "human" {
			t.Errorf("key %s (%s) survived its revoke", e.Name, e.Class)
		}
	}
}
