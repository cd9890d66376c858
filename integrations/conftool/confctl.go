package conftool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Output bounds for one confctl run.
const (
	maxConfctlStdout = 1 << 20
	maxConfctlStderr = 64 << 10
	// confctlWaitDelay is how long a cancelled confctl (or sudo) gets after
	// SIGTERM before it is killed and its pipes are closed.
	confctlWaitDelay = 5 * time.Second
)

// Confctl is the backend that runs the confctl CLI. Every run is
// `<command...> [--config C] [--quiet] --object-type discovery select
// <selector> <action>` with argv only (no shell), an empty stdin (so
// confctl's "Ok to continue? [y/N]" prompt can never be answered), bounded
// output and a timeout.
type Confctl struct {
	command []string
	config  string
	quiet   bool
	timeout time.Duration
	logger  *slog.Logger
}

// NewConfctl builds the confctl backend.
func NewConfctl(cfg ConfctlConfig, opts Options) (*Confctl, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Confctl{
		command: slices.Clone(cfg.Command),
		config:  cfg.Config,
		quiet:   cfg.QuietOrDefault(),
		timeout: cfg.Timeout,
		logger:  opts.logger().With("component", "conftool", "backend", "confctl"),
	}
	if len(c.command) == 0 {
		c.command = []string{DefaultConfctlCommand}
	}
	if c.timeout == 0 {
		c.timeout = DefaultConfctlTimeout
	}
	return c, nil
}

// ConfctlError is a failed confctl run.
type ConfctlError struct {
	Argv     []string
	ExitCode int // -1 when it did not exit normally (killed, not started)
	Stderr   string
	Err      error
}

func (e *ConfctlError) Error() string {
	msg := fmt.Sprintf("%s: %v", strings.Join(e.Argv, " "), e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": stderr: " + tail(s, 1000)
	}
	return msg
}

func (e *ConfctlError) Unwrap() error { return e.Err }

// Argv returns the argv of one confctl run on discovery objects (exported
// for logs and tests).
func (c *Confctl) Argv(selector, action string) []string {
	return c.argvFor("discovery", selector, action)
}

func (c *Confctl) argvFor(objectType, selector, action string) []string {
	argv := slices.Clone(c.command)
	if c.config != "" {
		argv = append(argv, "--config", c.config)
	}
	if c.quiet {
		argv = append(argv, "--quiet")
	}
	return append(argv, "--object-type", objectType, "select", selector, action)
}

// run executes one confctl action on discovery objects and returns its
// stdout.
func (c *Confctl) run(ctx context.Context, selector, action string) ([]byte, error) {
	return c.runFor(ctx, "discovery", selector, action)
}

func (c *Confctl) runFor(ctx context.Context, objectType, selector, action string) ([]byte, error) {
	argv := c.argvFor(objectType, selector, action)
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// SIGTERM first: sudo relays it to confctl, which it could not do for
	// SIGKILL. WaitDelay then kills and closes the pipes.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = confctlWaitDelay
	cmd.Stdin = nil // /dev/null: confirmation prompts read EOF and abort
	stdout := &boundedBuffer{limit: maxConfctlStdout}
	stderr := &boundedBuffer{limit: maxConfctlStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	start := time.Now()
	err := cmd.Run()
	c.logger.Debug("ran confctl", "argv", argv, "duration", time.Since(start), "err", err)
	if err != nil {
		cerr := &ConfctlError{Argv: argv, ExitCode: -1, Stderr: stderr.String(), Err: err}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			cerr.ExitCode = exitErr.ExitCode()
		}
		if ctx.Err() != nil {
			cerr.Err = fmt.Errorf("no answer within %s (%w): %v", c.timeout, ctx.Err(), err)
		}
		return stdout.Bytes(), cerr
	}
	if stdout.truncated {
		return nil, &ConfctlError{Argv: argv, Stderr: stderr.String(), Err: fmt.Errorf("output longer than %d bytes", maxConfctlStdout)}
	}
	return stdout.Bytes(), nil
}

func selectorFor(service, datacenter string) string {
	if datacenter == "" {
		return "dnsdisc=" + service
	}
	return "dnsdisc=" + service + ",name=" + datacenter
}

// getObjects runs a get and checks every object belongs to service.
func (c *Confctl) getObjects(ctx context.Context, service, datacenter string) ([]Object, error) {
	selector := selectorFor(service, datacenter)
	out, err := c.run(ctx, selector, "get")
	if err != nil {
		return nil, err
	}
	objects, err := ParseGetOutput(out)
	if err != nil {
		return nil, fmt.Errorf("%w: unexpected output of confctl select %s get: %v", ErrVerify, selector, err)
	}
	for _, o := range objects {
		if o.Tag("dnsdisc") != service {
			return nil, fmt.Errorf("%w: confctl select %s returned object %q with tags %q", ErrVerify, selector, o.Name, o.Tags)
		}
	}
	return objects, nil
}

// getOne returns the single object selector dnsdisc=<svc>,name=<dc> selects.
func (c *Confctl) getOne(ctx context.Context, service, datacenter string) (State, error) {
	objects, err := c.getObjects(ctx, service, datacenter)
	if err != nil {
		return State{}, err
	}
	switch len(objects) {
	case 0:
		return State{}, fmt.Errorf("%w: confctl selected no object for %s (poolbot never creates discovery objects)", ErrNotFound, selectorFor(service, datacenter))
	case 1:
		if objects[0].Name != datacenter {
			return State{}, fmt.Errorf("%w: confctl select %s returned object %q", ErrVerify, selectorFor(service, datacenter), objects[0].Name)
		}
		return objects[0].State, nil
	}
	return State{}, fmt.Errorf("%w: confctl selected %d objects for %s, want exactly one", ErrVerify, len(objects), selectorFor(service, datacenter))
}

