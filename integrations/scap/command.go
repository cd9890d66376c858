package scap

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/restart"
)

// maxCommandOutput bounds the output of a lock/unlock command kept for
// error messages.
const maxCommandOutput = 4 << 10

// CommandBlocker is the "command" deploy-block backend, for when poolbot
// does not run on the deploy host: it runs a configured argv to block
// deploys (e.g. `ssh deploy1003.eqiad.wmnet scap lock --all --bg
// {reason_sh}`) and another to lift the block. {reason} in an element is
// replaced by the reason inside that one element; poolbot runs no shell.
// But ssh joins its arguments into one string for the remote shell, so
// there the reason must be {reason_sh}: quoted as one shell word (config
// validation refuses {reason} with ssh). Each run is bounded by the
// command timeout; the command must exit 0.
//
// Output goes to an unlinked temporary file rather than a pipe, so a
// command that leaves a background process behind holding the lock (which
// is what `scap lock --bg` does) does not keep poolbot waiting for the
// pipe to close.
type CommandBlocker struct {
	lock, unlock []string
	timeout      time.Duration
	clock        clockwork.Clock
	log          *slog.Logger

	mu      sync.Mutex
	holding bool
	since   time.Time
}

// NewCommandBlocker returns the command backend configured by cfg.
func NewCommandBlocker(cfg DeployBlockConfig, clock clockwork.Clock, log *slog.Logger) (*CommandBlocker, error) {
	if err := checkCommand(cfg.LockCommand); err != nil {
		return nil, fmt.Errorf("scap: deploy_block.lock_command: %w", err)
	}
	if err := checkCommand(cfg.UnlockCommand); err != nil {
		return nil, fmt.Errorf("scap: deploy_block.unlock_command: %w", err)
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CommandBlocker{
		lock: cfg.LockCommand, unlock: cfg.UnlockCommand, timeout: cfg.CommandTimeout,
		clock: clock, log: log,
	}, nil
}

// Holding reports whether a block taken by this blocker has not been
// released yet, and since when. The Monitor uses it to recognise the
// global lock's exclusive holder as poolbot's own block.
func (c *CommandBlocker) Holding() (bool, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holding, c.since
}

// Block runs the lock command. A non-zero exit is an error carrying the
// (bounded) output, which for scap names the current holder.
func (c *CommandBlocker) Block(ctx context.Context, reason string) (Release, error) {
	reason, err := normalizeReason(reason)
	if err != nil {
		return nil, err
	}
	lockArgv, err := expandArgv(c.lock, reason)
	if err != nil {
		return nil, err
	}
	unlockArgv, err := expandArgv(c.unlock, reason)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		return nil, fmt.Errorf("scap: block deploys: poolbot already holds a deploy block since %s", c.since.UTC().Format(time.RFC3339))
	}
	if err := runBounded(ctx, lockArgv, c.timeout); err != nil {
		return nil, fmt.Errorf("scap: block deploys: %w", err)
	}
	c.holding, c.since = true, c.clock.Now()
	c.log.Info("scap: deploy block taken by command", "program", lockArgv[0], "reason", reason)

	var (
		once sync.Mutex
		done bool
	)
	return func(ctx context.Context) error {
		once.Lock()
		defer once.Unlock()
		if done {
			return nil
		}
		// Release must work even when the request's context was cancelled.
		rctx := context.WithoutCancel(ctx)
		if err := runBounded(rctx, unlockArgv, c.timeout); err != nil {
			// Still holding: calling Release again retries.
			return fmt.Errorf("scap: release deploy block: %w", err)
		}
		done = true
		c.mu.Lock()
		c.holding = false
		c.mu.Unlock()
		c.log.Info("scap: deploy block released by command", "program", unlockArgv[0])
		return nil
	}, nil
}

// expandArgv substitutes the reason into the template: {reason} as is,
// {reason_sh} quoted for a shell (in one pass, so a reason that contains a
// placeholder is not expanded again). When the reason fills a whole
// element it must not start with '-' (it would read as an option, also
// once the remote shell has removed the quotes).
func expandArgv(tmpl []string, reason string) ([]string, error) {
	r := strings.NewReplacer(ReasonShPlaceholder, restart.ShellQuote(reason), ReasonPlaceholder, reason)
	out := make([]string, len(tmpl))
	for i, a := range tmpl {
		if (a == ReasonPlaceholder || a == ReasonShPlaceholder) && strings.HasPrefix(reason, "-") {
			return nil, fmt.Errorf("scap: block deploys: reason %q starts with '-' and would be read as an option", reason)
		}
		out[i] = r.Replace(a)
	}
	return out, nil
}

// CommandError is a lock/unlock command that failed or timed out.
type CommandError struct {
	Program string
	Err     error
	// Output is the command's combined output, bounded.
	Output string
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("command %s: %v", e.Program, e.Err)
	if e.Output != "" {
		msg += ": " + e.Output
	}
	return msg
}

func (e *CommandError) Unwrap() error { return e.Err }

func runBounded(ctx context.Context, argv []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := os.CreateTemp("", "poolbot-scap-cmd-*")
	if err != nil {
		return fmt.Errorf("command %s: output file: %w", argv[0], err)
	}
	os.Remove(out.Name()) // keep only the open descriptor
	defer out.Close()

	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = nil
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	if runErr == nil {
		return nil
	}
	if ctx.Err() != nil {
		runErr = fmt.Errorf("%w (timeout %s)", ctx.Err(), timeout)
	}
	text := ""
	if _, err := out.Seek(0, io.SeekStart); err == nil {
		b, _ := io.ReadAll(io.LimitReader(out, maxCommandOutput))
		text = sanitizeText(string(b), 1000)
	}
	return &CommandError{Program: argv[0], Err: runErr, Output: text}
}
