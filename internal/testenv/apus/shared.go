package apus

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/ceph"
)

// Shared is the two sites for all of a package's tests: started by the
// first test that asks for them (Sites), stopped by Close from TestMain
// (os.Exit(sh.Close(m.Run()))). Each test starts its own registries on
// them and pushes to repositories of its own.
type Shared struct {
	once  sync.Once
	sites *Apus
	dir   string
	err   error
}

// Sites returns the shared sites, starting them on first use. It skips
// the test where they cannot run here (fails it under CI).
func (sh *Shared) Sites(t testing.TB) *Apus {
	t.Helper()
	for _, b := range ceph.Binaries {
		testenv.Need(t, b)
	}
	if err := CheckNamespaces(); err != nil {
		if testenv.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	sh.once.Do(func() {
		if sh.dir, sh.err = os.MkdirTemp("", "poolbot-apus-"); sh.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		began := time.Now()
		if sh.sites, sh.err = Launch(ctx, sh.dir); sh.err == nil {
			fmt.Fprintf(os.Stderr, "apus: two sites up in %s\n", time.Since(began).Round(time.Millisecond))
		}
	})
	if sh.err != nil {
		t.Fatal(sh.err)
	}
	return sh.sites
}

// Close stops the sites if a test started them and returns code (the
// package's m.Run() result).
func (sh *Shared) Close(code int) int {
	if sh.sites != nil {
		sh.sites.Close()
	}
	if sh.dir != "" {
		os.RemoveAll(sh.dir)
	}
	return code
}
