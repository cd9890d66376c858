package conftool

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"poolbot/internal/secret"
)

// Backend names for Config.Backend.
const (
	BackendEtcd    = "etcd"
	BackendConfctl = "confctl"
)

// Defaults applied by the constructors when a field is zero.
const (
	DefaultPrefix         = "/conftool/v1"
	DefaultEtcdTimeout    = 10 * time.Second
	DefaultConfctlTimeout = 60 * time.Second
	DefaultConfctlCommand = "confctl"
)

// Config selects and configures the conftool backend.
type Config struct {
	// Backend is "etcd" (talk to etcd's v2 API directly) or "confctl" (run
	// the confctl CLI).
	Backend string        `yaml:"backend"`
	Etcd    EtcdConfig    `yaml:"etcd"`
	Confctl ConfctlConfig `yaml:"confctl"`
}

// EtcdConfig configures the etcd backend.
type EtcdConfig struct {
	// Endpoints are etcd client URLs (http:// or https://), tried in order
	// with failover, e.g. https://conf1007.eqiad.wmnet:4001.
	Endpoints []string `yaml:"endpoints"`
	// Prefix is conftool's key prefix (namespace + API version); default
	// /conftool/v1.
	Prefix string `yaml:"prefix"`
	// Username for etcd v2 basic auth; empty disables auth.
	Username string `yaml:"username"`
	// Password is read from a file or an environment variable.
	Password secret.Ref `yaml:"password"`
	// CAFile is a PEM bundle to verify the servers' certificates; empty uses
	// the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are an optional client certificate.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Timeout bounds each request to one endpoint; default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// ConfctlConfig configures the confctl backend.
type ConfctlConfig struct {
	// Command is the argv that runs confctl, e.g. ["sudo", "-n",
	// "/usr/bin/confctl"]; default ["confctl"]. No shell is involved.
	Command []string `yaml:"command"`
	// Config is passed as --config; empty uses confctl's default
	// (/etc/conftool/config.yaml).
	Config string `yaml:"config"`
	// Quiet passes --quiet so confctl does not post its own "!log ... conftool
	// action" SAL line; default true, because poolbot logs the change itself.
	Quiet *bool `yaml:"quiet"`
	// Timeout bounds each confctl run; default 60s.
	Timeout time.Duration `yaml:"timeout"`
}

// QuietOrDefault returns Quiet, true when unset.
func (c ConfctlConfig) QuietOrDefault() bool { return c.Quiet == nil || *c.Quiet }

// prefixPattern: absolute, slash-separated segments of safe characters.
var prefixPattern = regexp.MustCompile(`^(/[A-Za-z0-9_.-]+)+$`)

// Validate checks the configuration; errors name the offending key.
func (c Config) Validate() error {
	switch c.Backend {
	case BackendEtcd:
		return c.Etcd.Validate()
	case BackendConfctl:
		return c.Confctl.Validate()
	case "":
		return errors.New(`conftool.backend: missing; must be "etcd" or "confctl"`)
	}
	return fmt.Errorf(`conftool.backend: %q is not "etcd" or "confctl"`, c.Backend)
}

// Validate checks the etcd settings.
func (c EtcdConfig) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("conftool.etcd.endpoints: at least one etcd client URL is required")
	}
	https := 0
	for i, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			return fmt.Errorf("conftool.etcd.endpoints[%d]: %w", i, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("conftool.etcd.endpoints[%d]: %q must be an http:// or https:// URL", i, ep)
		}
		if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
			return fmt.Errorf("conftool.etcd.endpoints[%d]: %q must be scheme://host:port only (no user, path or query)", i, ep)
		}
		if u.Scheme == "https" {
			https++
		}
	}
	if c.Prefix != "" {
		if !prefixPattern.MatchString(c.Prefix) {
			return fmt.Errorf("conftool.etcd.prefix: %q must be an absolute key path like /conftool/v1 (letters, digits, _ . -; no trailing slash)", c.Prefix)
		}
		for _, seg := range strings.Split(c.Prefix[1:], "/") {
			if seg == "." || seg == ".." {
				return fmt.Errorf("conftool.etcd.prefix: %q must not contain . or .. segments", c.Prefix)
			}
		}
	}
	if c.Username == "" && c.Password.IsSet() {
		return errors.New("conftool.etcd.username: required when password is set")
	}
	if c.Username != "" {
		if strings.ContainsAny(c.Username, ":\x00\r\n") {
			return errors.New("conftool.etcd.username: must not contain ':' or control characters")
		}
		if !c.Password.IsSet() {
			return errors.New("conftool.etcd.password: a file or env is required when username is set")
		}
		if err := c.Password.Validate(); err != nil {
			return fmt.Errorf("conftool.etcd.password: %w", err)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("conftool.etcd.cert_file / key_file: set both or neither")
	}
	if (c.CAFile != "" || c.CertFile != "") && https == 0 {
		return errors.New("conftool.etcd.ca_file / cert_file: set, but no endpoint uses https://")
	}
	if c.Timeout < 0 {
		return fmt.Errorf("conftool.etcd.timeout: %s must not be negative", c.Timeout)
	}
	return nil
}

// Validate checks the confctl settings.
func (c ConfctlConfig) Validate() error {
	for i, arg := range c.Command {
		if arg == "" || strings.ContainsAny(arg, "\x00\r\n") {
			return fmt.Errorf("conftool.confctl.command[%d]: %q must be non-empty without control characters", i, arg)
		}
	}
	if len(c.Command) > 0 && strings.HasPrefix(c.Command[0], "-") {
		return fmt.Errorf("conftool.confctl.command[0]: %q must be a program, not a flag", c.Command[0])
	}
	if c.Config != "" && (strings.HasPrefix(c.Config, "-") || strings.ContainsAny(c.Config, "\x00\r\n")) {
		return fmt.Errorf("conftool.confctl.config: %q must be a file path (no leading '-', no control characters)", c.Config)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("conftool.confctl.timeout: %s must not be negative", c.Timeout)
	}
	return nil
}
