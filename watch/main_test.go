package watch

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/apus"
	"poolbot/internal/testenv/ceph"
)

// The two apus sites (real Ceph RGW, testenv/apus) are started once, by
// the first test that needs them, and shared: each test starts its own
// registries on them, which push to their own repositories.
var shared struct {
	once  sync.Once
	sites *apus.Apus
	dir   string
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.sites != nil {
		shared.sites.Close()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// apusSites returns the shared sites, skipping the test where they cannot
// run (failing it under CI).
func apusSites(t *testing.T) *apus.Apus {
	t.Helper()
	for _, b := range ceph.Binaries {
		testenv.Need(t, b)
	}
	if err := apus.CheckNamespaces(); err != nil {
		if testenv.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "poolbot-watch-apus-"); shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		began := time.Now()
		if shared.sites, shared.err = apus.Launch(ctx, shared.dir); shared.err == nil {
			fmt.Fprintf(os.Stderr, "apus: two sites up in %s\n", time.Since(began).Round(time.Millisecond))
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.sites
}
