// Package site is a small site on loopback for tests and the lab: what
// poolbot talks to (Site: etcd with apus' discovery records, registry
// hosts, scap's locks), and the small stand-ins it needs around real
// servers: a "systemctl" that restarts real registry processes (run by
// poolbot's local executor as a separate program), and processes that
// hold or probe scap's fcntl locks from outside the process under test.
//
// A test binary doubles as those programs: its TestMain calls Main first,
// which runs the requested helper and exits, or returns to run the tests.
package site

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"poolbot"
	regenv "poolbot/internal/testenv/registry"
)

// Environment variables that select a helper program.
const (
	EnvCtl       = "POOLBOT_TEST_CTL"        // URL of the systemctl control server
	EnvHoldLock  = "POOLBOT_TEST_HOLD_LOCK"  // path:shared|exclusive
	EnvProbeLock = "POOLBOT_TEST_PROBE_LOCK" // path
)

// SSHHost, as the "host" argument of the systemctl helper, means the
// host is the address sshd accepted the session on: the helper runs as
// the remote command of an SSH session (cumin's, through
// internal/testenv/cumin), on a world host's own sshd (127.0.0.x).
const SSHHost = "@ssh-host"

// Main runs a helper program when the environment asks for one (and
// exits); otherwise it returns. Call it first in TestMain.
func Main() {
	noRaceExitSleep()
	if url := os.Getenv(EnvCtl); url != "" && len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-test.") {
		args := os.Args[1:]
		if args[0] == SSHHost {
			// SSH_CONNECTION is "client-ip client-port server-ip server-port".
			f := strings.Fields(os.Getenv("SSH_CONNECTION"))
			if len(f) != 4 {
				fmt.Fprintf(os.Stderr, "%s: SSH_CONNECTION %q: not an SSH session\n", SSHHost, os.Getenv("SSH_CONNECTION"))
				os.Exit(2)
			}
			args = append([]string{f[2]}, args[1:]...)
		}
		os.Exit(ctlClient(url, args))
	}
	if spec := os.Getenv(EnvHoldLock); spec != "" {
		os.Exit(holdLock(spec))
	}
	if path := os.Getenv(EnvProbeLock); path != "" {
		os.Exit(probeLock(path))
	}
	if flag.Lookup("test.run") != nil && len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		// A test binary started as a host's command without the control
		// URL would otherwise run the package's tests as that command.
		fmt.Fprintf(os.Stderr, "site: test binary started as a helper (%q) without %s: run it through env(1) with the site's Systemctl.URL\n",
			os.Args[1:], EnvCtl)
		os.Exit(2)
	}
}

type ctlRequest struct {
	Host string   `json:"host"`
	Argv []string `json:"argv"`
}

type ctlResponse struct {
	Exit   int    `json:"exit"`
	Output string `json:"output"`
}

// ctlClient is the "systemctl" the local executor runs:
// <binary> <host> systemctl restart|is-active ... It forwards to the
// control server and exits with its answer.
func ctlClient(url string, args []string) int {
	body, _ := json.Marshal(ctlRequest{Host: args[0], Argv: args[1:]})
	resp, err := http.Post(url, "application/json", strings.NewReader(string(body)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	var r ctlResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Print(r.Output)
	return r.Exit
}

func holdLock(spec string) int {
	path, mode, _ := strings.Cut(spec, ":")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	typ := int16(unix.F_RDLCK)
	if mode == "exclusive" {
		typ = unix.F_WRLCK
	}
	lk := unix.Flock_t{Type: typ}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLKW, &lk); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

func probeLock(path string) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Println("none")
		return 0
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch lk.Type {
	case unix.F_UNLCK:
		fmt.Println("none")
	case unix.F_RDLCK:
		fmt.Println("shared")
	default:
		fmt.Println("exclusive")
	}
	return 0
}

// helperEnv is the environment of a helper child: the test's, with only
// the one helper selected.
func helperEnv(key, value string) []string {
	return append(os.Environ(), EnvCtl+"=", EnvHoldLock+"=", EnvProbeLock+"=", key+"="+value)
}

// HoldLock makes a child process hold an fcntl lock on path ("shared" as
// a running scap command, "exclusive" as scap lock --all) until release.
func HoldLock(t testing.TB, path, mode string) (release func()) {
	t.Helper()
	release, err := StartLockHolder(os.Args[0], path, mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return release
}

// StartLockHolder runs binary (a program whose main calls Main first: a
// test binary, or the lab) as a child that holds an fcntl lock on path
// until release is called, and returns once the lock is held. It is
// HoldLock for programs that are not tests.
func StartLockHolder(binary, path, mode string) (release func(), err error) {
	if mode != "shared" && mode != "exclusive" {
		return nil, fmt.Errorf("lock holder: mode %q is not shared or exclusive", mode)
	}
	cmd := exec.Command(binary)
	cmd.Env = helperEnv(EnvHoldLock, path+":"+mode)
	// The holder dies with us: a lab that crashes leaves no scap lock held.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("lock holder: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("lock holder: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lock holder: %w", err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "locked\n" {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("lock holder on %s: %q %v", path, line, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			stdin.Close()
			_ = cmd.Wait()
		})
	}, nil
}

