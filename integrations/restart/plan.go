package restart

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Placeholders of the plan's command templates, whole elements only.
const (
	// PlaceholderUnits is replaced by all units, as separate elements: the
	// step runs once per host.
	PlaceholderUnits = "{units}"
	// PlaceholderUnit is replaced by one unit: the step runs once per unit.
	PlaceholderUnit = "{unit}"
)

// DefaultUnits are the registry instances whose S3 connections go stale
// when apus moves: restricted and ml.
func DefaultUnits() []string {
	return []string{"docker-registry-restricted.service", "docker-registry-ml.service"}
}

// DefaultRestartCommand restarts every unit in one systemctl call, as the
// existing roll-restart cookbook does; systemctl waits for the start jobs.
func DefaultRestartCommand() []string { return []string{"systemctl", "restart", PlaceholderUnits} }

// DefaultCheckCommand asks systemd whether one unit is active; exit 0 means
// active, 3 inactive or failed.
func DefaultCheckCommand() []string {
	return []string{"systemctl", "is-active", "--quiet", PlaceholderUnit}
}

// Default plan timing.
const (
	// DefaultPace is the pause between hosts, as in the cumin form
	// `cumin -b 1 -s 30 ...`.
	DefaultPace = 30 * time.Second
	// DefaultPerHostTimeout bounds one host's restart and checks.
	DefaultPerHostTimeout = 5 * time.Minute
)

// Plan is what to restart and how. The procedure walks Hosts in order,
// calling RestartHost for each, then its own health checks, then waits
// Pace; it stops at the first failure.
type Plan struct {
	// Hosts in the order they are restarted.
	Hosts []string
	// Units to restart on each host.
	Units []string
	// Pace is the pause between one host's success and the next host.
	Pace time.Duration
	// PerHostTimeout bounds RestartHost for one host (restart plus checks).
	PerHostTimeout time.Duration
	// RestartCommand is the restart argv template ({units} or {unit}).
	RestartCommand []string
	// CheckCommand is the "is it active" argv template, normally per {unit}.
	CheckCommand []string
}

// Step is one command RestartHost runs on a host.
type Step struct {
	// Name says what the step is in messages: "restart", "restart <unit>",
	// "check <unit>", "check".
	Name string
	// Argv is the command.
	Argv []string
}

