package restart

import (
	"os"
	"path/filepath"
	"testing"
)

// The test binary doubles as a helper program the tests run: called
// through a symlink named "labctl" it is a small service manager for real
// local processes. A symlink per test directory keeps each test's state
// separate, so tests stay parallel. (cumin is the real one:
// internal/testenv/cumin.)
func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "labctl":
		os.Exit(labctl(os.Args[1:]))
	}
	// The helpers are this race-enabled binary; by default the race
	// runtime sleeps a second at exit when the process started a child,
	// which would add a second to every helper call.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	os.Exit(m.Run())
}

// installHelper links the test binary as dir/name and returns its path.
func installHelper(t *testing.T, dir, name string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.Symlink(exe, path); err != nil {
		t.Fatal(err)
	}
	return path
}
