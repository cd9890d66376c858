package watch

import (
	"os"
	"testing"

	"poolbot/internal/testenv/apus"
)

// The two apus sites (real Ceph RGW, testenv/apus) are started once, by
// the first test that needs them, and shared: each test starts its own
// registries on them, which push to their own repositories.
var shared apus.Shared

func TestMain(m *testing.M) { os.Exit(shared.Close(m.Run())) }

// apusSites returns the shared sites, skipping the test where they cannot
// run (failing it under CI).
func apusSites(t *testing.T) *apus.Apus { return shared.Sites(t) }
