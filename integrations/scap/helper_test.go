package scap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"poolbot/internal/testenv"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as a helper process (TestHelperProcess)
// instead of running tests. POSIX record locks belong to a process, so a
// lock that the probe must see has to be held by another process: the test
// binary re-executes itself.
const helperEnv = "POOLBOT_SCAP_TEST_HELPER"

// helperArgs are the arguments after "--" on the helper's command line.
func helperArgs() []string {
	for i, a := range os.Args {
		if a == "--" {
			return os.Args[i+1:]
		}
	}
	return nil
}

// TestHelperProcess is not a test: it is the body of the child processes
// the lock tests start. Modes:
//
//	hold-shared <path>                      F_RDLCK, like a running scap on the global lock
//	hold-exclusive <path> <locker> <reason> F_WRLCK + scap JSON, like scap lock --all
//	try-shared <path>                       try F_SETLK F_RDLCK once, print "ok" or "blocked <pid>"
//	probe <path>                            run Locks.Probe and print the LockStatus as JSON
//	cat <path>                              print the file (reading it here would drop our lock)
//	record <file> <args...>                 append args as a JSON line (a lock/unlock command)
//	fail <code> <text>                      print text on stderr and exit with code
//	fail-once <statefile>                   exit 1 the first time, 0 afterwards
//	sleep                                   sleep for a minute (a hung command)
//
// The hold modes print "ready <pid>" once the lock is held and keep it until
// stdin closes; hold-exclusive then resets the file to {} like scap.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process body; runs only when re-executed by a test")
	}
	args := helperArgs()
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "helper: no mode")
		os.Exit(2)
	}
	os.Exit(runHelper(args[0], args[1:]))
}

func runHelper(mode string, args []string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "helper %s: "+format+"\n", append([]any{mode}, a...)...)
		return 2
	}
	switch mode {
	case "hold-shared", "hold-exclusive":
		fd, err := unix.Open(args[0], unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o666)
		if err != nil {
			return fail("open: %v", err)
		}
		typ := int16(unix.F_RDLCK)
		if mode == "hold-exclusive" {
			typ = unix.F_WRLCK
		}
		lk := unix.Flock_t{Type: typ, Whence: 0}
		if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk); err != nil {
			return fail("lock: %v", err)
		}
		if mode == "hold-exclusive" {
			info := LockInfo{Locker: args[1], PID: os.Getpid(), TimestampUTC: time.Now().UTC().Format(AsctimeLayout), Reason: args[2]}
			if err := rewrite(fd, info.MarshalScap()); err != nil {
				return fail("write: %v", err)
			}
		}
		fmt.Printf("ready %d\n", os.Getpid())
		io.Copy(io.Discard, os.Stdin) // hold until the parent closes stdin
		if mode == "hold-exclusive" {
			rewrite(fd, []byte("{}"))
		}
		return 0
	case "try-shared":
		fd, err := unix.Open(args[0], unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o666)
		if err != nil {
			return fail("open: %v", err)
		}
		lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0}
		if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk); err != nil {
			q := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0}
			unix.FcntlFlock(uintptr(fd), unix.F_GETLK, &q)
			fmt.Printf("blocked %d\n", q.Pid)
			return 0
		}
		fmt.Println("ok")
		return 0
	case "cat":
		b, err := os.ReadFile(args[0])
		if err != nil {
			return fail("read: %v", err)
		}
		os.Stdout.Write(b)
		return 0
	case "probe":
		st, err := NewLocks(LocksOptions{}).Probe(context.Background(), args[0])
		if err != nil {
			return fail("probe: %v", err)
		}
		b, _ := json.Marshal(st)
		fmt.Println(string(b))
		return 0
	case "record":
		line, _ := json.Marshal(args[1:])
		f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fail("open: %v", err)
		}
		defer f.Close()
		f.Write(append(line, '\n'))
		fmt.Println("recorded")
		return 0
	case "fail":
		code, _ := strconv.Atoi(args[0])
		fmt.Fprintln(os.Stderr, args[1])
		return code
	case "fail-once":
		if _, err := os.Stat(args[0]); err != nil {
			os.WriteFile(args[0], []byte("x"), 0o600)
			fmt.Fprintln(os.Stderr, "unlock failed: try again")
			return 1
		}
		return 0
	case "sleep":
		time.Sleep(time.Minute)
		return 0
	}
	return fail("unknown mode")
}

// helperEnviron returns the environment of a helper process. Under -race a
// process that exits 0 sleeps a second first (ThreadSanitizer's
// atexit_sleep_ms); helpers do not need that.
func helperEnviron() []string {
	return append(os.Environ(), helperEnv+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// setHelperEnv makes commands started by the code under test (the command
// backend) run as helpers.
func setHelperEnv(t *testing.T) {
	t.Setenv(helperEnv, "1")
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// helperCommand is the argv that runs the helper in mode with args.
func helperCommand(mode string, args ...string) []string {
	return append([]string{os.Args[0], "-test.run=^TestHelperProcess$", "--", mode}, args...)
}

// child is a helper process holding a lock.
type child struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	pid    int
	stderr *testenv.SyncBuffer
	once   sync.Once
}

// startHolder starts a helper that holds a lock and waits until it says so.
func startHolder(t testing.TB, mode string, args ...string) *child {
	t.Helper()
	argv := helperCommand(mode, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = helperEnviron()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, cmd: cmd, stdin: stdin, stderr: &testenv.SyncBuffer{}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper %s: %v", mode, err)
	}
	t.Cleanup(c.stop)

	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready ") {
				ready <- sc.Text()
				break
			}
		}
		close(ready)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-ready:
		if !ok {
			t.Fatalf("helper %s exited before holding the lock: %s", mode, c.stderr.String())
		}
		c.pid, _ = strconv.Atoi(strings.TrimPrefix(line, "ready "))
	case <-time.After(20 * time.Second):
		t.Fatalf("helper %s did not report ready within 20s: %s", mode, c.stderr.String())
	}
	if c.pid != cmd.Process.Pid {
		t.Fatalf("helper reported pid %d, started pid %d", c.pid, cmd.Process.Pid)
	}
	return c
}

// stop lets the helper release its lock cleanly and waits for it to exit.
func (c *child) stop() {
	c.once.Do(func() {
		c.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- c.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				c.t.Errorf("helper exited with %v: %s", err, c.stderr.String())
			}
		case <-time.After(20 * time.Second):
			c.cmd.Process.Kill()
			<-done
			c.t.Errorf("helper did not exit after stdin closed")
		}
	})
}

// kill9 SIGKILLs the helper: the kernel drops its locks, its JSON stays.
func (c *child) kill9() {
	c.once.Do(func() {
		c.cmd.Process.Signal(syscall.SIGKILL)
		err := c.cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			c.t.Errorf("helper was not killed by SIGKILL: %v", err)
		}
		c.stdin.Close()
	})
}

// runHelperOnce runs a short-lived helper and returns its stdout.
func runHelperOnce(t testing.TB, mode string, args ...string) string {
	t.Helper()
	argv := helperCommand(mode, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = helperEnviron()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %s %v: %v: %s", mode, args, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// childProbe probes path from another process, which (unlike this one)
// can see locks held by this test process.
func childProbe(t testing.TB, path string) LockStatus {
	t.Helper()
	out := runHelperOnce(t, "probe", path)
	var st LockStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("child probe output %q: %v", out, err)
	}
	return st
}
