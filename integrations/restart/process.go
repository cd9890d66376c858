package restart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"
)

// processWaitDelay is how long a finished or cancelled local process may
// keep its output pipes open (a daemon it started in the background that
// inherited stdout, say) before they are closed and, after a cancellation,
// the process is killed.
const processWaitDelay = 3 * time.Second

// processOutcome is how a local process ended.
type processOutcome struct {
	exitCode int
	detail   string
}

// runProcess runs argv (never through a shell) with stdout and stderr both
// going to out and stdin from /dev/null. On cancellation it sends sig, to
// the process group when group is set (the process is then started in its
// own group so that its children get the signal too), and kills the
// process if it has not exited processWaitDelay later.
//
// The error is non-nil only when the process could not be started or was
// cut off by ctx; a non-zero exit is an outcome.
func runProcess(ctx context.Context, argv []string, out io.Writer, group bool, sig syscall.Signal) (processOutcome, string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: group}
	cmd.Cancel = func() error {
		if group {
			return syscall.Kill(-cmd.Process.Pid, sig)
		}
		return cmd.Process.Signal(sig)
	}
	cmd.WaitDelay = processWaitDelay
	if err := cmd.Start(); err != nil {
		return processOutcome{exitCode: -1}, "start", err
	}
	err := cmd.Wait()
	if ctx.Err() != nil {
		return processOutcome{exitCode: -1}, "wait", ctxError(ctx)
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay):
		// ErrWaitDelay: the process exited 0 but something it started kept
		// the output pipe open; the exit status is what counts.
		return processOutcome{exitCode: 0}, "", nil
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return processOutcome{exitCode: 128 + int(ws.Signal()), detail: fmt.Sprintf("killed by signal %s", ws.Signal())}, "", nil
		}
		return processOutcome{exitCode: exitErr.ExitCode()}, "", nil
	default:
		return processOutcome{exitCode: -1}, "wait", err
	}
}