// ProbeLock says who holds an fcntl lock on path, seen from another
// process: "none", "shared" or "exclusive". (F_GETLK does not report the
// caller's own locks, and opening and closing the file in a process that
// holds a lock on it drops the lock.)
func ProbeLock(t testing.TB, path string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = helperEnv(EnvProbeLock, path)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}

// Systemctl stands in for systemd on a set of registry "hosts", each a
// real registry process: restart stops and starts it on the same ports
// and storage; is-active reports whether it runs.
type Systemctl struct {
	// URL is what EnvCtl must be set to for the local executor's children.
	URL string

	srv *http.Server

	mu       sync.Mutex
	regs     map[string]*regenv.Instance
	fail     map[string]bool
	hang     map[string]bool
	hold     map[string]chan struct{}
	restarts []string
	// ns is each host's namespace prefix (SetNamespace): `getent` on the
	// host runs there, resolving through its datacenter's recursor.
	ns map[string][]string
}

// SetNamespace makes `getent ...` on host run under prefix (a
// hostns.Host's Prefix), as the host's own resolver would answer it.
func (s *Systemctl) SetNamespace(host string, prefix []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ns[host] = slices.Clone(prefix)
}

// getent runs getent in host's namespace and answers with its output and
// exit status.
func (s *Systemctl) getent(ctx context.Context, host string, argv []string) ctlResponse {
	s.mu.Lock()
	prefix, ok := s.ns[host]
	s.mu.Unlock()
	if !ok {
		return ctlResponse{Exit: 2, Output: fmt.Sprintf("host %s has no resolver namespace\n", host)}
	}
	full := append(slices.Clone(prefix), argv...)
	out, err := exec.CommandContext(ctx, full[0], full[1:]...).Output()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return ctlResponse{Exit: exit.ExitCode(), Output: string(out)}
	case err != nil:
		return ctlResponse{Exit: 1, Output: err.Error() + "\n"}
	}
	return ctlResponse{Output: string(out)}
}

