package restart

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"poolbot/internal/testenv"
)

func newTestLocal(t *testing.T, template ...string) *Local {
	t.Helper()
	l, err := NewLocal(LocalConfig{Command: template}, Options{DefaultTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLocalRunExitCodes(t *testing.T) {
	t.Parallel()
	l := newTestLocal(t, "/usr/bin/env", "{argv}")
	res, err := l.Run(context.Background(), "host1.example", []string{"sh", "-c", "echo out; echo err >&2; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || string(res.Output) != "out\nerr\n" {
		t.Fatalf("exit %d output %q", res.ExitCode, res.Output)
	}
	res, err = l.Run(context.Background(), "host1.example", []string{"sh", "-c", "kill -KILL $$"})
	if err != nil || res.ExitCode != 128+9 || !strings.Contains(res.Detail, "killed") {
		t.Fatalf("signal: %v exit %d detail %q", err, res.ExitCode, res.Detail)
	}
	_, err = newTestLocal(t, "/nonexistent/poolbot-lab", "{argv}").Run(context.Background(), "h", []string{"x"})
	mustRunError(t, err, "start")
}

// TestLocalSubstitution checks {host} and {argv} land as whole elements
// and {command} reaches a real shell as exactly the argv.
func TestLocalSubstitution(t *testing.T) {
	t.Parallel()
	l := newTestLocal(t, "printf", "[%s]\n", "{host}", "--", "{argv}")
	res, err := l.Run(context.Background(), "registry2003.codfw.wmnet", []string{"a b", "-x", "{host}"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[registry2003.codfw.wmnet]\n[--]\n[a b]\n[-x]\n[{host}]\n"; string(res.Output) != want {
		t.Fatalf("output %q, want %q", res.Output, want)
	}

	dir := t.TempDir()
	args := nastyArgs(dir)
	l = newTestLocal(t, "/bin/sh", "-c", "{command}")
	res, err = l.Run(context.Background(), "h", append([]string{"printf", `[%s]\n`}, args...))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %v exit %d %q", err, res.ExitCode, res.Output)
	}
	var want strings.Builder
	for _, a := range args {
		want.WriteString("[" + a + "]\n")
	}
	if string(res.Output) != want.String() {
		t.Fatalf("shell saw %q, want %q", res.Output, want.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); !os.IsNotExist(err) {
		t.Fatal("injected command ran")
	}
}

// TestLocalCancel cancels a process tree: the shell and its child sleep
// both get SIGTERM through the process group.
func TestLocalCancel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	l := newTestLocal(t, "/bin/sh", "-c", `sleep 30 & echo $! > "$0"; wait`, "{argv}")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := l.Run(ctx, "h", []string{pidFile})
		done <- err
	}()
	var child int
	testenv.Eventually(t, 10*time.Second, "the child to start", func() bool {
		b, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return child != 0
	})
	cancel()
	select {
	case err := <-done:
		mustRunError(t, err, "wait")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	testenv.Eventually(t, 5*time.Second, fmt.Sprintf("child sleep %d to end after the cancel", child), func() bool { return !labAlive(child) })
}

func TestLocalDefaultTimeoutAndBound(t *testing.T) {
	t.Parallel()
	l, err := NewLocal(LocalConfig{Command: []string{"/usr/bin/env", "{argv}"}}, Options{DefaultTimeout: 300 * time.Millisecond, MaxOutput: 100})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = l.Run(context.Background(), "h", []string{"sleep", "30"})
	if !errors.Is(err, ErrTimeout) || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
	res, err := l.Run(context.Background(), "h", []string{"head", "-c", "100000", "/dev/zero"})
	if err != nil || len(res.Output) != 100 || res.OutputBytes != 100000 {
		t.Fatalf("bounded output: %v len %d total %d", err, len(res.Output), res.OutputBytes)
	}
}

func TestLocalConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		{nil, "local.command: required"},
		{[]string{"lab"}, "exactly one {argv} or {command}"},
		{[]string{"lab", "{argv}", "{command}"}, "exactly one"},
		{[]string{"{argv}"}, "must be a fixed path"},
		{[]string{"{host}", "{argv}"}, "must be a fixed path"},
		{[]string{"lab", "--host={host}", "{argv}"}, "whole elements"},
		{[]string{"lab", "", "{argv}"}, "empty element"},
	} {
		err := LocalConfig{Command: tc.cmd}.Validate("local.")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.cmd, err, tc.want)
		}
	}
	if err := (LocalConfig{Command: []string{"lab", "{host}", "{argv}"}}).Validate("local."); err != nil {
		t.Fatal(err)
	}
}

// TestRestartHostLocalLab restarts real processes through the local
// executor and labctl, the way a lab drives its registries, and checks
// that each unit's process was replaced and the checks ran.
func TestRestartHostLocalLab(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lab := installHelper(t, dir, "labctl")
	t.Cleanup(func() { killLabProcesses(dir) })
	exec := newTestLocal(t, lab, "{host}", "{argv}")
	plan := Plan{
		Hosts:          []string{"registry1.lab", "registry2.lab"},
		Units:          []string{"docker-registry-restricted.service", "docker-registry-ml.service"},
		PerHostTimeout: 30 * time.Second,
		RestartCommand: []string{"restart", "{units}"},
		CheckCommand:   []string{"is-active", "{unit}"},
	}
	if err := plan.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// First start, then a restart that must replace the processes.
	for round := 0; round < 2; round++ {
		before := labPids(dir, plan)
		for _, h := range plan.Hosts {
			res, err := RestartHost(ctx, exec, plan, h)
			if err != nil {
				t.Fatalf("round %d host %s: %v", round, h, err)
			}
			if !strings.Contains(string(res.Output), "restarted docker-registry-ml.service on "+h) || res.Duration <= 0 {
				t.Fatalf("restart result %+v", res)
			}
		}
		after := labPids(dir, plan)
		for k, pid := range after {
			if !labAlive(pid) {
				t.Fatalf("round %d: %s (pid %d) not running", round, k, pid)
			}
			if old := before[k]; old != 0 && (old == pid || labAlive(old)) {
				t.Fatalf("round %d: %s not replaced (old %d new %d)", round, k, old, pid)
			}
		}
	}

	// A restart that fails stops the host at the restart step.
	broken := plan
	broken.Units = []string{"broken.service", "docker-registry-ml.service"}
	_, err := RestartHost(ctx, exec, broken, "registry1.lab")
	var se *StepError
	if !errors.As(err, &se) || se.Step != "restart" || se.Result.ExitCode != 1 ||
		!strings.Contains(err.Error(), "exit 1: Job for broken.service failed") {
		t.Fatalf("broken restart: %v", err)
	}
	// A unit whose process dies at once fails its is-active check.
	dies := plan
	dies.Units = []string{"docker-registry-ml.service", "dies.service"}
	_, err = RestartHost(ctx, exec, dies, "registry2.lab")
	if !errors.As(err, &se) || se.Step != "check dies.service" || se.Result.ExitCode != 3 {
		t.Fatalf("dies check: %v", err)
	}
}

func labPids(dir string, p Plan) map[string]int {
	m := map[string]int{}
	for _, h := range p.Hosts {
		for _, u := range p.Units {
			if pid := labPid(filepath.Join(dir, h), u); pid != 0 {
				m[h+"/"+u] = pid
			}
		}
	}
	return m
}

func killLabProcesses(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.pid"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && labAlive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