// unitRE is a systemd service unit name; the first character may not be
// '-' so that a unit never reads as an option.
var unitRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9@._-]*\.service$`)

// ValidateUnit checks a unit name before it becomes an argv element.
func ValidateUnit(u string) error {
	if len(u) > 256 || !unitRE.MatchString(u) {
		return fmt.Errorf("invalid unit %q: want a systemd service name like docker-registry-ml.service", u)
	}
	return nil
}

// Validate checks a plan built by hand (NewPlan's plans are valid).
func (p Plan) Validate() error {
	var errs []error
	if len(p.Hosts) == 0 {
		errs = append(errs, errors.New("plan has no hosts"))
	}
	seen := map[string]bool{}
	for _, h := range p.Hosts {
		if err := ValidateHost(h); err != nil {
			errs = append(errs, err)
		}
		if seen[h] {
			errs = append(errs, fmt.Errorf("host %s listed twice", h))
		}
		seen[h] = true
	}
	if len(p.Units) == 0 {
		errs = append(errs, errors.New("plan has no units"))
	}
	for _, u := range p.Units {
		if err := ValidateUnit(u); err != nil {
			errs = append(errs, err)
		}
	}
	if p.Pace < 0 {
		errs = append(errs, errors.New("negative pace"))
	}
	if p.PerHostTimeout < 0 {
		errs = append(errs, errors.New("negative per-host timeout"))
	}
	if err := validateTemplate("restart command", p.RestartCommand); err != nil {
		errs = append(errs, err)
	}
	if err := validateTemplate("check command", p.CheckCommand); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// validateTemplate checks a plan command template: a fixed program, the
// placeholders as whole elements, not both {unit} and {units}.
func validateTemplate(what string, t []string) error {
	if len(t) == 0 {
		return fmt.Errorf("%s: empty", what)
	}
	var one, all int
	for i, a := range t {
		switch {
		case a == "" || strings.IndexByte(a, 0) >= 0:
			return fmt.Errorf("%s[%d]: empty or contains NUL", what, i)
		case a == PlaceholderUnit:
			one++
		case a == PlaceholderUnits:
			all++
		case strings.Contains(a, PlaceholderUnit) || strings.Contains(a, "{units}"):
			return fmt.Errorf("%s[%d]: %q: placeholders must be whole elements", what, i, a)
		}
		if i == 0 && (one > 0 || all > 0) {
			return fmt.Errorf("%s[0]: the program must be fixed, not a placeholder", what)
		}
	}
	if one > 0 && all > 0 {
		return fmt.Errorf("%s: use %s or %s, not both", what, PlaceholderUnit, PlaceholderUnits)
	}
	return nil
}

// Steps returns the commands RestartHost runs on each host, in order: the
// restart step(s), then the check step(s). A template with {unit} gives one
// step per unit, one with {units} (or neither) a single step.
func (p Plan) Steps() []Step {
	steps := expandTemplate("restart", p.RestartCommand, p.Units)
	return append(steps, expandTemplate("check", p.CheckCommand, p.Units)...)
}

func expandTemplate(name string, t []string, units []string) []Step {
	perUnit := false
	for _, a := range t {
		if a == PlaceholderUnit {
			perUnit = true
		}
	}
	build := func(unit string) []string {
		var argv []string
		for _, a := range t {
			switch a {
			case PlaceholderUnit:
				argv = append(argv, unit)
			case PlaceholderUnits:
				argv = append(argv, units...)
			default:
				argv = append(argv, a)
			}
		}
		return argv
	}
	if !perUnit {
		return []Step{{Name: name, Argv: build("")}}
	}
	steps := make([]Step, 0, len(units))
	for _, u := range units {
		steps = append(steps, Step{Name: name + " " + u, Argv: build(u)})
	}
	return steps
}

// StepError says which step failed on which host. Err is nil when the
// command ran and exited non-zero (Result has the exit code and output);
// otherwise Err is the executor's *RunError: the command could not be run
// or its outcome is unknown.
type StepError struct {
	Host   string
	Step   string
	Result Result
	Err    error
}

func (e *StepError) Error() string {
	if e.Err != nil {
		var re *RunError
		if errors.As(e.Err, &re) {
			// "host X: restart: ssh: handshake: ..." without the host twice.
			return fmt.Sprintf("host %s: %s: %s: %s: %v", e.Host, e.Step, re.Via, re.Op, re.Err)
		}
		return fmt.Sprintf("host %s: %s: %v", e.Host, e.Step, e.Err)
	}
	return fmt.Sprintf("host %s: %s: %s", e.Host, e.Step, e.Result.Summary(300))
}

func (e *StepError) Unwrap() error { return e.Err }

// Ran reports whether the failing command ran to an exit status (a
// failure of the command, not of the transport).
func (e *StepError) Ran() bool { return e.Err == nil }

// RestartHost runs the plan's steps on one host: restart, then the
// is-active checks, stopping at the first failure, all within
// plan.PerHostTimeout. It returns the failing step's Result (or, on
// success, the restart step's) with Duration covering every step run; the
// error is a *StepError. It does not poll health, pace, or touch any other
// host: that is the procedure's loop.
func RestartHost(ctx context.Context, exec Executor, plan Plan, host string) (Result, error) {
	if err := ValidateHost(host); err != nil {
		return Result{Host: host, ExitCode: -1}, &StepError{Host: host, Step: "validate", Result: Result{Host: host, ExitCode: -1}, Err: err}
	}
	if plan.PerHostTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, plan.PerHostTimeout)
		defer cancel()
	}
	var total time.Duration
	var first Result
	for i, step := range plan.Steps() {
		res, err := exec.Run(ctx, host, step.Argv)
		total += res.Duration
		res.Duration = total
		if err != nil {
			return res, &StepError{Host: host, Step: step.Name, Result: res, Err: err}
		}
		if res.ExitCode != 0 {
			return res, &StepError{Host: host, Step: step.Name, Result: res}
		}
		if i == 0 {
			first = res
		}
	}
	first.Duration = total
	return first, nil
}

// HostLister lists the hosts a query selects; *Cumin is one.
type HostLister interface {
	ListHosts(ctx context.Context, query string) ([]string, error)
}

// NewPlan builds the plan from cfg: the static hosts, or the hosts
// lister returns for cfg.HostsQuery (lister may be nil when hosts are
// static), with the defaults for what cfg leaves out.
func NewPlan(ctx context.Context, cfg Config, lister HostLister) (Plan, error) {
	if err := cfg.Validate(); err != nil {
		return Plan{}, err
	}
	p := Plan{
		Units:          cfg.units(),
		Pace:           cfg.pace(),
		PerHostTimeout: cfg.perHostTimeout(),
		RestartCommand: orDefault(cfg.RestartCommand, DefaultRestartCommand),
		CheckCommand:   orDefault(cfg.CheckCommand, DefaultCheckCommand),
	}
	if len(cfg.Hosts) > 0 {
		p.Hosts = append([]string(nil), cfg.Hosts...)
	} else {
		if lister == nil {
			return Plan{}, fmt.Errorf("restart: hosts_query %q needs a host lister (cumin)", cfg.HostsQuery)
		}
		hosts, err := ResolveHosts(ctx, cfg.HostsQuery, lister)
		if err != nil {
			return Plan{}, fmt.Errorf("restart: %w", err)
		}
		p.Hosts = hosts
	}
	if err := p.Validate(); err != nil {
		return Plan{}, fmt.Errorf("restart: plan: %w", err)
	}
	return p, nil
}

// ResolveHosts returns the hosts query selects through lister, in its
// order; a query that selects nothing is an error, as is a lister failure
// (both name the query).
func ResolveHosts(ctx context.Context, query string, lister HostLister) ([]string, error) {
	hosts, err := lister.ListHosts(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("hosts_query %q: %w", query, err)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("hosts_query %q matched no hosts", query)
	}
	return hosts, nil
}

func orDefault(v []string, def func() []string) []string {
	if len(v) == 0 {
		return def()
	}
	return append([]string(nil), v...)
}
