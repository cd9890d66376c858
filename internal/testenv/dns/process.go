package dns

import (
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"poolbot/internal/testenv"
)

// process is one daemon of the world (gdnsd or pdns_recursor) in the
// foreground, its output kept for failure messages.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	logs *testenv.SyncBuffer
}

func startProcess(name, binary string, args ...string) (*process, error) {
	p := &process{name: name, logs: &testenv.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	// Its own process group, killed if the test binary dies.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: exec %s: %w", name, binary, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after 5s, and waits.
func (p *process) stop() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
