// Package testenv holds what the tests need to run real servers (ircd, etcd,
// sshd, docker registries) on loopback: finding their binaries, free ports,
// waiting for them to listen, and stopping them with the test.
//
// A test that needs a server calls Need(t, "etcd"): when the binary is missing
// the test is skipped on a developer's machine but fails in CI (CI=true), so
// a CI run can never go green by silently skipping the real-server tests.
// .ci/run installs every binary these tests need.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI, where a missing test server
// is a failure rather than a skip.
func InCI() bool { return os.Getenv("CI") != "" }

// Need returns the absolute path of binary, looked up in PATH and in the
// sbin directories Debian installs daemons into. When it is missing the test
// is skipped, or failed under CI.
func Need(t testing.TB, binary string) string {
	t.Helper()
	path, err := Lookup(binary)
	if err != nil {
		if InCI() {
			t.Fatalf("test server %q is not installed (CI must install it; see .ci/run): %v", binary, err)
		}
		t.Skipf("test server %q is not installed (run .ci/run or see README): %v", binary, err)
	}
	return path
}

// Lookup finds binary in PATH, then in /usr/sbin and /sbin.
func Lookup(binary string) (string, error) {
	if p, err := exec.LookPath(binary); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + binary
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or sbin directories", binary)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago
// (Port). There is a small window in which another process may take it;
// callers that start a daemon on it should retry on "address in use".
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := Port("127.0.0.1")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return p
}

// WaitListening waits until addr accepts TCP connections or the timeout passes.
func WaitListening(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var d net.Dialer
	for {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		c, err := d.DialContext(cctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s: %w", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// SyncBuffer is a buffer that several goroutines or child processes may
// write to at once: daemon logs and output collected by tests.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// RSS returns the resident set size of process pid in bytes (VmRSS in
// /proc/<pid>/status), for the memory numbers of the test worlds.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss of %d: %q: %w", pid, line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("rss of %d: no VmRSS", pid)
}

// StopGroup ends the process group led by pid the way a service manager
// does: SIGTERM (and SIGCONT, so that a frozen server can act on it), then
// SIGKILL if it has not exited after grace. It returns once exited is
// closed, or reports that the group outlived the SIGKILL by grace too.
func StopGroup(pid int, exited <-chan struct{}, grace time.Duration) error {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(-pid, syscall.SIGCONT)
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
		return fmt.Errorf("process group %d did not exit %s after SIGKILL", pid, grace)
	}
}

// StartGroup starts cmd as the leader of a process group of its own (so
// that StopGroup signals the server and its children) that the kernel
// kills if the test process dies. The channel is closed once cmd has
// exited.
func StartGroup(cmd *exec.Cmd) (<-chan struct{}, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return done, nil
}

// LastLines returns the last max lines of the file at path that keep
// accepts (none when it cannot be read): what a server logged that a
// failed test should show.
func LastLines(path string, max int, keep func(line string) bool) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); keep(line) {
			out = append(out, line)
			if len(out) > max {
				out = out[1:]
			}
		}
	}
	return out
}
