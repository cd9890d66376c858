package registry

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"poolbot/internal/testenv"
)

const (
	// Version is the distribution release pinned in tools/go.mod.
	Version = "v3.1.2"
	// Package is the main package of the registry binary.
	Package = "github.com/distribution/distribution/v3/cmd/registry"
	// BinEnv names the environment variable that points at a prebuilt
	// registry binary; CI sets it so no test process has to build.
	BinEnv = "POOLBOT_REGISTRY_BIN"
	// buildTimeout bounds a cold build (about 90 s to 150 s on 2 cores).
	buildTimeout = 10 * time.Minute
)

// Build returns the path of a registry binary for a test: the one named by
// $POOLBOT_REGISTRY_BIN, else the cached build, else it builds it from the
// repository's tools module (once per machine; later calls find the cache).
// When it cannot be built the test is skipped, or failed under CI.
func Build(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	path, err := Binary(ctx)
	if err != nil {
		if testenv.InCI() || os.Getenv(BinEnv) != "" {
			t.Fatalf("docker registry binary: %v", err)
		}
		t.Skipf("docker registry binary unavailable (see %s): %v", BinEnv, err)
	}
	return path
}

// Binary resolves the registry binary like Build, for programs that are not
// tests (the lab). It is safe to call from several processes at once: the
// build runs under an exclusive lock on the cache directory and the result
// appears atomically.
func Binary(ctx context.Context) (string, error) {
	if p := os.Getenv(BinEnv); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("$%s: %w", BinEnv, err)
		}
		return p, nil
	}
	target, err := CachePath()
	if err != nil {
		return "", err
	}
	if checkExecutable(target) == nil {
		return target, nil
	}
	root, err := RepoRoot("")
	if err != nil {
		return "", err
	}
	return buildLocked(ctx, filepath.Join(root, "tools"), target)
}

// CachePath is where the built binary is kept between test runs:
// <user cache dir>/poolbot-testbin/registry-<Version>.
func CachePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("registry binary cache: %w", err)
	}
	return filepath.Join(dir, "poolbot-testbin", "registry-"+Version), nil
}

// RepoRoot walks up from start (the working directory when empty) to the
// directory whose go.mod declares `module poolbot`.
func RepoRoot(start string) (string, error) {
	if start == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", fmt.Errorf("repo root: %w", err)
		}
		start = wd
	}
	dir, err := filepath.Abs(start)
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for {
		if isPoolbotModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("repo root: no go.mod with `module poolbot` above %s", start)
		}
		dir = parent
	}
}

func isPoolbotModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == "poolbot"
		}
	}
	return false
}

func checkExecutable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// buildLocked builds the registry from toolsDir into target while holding an
// flock next to it, so parallel `go test` processes build it once.
func buildLocked(ctx context.Context, toolsDir, target string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return "", fmt.Errorf("registry binary cache: %w", err)
	}
	unlock, err := lockFile(ctx, target+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if checkExecutable(target) == nil { // another process built it meanwhile
		return target, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build registry: go toolchain not in PATH: %w", err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", target, os.Getpid())
	defer os.Remove(tmp)
	cmd := exec.CommandContext(ctx, goBin, "build", "-buildvcs=false", "-o", tmp, Package)
	cmd.Dir = toolsDir
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build registry in %s: %w\n%s", toolsDir, err, out.String())
	}
	if err := os.Rename(tmp, target); err != nil {
		return "", fmt.Errorf("build registry: %w", err)
	}
	return target, nil
}

// lockFile takes an exclusive flock on path, polling so ctx can end the wait.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("registry build lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("registry build lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("registry build lock %s: waiting for another build: %w", path, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// tailBuffer keeps the last 16 KiB written to it: enough of a failed
// compiler run or registry log to diagnose, bounded however much is written.
type tailBuffer struct{ b bytes.Buffer }

const tailMax = 16 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= tailMax {
		t.b.Reset()
		t.b.Write(p[len(p)-tailMax:])
		return n, nil
	}
	if over := t.b.Len() + len(p) - tailMax; over > 0 {
		t.b.Next(over)
	}
	t.b.Write(p)
	return n, nil
}

func (t *tailBuffer) String() string { return t.b.String() }
