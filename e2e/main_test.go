package e2e

import (
	"os"
	"testing"

	"poolbot/internal/testenv/site"
)

// The test binary doubles as the "systemctl" poolbot's local executor
// runs, and as scap lock probes (see internal/testenv/lab).
func TestMain(m *testing.M) {
	site.Main()
	os.Exit(m.Run())
}
