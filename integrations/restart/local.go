package restart

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// Placeholders of the local executor's command template. Each must be a
// whole argv element; nothing is substituted inside a longer element, so a
// host name or an argument can never merge with a flag or split into two.
const (
	// PlaceholderHost is replaced by the (validated) host name.
	PlaceholderHost = "{host}"
	// PlaceholderArgv is replaced by the command's elements, spliced in
	// as separate argv elements.
	PlaceholderArgv = "{argv}"
	// PlaceholderCommand is replaced by the command as one shell-quoted
	// string (ShellJoin), for wrappers that hand it to a remote shell
	// themselves, like ["ssh", "-o", "BatchMode=yes", "{host}", "{command}"].
	PlaceholderCommand = "{command}"
)

// LocalConfig configures the local executor.
type LocalConfig struct {
	// Command is the argv template run on this machine for each command on
	// each host, e.g. ["/usr/local/bin/lab-registry", "{host}", "{argv}"].
	// It must contain exactly one of {argv} or {command}; {host} is
	// optional. Run without a shell.
	Command []string `yaml:"command"`
}

// Validate checks the local section; key names are given as prefix+key.
func (c LocalConfig) Validate(prefix string) error {
	key := prefix + "command"
	if len(c.Command) == 0 {
		return fmt.Errorf("%s: required (argv template with {argv} or {command})", key)
	}
	var errs []error
	cmdSlots := 0
	for i, a := range c.Command {
		switch {
		case a == "":
			errs = append(errs, fmt.Errorf("%s[%d]: empty element", key, i))
		case strings.IndexByte(a, 0) >= 0:
			errs = append(errs, fmt.Errorf("%s[%d]: contains NUL", key, i))
		case a == PlaceholderArgv || a == PlaceholderCommand:
			cmdSlots++
			if i == 0 {
				errs = append(errs, fmt.Errorf("%s[0]: the program must be a fixed path, not %s", key, a))
			}
		case a == PlaceholderHost:
			if i == 0 {
				errs = append(errs, fmt.Errorf("%s[0]: the program must be a fixed path, not %s", key, a))
			}
		case strings.Contains(a, PlaceholderHost) || strings.Contains(a, PlaceholderArgv) || strings.Contains(a, PlaceholderCommand):
			errs = append(errs, fmt.Errorf("%s[%d]: %q: placeholders must be whole elements", key, i, a))
		}
	}
	if cmdSlots != 1 {
		errs = append(errs, fmt.Errorf("%s: must contain exactly one %s or %s (found %d)", key, PlaceholderArgv, PlaceholderCommand, cmdSlots))
	}
	return errors.Join(errs...)
}

// Local runs a configured program on this machine for each host.
type Local struct {
	template []string
	opts     Options
}

// NewLocal checks cfg and returns the executor.
func NewLocal(cfg LocalConfig, opts Options) (*Local, error) {
	if err := cfg.Validate("local."); err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	return &Local{template: append([]string(nil), cfg.Command...), opts: opts.withDefaults()}, nil
}

// CommandLine returns the argv Run would execute for argv on host.
func (l *Local) CommandLine(host string, argv []string) []string {
	out := make([]string, 0, len(l.template)+len(argv))
	for _, a := range l.template {
		switch a {
		case PlaceholderHost:
			out = append(out, host)
		case PlaceholderArgv:
			out = append(out, argv...)
		case PlaceholderCommand:
			out = append(out, ShellJoin(argv))
		default:
			out = append(out, a)
		}
	}
	return out
}

// Run runs the template for host and argv. The process gets its own process
// group; cancellation sends SIGTERM to the group, then kills the process
// if it is still there a few seconds later. Result.ExitCode is the
// program's exit status (128+n when a signal n killed it).
func (l *Local) Run(ctx context.Context, host string, argv []string) (Result, error) {
	start := l.opts.Clock.Now()
	res := Result{Host: host, Argv: argv, ExitCode: -1}
	fail := func(op string, err error) (Result, error) {
		res.Duration = l.opts.Clock.Since(start)
		l.opts.Logger.Debug("local run failed", "host", host, "argv", argv, "op", op, "err", err, "duration", res.Duration)
		return res, &RunError{Host: host, Via: "local", Op: op, Err: err}
	}
	if err := ValidateHost(host); err != nil {
		return fail("validate", err)
	}
	if err := validateArgv(argv); err != nil {
		return fail("validate", err)
	}
	ctx, cancel := l.opts.runContext(ctx)
	defer cancel()
	out := newTailBuffer(l.opts.MaxOutput)
	outcome, op, err := runProcess(ctx, l.CommandLine(host, argv), out, true, syscall.SIGTERM)
	res.Output = out.Bytes()
	res.OutputBytes = out.Total()
	res.Duration = l.opts.Clock.Since(start)
	if err != nil {
		return fail(op, err)
	}
	res.ExitCode = outcome.exitCode
	res.Detail = outcome.detail
	l.opts.Logger.Debug("local run", "host", host, "argv", argv, "exit", res.ExitCode, "duration", res.Duration)
	return res, nil
}
