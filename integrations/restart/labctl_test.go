package restart

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// labctl is a tiny service manager for real local processes, standing in
// for a lab's own tooling behind the local executor:
//
//	labctl <host> restart <unit>...   stop each unit's process, start a new one
//	labctl <host> is-active <unit>    exit 0 when the unit's process runs, 3 if not
//
// A unit's process is a real `sleep 3600` in its own session; its pid is
// kept in <dir>/<host>/<unit>.pid. Two units behave badly on purpose:
// "broken.service" cannot be restarted (exit 1, like systemctl when the
// start job fails) and "dies.service" starts a process that exits at once,
// so the is-active check after it fails.
func labctl(args []string) int {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: labctl <host> restart|is-active <unit>...")
		return 2
	}
	host, verb, units := args[0], args[1], args[2:]
	dir := filepath.Join(filepath.Dir(os.Args[0]), host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch verb {
	case "restart":
		for _, u := range units {
			if err := labRestart(dir, u); err != nil {
				fmt.Fprintf(os.Stderr, "Job for %s failed: %v\n", u, err)
				return 1
			}
			fmt.Printf("restarted %s on %s\n", u, host)
		}
		return 0
	case "is-active":
		for _, u := range units {
			if !labActive(dir, u) {
				return 3
			}
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "labctl: unknown verb %q\n", verb)
	return 2
}

func labPid(dir, unit string) int {
	b, err := os.ReadFile(filepath.Join(dir, unit+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// labAlive reports whether pid is a running (not zombie) process.
func labAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func labActive(dir, unit string) bool { return labAlive(labPid(dir, unit)) }

func labRestart(dir, unit string) error {
	if unit == "broken.service" {
		return fmt.Errorf("see journalctl -xeu %s", unit)
	}
	if old := labPid(dir, unit); labAlive(old) {
		_ = syscall.Kill(old, syscall.SIGTERM)
		deadline := time.Now().Add(5 * time.Second)
		for labAlive(old) {
			if time.Now().After(deadline) {
				return fmt.Errorf("pid %d did not stop", old)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	argv := []string{"sleep", "3600"}
	if unit == "dies.service" {
		argv = []string{"true"}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	if unit == "dies.service" {
		_ = cmd.Wait()
	} else {
		_ = cmd.Process.Release()
	}
	return os.WriteFile(filepath.Join(dir, unit+".pid"), []byte(strconv.Itoa(pid)), 0o644)
}