// StartSystemctl serves systemctl for regs (host → instance) until the
// test ends.
func StartSystemctl(t testing.TB, regs map[string]*regenv.Instance) *Systemctl {
	t.Helper()
	s, err := NewSystemctl(regs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// NewSystemctl serves systemctl for regs (host → instance) on loopback
// until Close: StartSystemctl for programs that are not tests (the lab).
func NewSystemctl(regs map[string]*regenv.Instance) (*Systemctl, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("systemctl: %w", err)
	}
	s := &Systemctl{URL: "http://" + ln.Addr().String(), regs: regs,
		fail: map[string]bool{}, hang: map[string]bool{}, hold: map[string]chan struct{}{}, ns: map[string][]string{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req ctlRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(s.run(r.Context(), req))
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops serving.
func (s *Systemctl) Close() error { return s.srv.Close() }

// Fail makes restarts of host fail (the unit stops and stays down).
func (s *Systemctl) Fail(host string, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[host] = fail
}

// Hang makes restarts of host succeed while the registry does not come
// back: the process runs (the unit is active) but is stopped with
// SIGSTOP, so its health endpoints never answer. hang false resumes it.
func (s *Systemctl) Hang(host string, hang bool) {
	s.mu.Lock()
	s.hang[host] = hang
	inst := s.regs[host]
	s.mu.Unlock()
	if !hang && inst != nil {
		_ = inst.Resume()
	}
}

// Hold makes the next restart of host wait until the returned function is
// called: a restart in progress, for tests that interrupt one.
func (s *Systemctl) Hold(host string) (proceed func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hold[host] = ch
	s.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// Restarts lists the hosts whose restart was asked for, in order.
func (s *Systemctl) Restarts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.restarts...)
}

func (s *Systemctl) run(ctx context.Context, req ctlRequest) ctlResponse {
	s.mu.Lock()
	inst := s.regs[req.Host]
	s.mu.Unlock()
	if inst != nil && len(req.Argv) > 0 && req.Argv[0] == "getent" {
		return s.getent(ctx, req.Host, req.Argv)
	}
	if inst == nil || len(req.Argv) < 2 || req.Argv[0] != "systemctl" {
		return ctlResponse{Exit: 2, Output: fmt.Sprintf("unknown host or command %q %q\n", req.Host, req.Argv)}
	}
	switch req.Argv[1] {
	case "restart":
		s.mu.Lock()
		fail, hang, hold := s.fail[req.Host], s.hang[req.Host], s.hold[req.Host]
		delete(s.hold, req.Host)
		s.restarts = append(s.restarts, req.Host)
		s.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-ctx.Done():
				return ctlResponse{Exit: 1, Output: "interrupted\n"}
			}
		}
		if fail {
			_ = inst.Kill()
			return ctlResponse{Exit: 1, Output: "Job for docker-registry-restricted.service failed because the control process exited with error code.\n"}
		}
		if err := inst.Restart(context.WithoutCancel(ctx)); err != nil {
			return ctlResponse{Exit: 1, Output: err.Error() + "\n"}
		}
		if hang {
			_ = inst.Pause()
		}
		return ctlResponse{}
	case "is-active":
		if pid := inst.PID(); pid != 0 && syscall.Kill(pid, 0) == nil {
			return ctlResponse{}
		}
		return ctlResponse{Exit: 3}
	}
	return ctlResponse{Exit: 2, Output: "unsupported\n"}
}

// Notices records what a component announces in the channel (it
// implements poolbot.Announcer): each notice as IRC renders it, and as
// data.
type Notices struct {
	mu      sync.Mutex
	lines   []string
	notices []poolbot.Notice
}

// Announce records n.
func (n *Notices) Announce(_ context.Context, notice poolbot.Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lines = append(n.lines, notice.String())
	n.notices = append(n.notices, notice)
}

// Notices returns every notice so far as data, in order.
func (n *Notices) Notices() []poolbot.Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]poolbot.Notice(nil), n.notices...)
}

// All returns every notice so far, in order.
func (n *Notices) All() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.lines...)
}

// Matching returns the notices that contain sub.
func (n *Notices) Matching(sub string) []string {
	var out []string
	for _, l := range n.All() {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// noRaceExitSleep makes the helper processes a test starts (its own
// binary again, as systemctl, lock holder or lock probe) exit at once. A
// binary built with -race sleeps a second before it exits (GORACE's
// atexit_sleep_ms, default 1000), which every restart, unit check and lock
// probe in a race-enabled test run would otherwise pay. The children
// inherit the environment; this process's own race runtime has read
// GORACE already.
func noRaceExitSleep() {
	v := os.Getenv("GORACE")
	if strings.Contains(v, "atexit_sleep_ms") {
		return // the caller chose
	}
	_ = os.Setenv("GORACE", strings.TrimSpace(v+" atexit_sleep_ms=0"))
}
