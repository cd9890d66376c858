package restart

import (
	"errors"
	"fmt"
	"time"
)

// Executor names for Config.Executor.
const (
	ExecutorSSH   = "ssh"
	ExecutorCumin = "cumin"
	ExecutorLocal = "local"
)

// Config is the `restart` section of poolbot's config.
type Config struct {
	// Executor is how commands reach the hosts: "ssh", "cumin" or "local".
	Executor string `yaml:"executor"`
	// SSH configures the ssh executor.
	SSH SSHConfig `yaml:"ssh"`
	// Cumin configures the cumin executor and hosts_query.
	Cumin CuminConfig `yaml:"cumin"`
	// Local configures the local executor.
	Local LocalConfig `yaml:"local"`
	// Hosts is the static, ordered host list. Exactly one of hosts and
	// hosts_query is required.
	Hosts []string `yaml:"hosts"`
	// HostsQuery is a cumin query whose hosts are restarted in cumin's
	// order, e.g. "A:docker-registry" (resolved with the cumin section,
	// whatever the executor).
	HostsQuery string `yaml:"hosts_query"`
	// Units to restart; default docker-registry-restricted.service and
	// docker-registry-ml.service.
	Units []string `yaml:"units"`
	// Pace between hosts; default 30s when omitted, "0s" for none.
	Pace *time.Duration `yaml:"pace"`
	// PerHostTimeout bounds one host's restart and checks (and is the
	// executors' default timeout); default 5m.
	PerHostTimeout time.Duration `yaml:"per_host_timeout"`
	// RestartCommand is the restart argv template; default
	// ["systemctl", "restart", "{units}"].
	RestartCommand []string `yaml:"restart_command"`
	// CheckCommand is the is-active argv template; default
	// ["systemctl", "is-active", "--quiet", "{unit}"].
	CheckCommand []string `yaml:"check_command"`
}

// Validate checks the section. Messages name the key as restart.<key>.
func (c Config) Validate() error {
	const p = "restart."
	var errs []error
	switch c.Executor {
	case ExecutorSSH:
		if err := c.SSH.Validate(p + "ssh."); err != nil {
			errs = append(errs, err)
		}
	case ExecutorCumin:
		if err := c.Cumin.Validate(p + "cumin."); err != nil {
			errs = append(errs, err)
		}
	case ExecutorLocal:
		if err := c.Local.Validate(p + "local."); err != nil {
			errs = append(errs, err)
		}
	case "":
		errs = append(errs, fmt.Errorf("%sexecutor: required: one of ssh, cumin, local", p))
	default:
		errs = append(errs, fmt.Errorf("%sexecutor: %q is not one of ssh, cumin, local", p, c.Executor))
	}
	switch {
	case len(c.Hosts) > 0 && c.HostsQuery != "":
		errs = append(errs, fmt.Errorf("%shosts and %shosts_query: set only one", p, p))
	case len(c.Hosts) == 0 && c.HostsQuery == "":
		errs = append(errs, fmt.Errorf("%shosts or %shosts_query: one is required", p, p))
	case c.HostsQuery != "":
		if err := ValidateQuery(c.HostsQuery); err != nil {
			errs = append(errs, fmt.Errorf("%shosts_query: %w", p, err))
		}
		if c.Executor != ExecutorCumin {
			if err := c.Cumin.Validate(p + "cumin."); err != nil {
				errs = append(errs, err)
			}
		}
	}
	seen := map[string]bool{}
	for i, h := range c.Hosts {
		if err := ValidateHost(h); err != nil {
			errs = append(errs, fmt.Errorf("%shosts[%d]: %w", p, i, err))
		} else if seen[h] {
			errs = append(errs, fmt.Errorf("%shosts[%d]: %s listed twice", p, i, h))
		}
		seen[h] = true
	}
	for i, u := range c.Units {
		if err := ValidateUnit(u); err != nil {
			errs = append(errs, fmt.Errorf("%sunits[%d]: %w", p, i, err))
		}
	}
	if c.Pace != nil && *c.Pace < 0 {
		errs = append(errs, fmt.Errorf("%space: must not be negative", p))
	}
	if c.PerHostTimeout < 0 {
		errs = append(errs, fmt.Errorf("%sper_host_timeout: must not be negative", p))
	}
	if len(c.RestartCommand) > 0 {
		if err := validateTemplate(p+"restart_command", c.RestartCommand); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.CheckCommand) > 0 {
		if err := validateTemplate(p+"check_command", c.CheckCommand); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c Config) units() []string {
	if len(c.Units) == 0 {
		return DefaultUnits()
	}
	return append([]string(nil), c.Units...)
}

func (c Config) pace() time.Duration {
	if c.Pace == nil {
		return DefaultPace
	}
	return *c.Pace
}

func (c Config) perHostTimeout() time.Duration {
	if c.PerHostTimeout == 0 {
		return DefaultPerHostTimeout
	}
	return c.PerHostTimeout
}

// NewExecutor builds the configured executor. Options.DefaultTimeout, when
// zero, becomes the per-host timeout.
func NewExecutor(cfg Config, opts Options) (Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.DefaultTimeout == 0 {
		opts.DefaultTimeout = cfg.perHostTimeout()
	}
	// Each case checks err itself so that a failed constructor never
	// returns a non-nil interface holding a nil pointer.
	switch cfg.Executor {
	case ExecutorSSH:
		e, err := NewSSH(cfg.SSH, opts)
		if err != nil {
			return nil, err
		}
		return e, nil
	case ExecutorCumin:
		e, err := NewCumin(cfg.Cumin, opts)
		if err != nil {
			return nil, err
		}
		return e, nil
	default:
		e, err := NewLocal(cfg.Local, opts)
		if err != nil {
			return nil, err
		}
		return e, nil
	}
}

// NewHostLister returns the cumin lister hosts_query needs, or nil when the
// hosts are static.
func NewHostLister(cfg Config, opts Options) (HostLister, error) {
	if cfg.HostsQuery == "" {
		return nil, nil
	}
	c, err := NewCumin(cfg.Cumin, opts)
	if err != nil {
		return nil, err
	}
	return c, nil
}
