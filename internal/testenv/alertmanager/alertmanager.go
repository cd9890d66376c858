// Package alertmanager runs a real Prometheus Alertmanager (Debian's
// prometheus-alertmanager, 0.25, API v2) for tests, so poolbot's silence
// client is tested against the server that answers in production rather
// than against a fake of its JSON.
//
// Each Server is its own alertmanager process on 127.0.0.1 with its storage
// in a temporary directory, clustering off (--cluster.listen-address=) and a
// configuration with one receiver that sends nothing. Stop and Relaunch
// simulate an outage on the same URL.
package alertmanager

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"poolbot/internal/testenv"
)

// Binary is the name Debian installs Alertmanager under.
const Binary = "prometheus-alertmanager"

const startTimeout = 30 * time.Second

// config routes every alert to a receiver without integrations: the tests
// only need the silences API.
const config = `route:
  receiver: blackhole
receivers:
  - name: blackhole
`

// Server is one running (or stopped) Alertmanager.
type Server struct {
	// URL is the base URL, e.g. http://127.0.0.1:41234; it stays the same
	// across Stop/Relaunch.
	URL string

	binary string
	args   []string
	logs   *testenv.SyncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done <-chan struct{}
}

// Start runs Alertmanager in the test's temporary directory and stops it
// when the test ends. It skips the test when the binary is missing, and
// fails it under CI.
func Start(t testing.TB) *Server {
	t.Helper()
	binary := testenv.Need(t, Binary)
	ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
	defer cancel()
	s, err := launch(ctx, binary, t.TempDir())
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Launch is Start for TestMain and programs that are not tests: dir must
// exist and the caller must Stop the server. ErrNotInstalled (wrapped) says
// the binary is missing.
func Launch(ctx context.Context, dir string) (*Server, error) {
	binary, err := testenv.Lookup(Binary)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	return launch(ctx, binary, dir)
}

// ErrNotInstalled is returned by Launch when prometheus-alertmanager is not
// installed.
var ErrNotInstalled = errors.New("prometheus-alertmanager is not installed")

func launch(ctx context.Context, binary, dir string) (*Server, error) {
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("alertmanager config: %w", err)
	}
	storage := filepath.Join(dir, "data")
	if err := os.MkdirAll(storage, 0o700); err != nil {
		return nil, fmt.Errorf("alertmanager storage: %w", err)
	}
	s := &Server{binary: binary}
	var lastErr error
	// A port found free may be taken before Alertmanager binds it.
	for attempt := 0; attempt < 4; attempt++ {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		s.URL = "http://" + addr
		s.args = []string{
			"--config.file=" + cfg,
			"--storage.path=" + storage,
			"--web.listen-address=" + addr,
			// No gossip: parallel test servers must not find each other,
			// and a fixed cluster port would clash.
			"--cluster.listen-address=",
			"--log.level=warn",
		}
		s.logs = &testenv.SyncBuffer{}
		if lastErr = s.start(ctx); lastErr == nil {
			return s, nil
		}
		if !strings.Contains(s.logs.String(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("alertmanager did not start: %w\nalertmanager output:\n%s", lastErr, s.logs.String())
}

func freePort() (int, error) {
	return testenv.Port("127.0.0.1")
}

func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	cmd := exec.Command(s.binary, s.args...)
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	done, err := testenv.StartGroup(cmd)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("exec %s: %w", s.binary, err)
	}
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	for {
		err := ready(ctx, client, s.URL)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("alertmanager exited during startup (%v): %w", cmd.ProcessState, err)
		case <-ctx.Done():
			s.Stop()
			return fmt.Errorf("alertmanager not ready after %s: %w", startTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ready asks /-/ready, which answers 200 once the configuration is loaded.
func ready(ctx context.Context, client *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/-/ready", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/-/ready: HTTP %d", resp.StatusCode)
	}
	return nil
}

// Stop terminates Alertmanager (SIGTERM, SIGKILL after 10 s) and waits for
// it. The storage stays, so Relaunch brings the silences back.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := testenv.StopGroup(cmd.Process.Pid, done, 10*time.Second); err != nil {
		<-done // a process that outlives SIGKILL is stuck in the kernel; waiting is all there is
	}
}

// Relaunch stops Alertmanager if it runs and starts it again on the same
// address with the same storage.
func (s *Server) Relaunch(ctx context.Context) error {
	s.Stop()
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("alertmanager restart: %w\nalertmanager output:\n%s", err, s.logs.String())
	}
	return nil
}

// Logs returns Alertmanager's output, for failure messages.
func (s *Server) Logs() string { return s.logs.String() }