// Get implements Client.
func (c *Confctl) Get(ctx context.Context, service, datacenter string) (State, error) {
	if err := validateNames(service, datacenter); err != nil {
		return State{}, fmt.Errorf("conftool: get: %w", err)
	}
	st, err := c.getOne(ctx, service, datacenter)
	if err != nil {
		return State{}, fmt.Errorf("conftool: get %s/%s: %w", service, datacenter, err)
	}
	return st, nil
}

// List implements Client.
func (c *Confctl) List(ctx context.Context, service string) (map[string]State, error) {
	if err := ValidateName("service", service); err != nil {
		return nil, fmt.Errorf("conftool: list: %w", err)
	}
	states, err := c.list(ctx, service)
	if err != nil {
		return nil, fmt.Errorf("conftool: list %s: %w", service, err)
	}
	return states, nil
}

func (c *Confctl) list(ctx context.Context, service string) (map[string]State, error) {
	objects, err := c.getObjects(ctx, service, "")
	if err != nil {
		return nil, err
	}
	if len(objects) == 0 {
		return nil, fmt.Errorf("%w: confctl selected no object for %s", ErrNotFound, selectorFor(service, ""))
	}
	states := make(map[string]State, len(objects))
	for _, o := range objects {
		if _, dup := states[o.Name]; dup {
			return nil, fmt.Errorf("%w: confctl printed %s twice", ErrVerify, o.Name)
		}
		if err := ValidateName("datacenter", o.Name); err != nil {
			return nil, fmt.Errorf("%w: confctl printed an object named %q", ErrVerify, o.Name)
		}
		states[o.Name] = o.State
	}
	return states, nil
}

// SetPooled implements Client: check that the selector picks exactly one
// object, check the last-pooled guard on a fresh read, run
// set/pooled=true|false, then read back.
func (c *Confctl) SetPooled(ctx context.Context, service, datacenter string, pooled bool) (State, error) {
	wrap := func(err error) error {
		return fmt.Errorf("conftool: set %s/%s pooled=%t: %w", service, datacenter, pooled, err)
	}
	if err := validateNames(service, datacenter); err != nil {
		return State{}, wrap(err)
	}
	// The same selector as the set must pick exactly one existing object:
	// confctl would prompt for several, and silently do nothing for none.
	if _, err := c.getOne(ctx, service, datacenter); err != nil {
		return State{}, wrap(err)
	}
	if !pooled {
		states, err := c.list(ctx, service)
		if err != nil {
			return State{}, wrap(fmt.Errorf("reading every datacenter for the last-pooled check: %w", err))
		}
		if err := CheckDepool(service, datacenter, states); err != nil {
			return states[datacenter], wrap(err)
		}
	}
	if err := c.set(ctx, service, datacenter, pooled); err != nil {
		return State{}, wrap(err)
	}

	if pooled {
		st, err := c.getOne(ctx, service, datacenter)
		if err != nil {
			return State{}, wrap(fmt.Errorf("read-back: %w", err))
		}
		if st, err = checkAfterWrite(service, datacenter, pooled, map[string]State{datacenter: st}); err != nil {
			return st, wrap(err)
		}
		return st, nil
	}
	after, err := c.list(ctx, service)
	if err != nil {
		return State{}, wrap(fmt.Errorf("read-back: %w", err))
	}
	st, err := checkAfterWrite(service, datacenter, pooled, after)
	if err != nil {
		return st, wrap(err)
	}
	if len(PooledDatacenters(after)) == 0 {
		// Another datacenter was depooled concurrently. confctl has no
		// compare-and-swap, so this re-pools unconditionally.
		race := &LastPooledError{Service: service, Datacenter: datacenter}
		if err := c.set(ctx, service, datacenter, true); err != nil {
			return st, wrap(fmt.Errorf("%w: after the write no datacenter is pooled (concurrent depool elsewhere) and re-pooling failed: %v: CHECK NOW", race, err))
		}
		c.logger.Warn("reverted depool: a concurrent depool left no datacenter pooled", "service", service, "datacenter", datacenter)
		return st, wrap(fmt.Errorf("%w: after the write no datacenter was pooled (concurrent depool elsewhere); %s re-pooled", race, datacenter))
	}
	return st, nil
}

func (c *Confctl) set(ctx context.Context, service, datacenter string, pooled bool) error {
	action := fmt.Sprintf("set/pooled=%t", pooled)
	out, err := c.run(ctx, selectorFor(service, datacenter), action)
	if err != nil {
		return err
	}
	changes, unexpected := ParseSetOutput(out)
	for _, ch := range changes {
		c.logger.Info("confctl changed a field", "object", ch.Object, "field", ch.Field, "from", ch.From, "to", ch.To)
	}
	if len(unexpected) > 0 {
		// The read-back decides whether the set worked; keep what confctl
		// said for whoever investigates.
		c.logger.Warn("unexpected confctl set output", "action", action, "lines", unexpected)
	}
	return nil
}

// boundedBuffer keeps the first limit bytes written and drops the rest,
// still reporting full writes so the child never sees EPIPE.
type boundedBuffer struct {
	buf       bytes.Buffer
	limit     int
	truncated bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); room < len(p) {
		b.truncated = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	b.buf.Write(p)
	return len(p), nil
}

func (b *boundedBuffer) Bytes() []byte { return b.buf.Bytes() }

func (b *boundedBuffer) String() string {
	if b.truncated {
		return b.buf.String() + "…(truncated)"
	}
	return b.buf.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
