package watch

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Drift modes.
const (
	// ModeAuto queues the restarts a drift needs as a restart request.
	ModeAuto = "auto"
	// ModePropose announces the one command an operator runs to queue them.
	ModePropose = "propose"
)

// Defaults (DefaultConfig; zero durations and counts also mean these).
const (
	DefaultDebounce             = time.Minute
	DefaultOperator             = "poolbot"
	DefaultPollInterval         = 30 * time.Second
	DefaultAttributionWindow    = 10 * time.Minute
	DefaultProbeInterval        = 2 * time.Minute
	DefaultFailuresBeforeNotice = 3
)

// Config is the `watch:` section of poolbot's config. Decode YAML onto
// DefaultConfig() so omitted keys keep their defaults.
type Config struct {
	// Drift watches the pooled state of every configured service for
	// changes made outside poolbot.
	Drift DriftConfig `yaml:"drift"`
	// Probe runs the write-then-read registry probe on a schedule.
	Probe ProbeConfig `yaml:"probe"`
}

// DriftConfig tunes the drift watch.
type DriftConfig struct {
	// Enabled turns the drift watch on (default true).
	Enabled bool `yaml:"enabled"`
	// Mode is "auto" (queue a restart request) or "propose" (announce the
	// !restart command for an operator to run). Default auto.
	Mode string `yaml:"mode"`
	// Debounce is how long the watch collects changes of a service after
	// the first one before it acts: every change in that window (a
	// two-datacenter switch, a flip and a flip back) is one drift with one
	// announcement and one restart request, and the conftool !log line
	// naming who did it has arrived by then. A later drift while a restart
	// request of the service is still queued or waiting joins that request.
	// Default 1m.
	Debounce time.Duration `yaml:"debounce"`
	// Operator is the operator name restart requests queued by the watch
	// are made in, shown in SAL lines and !status (default "poolbot").
	Operator string `yaml:"operator"`
	// PollInterval is how often the confctl backend is read (it cannot
	// wait for changes; the etcd backend long-polls). Default 30s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// AttributionWindow is how long before a change a conftool or cookbook
	// !log line may have been said and still name who made it (default 10m).
	AttributionWindow time.Duration `yaml:"attribution_window"`
}

// ProbeConfig tunes the periodic registry probe.
type ProbeConfig struct {
	// Enabled turns the periodic probe on (default true).
	Enabled bool `yaml:"enabled"`
	// Interval between probe rounds over every registry instance of every
	// service, each across the service's hosts (default 2m).
	Interval time.Duration `yaml:"interval"`
	// FailuresBeforeNotice is how many probes of an instance (a host's,
	// or the balancer's) must fail in a row before one channel notice is
	// said (default 3); one recovery notice follows when it passes again.
	FailuresBeforeNotice int `yaml:"failures_before_notice"`
}

// DefaultConfig is the configuration with every default filled in.
func DefaultConfig() Config {
	return Config{
		Drift: DriftConfig{
			Enabled:           true,
			Mode:              ModeAuto,
			Debounce:          DefaultDebounce,
			Operator:          DefaultOperator,
			PollInterval:      DefaultPollInterval,
			AttributionWindow: DefaultAttributionWindow,
		},
		Probe: ProbeConfig{
			Enabled:              true,
			Interval:             DefaultProbeInterval,
			FailuresBeforeNotice: DefaultFailuresBeforeNotice,
		},
	}
}

// WithDefaults fills zero values (not Enabled, whose zero is meaningful).
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Drift.Mode == "" {
		c.Drift.Mode = d.Drift.Mode
	}
	if c.Drift.Debounce == 0 {
		c.Drift.Debounce = d.Drift.Debounce
	}
	if c.Drift.Operator == "" {
		c.Drift.Operator = d.Drift.Operator
	}
	if c.Drift.PollInterval == 0 {
		c.Drift.PollInterval = d.Drift.PollInterval
	}
	if c.Drift.AttributionWindow == 0 {
		c.Drift.AttributionWindow = d.Drift.AttributionWindow
	}
	if c.Probe.Interval == 0 {
		c.Probe.Interval = d.Probe.Interval
	}
	if c.Probe.FailuresBeforeNotice == 0 {
		c.Probe.FailuresBeforeNotice = d.Probe.FailuresBeforeNotice
	}
	return c
}

// operatorPattern is what config.operators[].name allows.
var operatorPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Validate checks the configuration (defaults applied first); every
// problem is reported, each naming its key.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("watch.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	d := c.Drift
	switch d.Mode {
	case ModeAuto, ModePropose:
	default:
		bad("drift.mode", "%q must be auto or propose", d.Mode)
	}
	if d.Debounce < 0 || d.Debounce > time.Hour {
		bad("drift.debounce", "%s must be between 0s and 1h", d.Debounce)
	}
	if !operatorPattern.MatchString(d.Operator) {
		bad("drift.operator", "%q must match %s", d.Operator, operatorPattern)
	}
	if d.PollInterval < time.Second {
		bad("drift.poll_interval", "%s must be at least 1s", d.PollInterval)
	}
	if d.AttributionWindow < 0 || d.AttributionWindow > 24*time.Hour {
		bad("drift.attribution_window", "%s must be between 0s and 24h", d.AttributionWindow)
	}
	p := c.Probe
	if p.Interval < 10*time.Second {
		bad("probe.interval", "%s must be at least 10s", p.Interval)
	}
	if p.FailuresBeforeNotice < 1 || p.FailuresBeforeNotice > 100 {
		bad("probe.failures_before_notice", "%d must be between 1 and 100", p.FailuresBeforeNotice)
	}
	return errors.Join(errs...)
}

// OwnWriteWindow is how far apart poolbot's own confctl write and the poll
// that sees it may be and still be matched (confctl has no write index).
func (c DriftConfig) OwnWriteWindow() time.Duration {
	c = Config{Drift: c}.WithDefaults().Drift
	return c.PollInterval + 2*c.Debounce + time.Minute
}
