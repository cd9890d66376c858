package e2e

import (
	"os"
	"testing"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/site"
)

// The test binary doubles as the "systemctl" poolbot's local executor
// runs, and as scap lock probes (see internal/testenv/lab).
func TestMain(m *testing.M) {
	site.Main()
	// Each test runs its own world (IRC network, etcd, registries, poolbot
	// processes) and mostly waits on them.
	testenv.WaitingParallel(4)
	os.Exit(m.Run())
}
