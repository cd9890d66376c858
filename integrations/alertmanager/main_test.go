package alertmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"poolbot/internal/testenv"
	amtest "poolbot/internal/testenv/alertmanager"
)

// shared is the package's one real Alertmanager (nil when not installed
// outside CI; tests that need it skip).
var shared *amtest.Server

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "poolbot-alertmanager-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	shared, err = amtest.Launch(ctx, dir)
	cancel()
	switch {
	case errors.Is(err, amtest.ErrNotInstalled) && !testenv.InCI():
		fmt.Fprintln(os.Stderr, "alertmanager tests against the real server will skip:", err)
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		return 1
	default:
		defer shared.Stop()
	}
	return m.Run()
}

// server returns the shared Alertmanager or skips the test.
func server(t testing.TB) *amtest.Server {
	t.Helper()
	if shared == nil {
		t.Skip("prometheus-alertmanager is not installed")
	}
	return shared
}
