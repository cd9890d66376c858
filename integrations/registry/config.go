package registry

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"poolbot/internal/secret"
)

// Config is the `registry:` section of poolbot's config. Decode YAML onto
// DefaultConfig() so omitted keys keep WMF's defaults; zero values of
// durations and counts also mean "default".
type Config struct {
	// Scheme of the main port: "http" (default) or "https". The debug
	// listener is always plain HTTP in distribution.
	Scheme string `yaml:"scheme"`
	// CAFile is an extra PEM CA bundle trusted for https.
	CAFile string `yaml:"ca_file"`
	// Instances run on every registry host (WMF: restricted 5002/5003, ml 5004/5005).
	Instances []InstanceConfig `yaml:"instances"`
	// BalancerURL is the load balancer in front of the service's hosts
	// (WMF: LVS for docker-registry.discovery.wmnet), e.g.
	// https://docker-registry.discovery.wmnet. Optional: when set, the
	// probe across hosts also reads its blob through it. The probe
	// repository must route to the probed instance there (WMF's nginx
	// sends /v2/restricted/... to 5002: probe_repository
	// restricted/poolbot-probe).
	BalancerURL string       `yaml:"balancer_url"`
	Health      HealthConfig `yaml:"health"`
	Probe       ProbeConfig  `yaml:"probe"`
	Auth        AuthConfig   `yaml:"auth"`
}

// InstanceConfig is one registry instance template, repeated on every host.
type InstanceConfig struct {
	// Name is the instance title (docker-registry-<name>.service).
	Name string `yaml:"name"`
	// Port is the main (API) port, DebugPort the debug listener with /debug/health.
	Port      int `yaml:"port"`
	DebugPort int `yaml:"debug_port"`
	// ProbeRepository overrides probe.repository for this instance.
	ProbeRepository string `yaml:"probe_repository"`
}

// HealthConfig tunes Health and WaitHealthy.
type HealthConfig struct {
	// Timeout bounds each HTTP request of a health check (default 5s).
	Timeout time.Duration `yaml:"timeout"`
	// Interval between polls in WaitHealthy (default 2s).
	Interval time.Duration `yaml:"interval"`
	// WaitTimeout bounds WaitHealthy as a whole (default 2m).
	WaitTimeout time.Duration `yaml:"wait_timeout"`
	// Consecutive healthy answers WaitHealthy needs (default 1). A restarted
	// registry says `{}` until its storage check has failed `threshold`
	// times (WMF: 3 × 10s), so (consecutive-1) × interval ≥ 30s makes the
	// gate meaningful on its own.
	Consecutive int `yaml:"consecutive"`
	// V2ExpectStatus is the status GET /v2/ must answer (default 200; 401
	// behind an authenticating proxy without credentials).
	V2ExpectStatus int `yaml:"v2_expect_status"`
}

// ProbeConfig tunes the write-then-read blob probe.
type ProbeConfig struct {
	// Enabled runs the probe after each instance's restart and in the
	// periodic watch (default true).
	Enabled bool `yaml:"enabled"`
	// Repository the probe blob is pushed to (default "poolbot/probe").
	Repository string `yaml:"repository"`
	// Timeout bounds one whole probe (default 30s).
	Timeout time.Duration `yaml:"timeout"`
	// BlobSize is the probe blob's size in bytes (default 256, at most 1 MiB).
	BlobSize int `yaml:"blob_size"`
	// Monolithic sends the blob in the closing PUT instead of a PATCH chunk
	// followed by an empty PUT (docker push uses PATCH).
	Monolithic bool `yaml:"monolithic"`
	// KeepBlobs skips the final DELETE of the probe blob.
	KeepBlobs bool `yaml:"keep_blobs"`
}

// AuthConfig is optional HTTP basic auth for the main port.
type AuthConfig struct {
	Username string `yaml:"username"`
	// Password is read from a file or an environment variable.
	Password secret.Ref `yaml:"password"`
}

// Defaults.
const (
	DefaultProbeRepository = "poolbot/probe"
	defaultHealthTimeout   = 5 * time.Second
	defaultHealthInterval  = 2 * time.Second
	defaultWaitTimeout     = 2 * time.Minute
	defaultProbeTimeout    = 30 * time.Second
	defaultBlobSize        = 256
	maxBlobSize            = 1 << 20
)

// DefaultConfig is WMF's layout: restricted on 5002/5003 and ml on
// 5004/5005, plain HTTP, probe on.
func DefaultConfig() Config {
	return Config{
		Scheme: "http",
		Instances: []InstanceConfig{
			{Name: "restricted", Port: 5002, DebugPort: 5003},
			{Name: "ml", Port: 5004, DebugPort: 5005},
		},
		Health: HealthConfig{
			Timeout:        defaultHealthTimeout,
			Interval:       defaultHealthInterval,
			WaitTimeout:    defaultWaitTimeout,
			Consecutive:    1,
			V2ExpectStatus: http.StatusOK,
		},
		Probe: ProbeConfig{
			Enabled:    true,
			Repository: DefaultProbeRepository,
			Timeout:    defaultProbeTimeout,
			BlobSize:   defaultBlobSize,
		},
	}
}

// withDefaults fills zero values (not Enabled, whose zero is meaningful).
func (c Config) withDefaults() Config {
	if c.Scheme == "" {
		c.Scheme = "http"
	}
	h := &c.Health
	if h.Timeout == 0 {
		h.Timeout = defaultHealthTimeout
	}
	if h.Interval == 0 {
		h.Interval = defaultHealthInterval
	}
	if h.WaitTimeout == 0 {
		h.WaitTimeout = defaultWaitTimeout
	}
	if h.Consecutive == 0 {
		h.Consecutive = 1
	}
	if h.V2ExpectStatus == 0 {
		h.V2ExpectStatus = http.StatusOK
	}
	p := &c.Probe
	if p.Repository == "" {
		p.Repository = DefaultProbeRepository
	}
	if p.Timeout == 0 {
		p.Timeout = defaultProbeTimeout
	}
	if p.BlobSize == 0 {
		p.BlobSize = defaultBlobSize
	}
	return c
}

// Validate reports every problem, each naming its key.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("registry.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Scheme != "http" && c.Scheme != "https" {
		bad("scheme", "must be http or https, not %q", c.Scheme)
	}
	if c.CAFile != "" && c.Scheme != "https" {
		bad("ca_file", "set but scheme is %q (only used for https)", c.Scheme)
	}
	if c.BalancerURL != "" {
		if err := validateBalancerURL(c.BalancerURL); err != nil {
			bad("balancer_url", "%v", err)
		}
	}
	if len(c.Instances) == 0 {
		bad("instances", "at least one instance is required (e.g. {name: restricted, port: 5002, debug_port: 5003})")
	}
	names := map[string]int{}
	ports := map[int]string{}
	for i, in := range c.Instances {
		key := fmt.Sprintf("instances[%d]", i)
		if err := validateInstanceName(in.Name); err != nil {
			bad(key+".name", "%v", err)
		} else if j, dup := names[in.Name]; dup {
			bad(key+".name", "%q already used by instances[%d]", in.Name, j)
		} else {
			names[in.Name] = i
		}
		for _, p := range []struct {
			key  string
			port int
		}{{"port", in.Port}, {"debug_port", in.DebugPort}} {
			if p.port < 1 || p.port > 65535 {
				bad(key+"."+p.key, "must be 1-65535, got %d", p.port)
				continue
			}
			if other, dup := ports[p.port]; dup {
				bad(key+"."+p.key, "port %d already used by %s", p.port, other)
				continue
			}
			ports[p.port] = key + "." + p.key
		}
		if in.ProbeRepository != "" {
			if err := ValidateRepository(in.ProbeRepository); err != nil {
				bad(key+".probe_repository", "%v", err)
			}
		}
	}
	h := c.Health
	if h.Timeout < 0 {
		bad("health.timeout", "must be positive, got %s", h.Timeout)
	}
	if h.Interval < 0 {
		bad("health.interval", "must be positive, got %s", h.Interval)
	}
	if h.WaitTimeout < 0 {
		bad("health.wait_timeout", "must be positive, got %s", h.WaitTimeout)
	} else if h.Interval > 0 && h.WaitTimeout < h.Interval*time.Duration(max(h.Consecutive-1, 0)) {
		bad("health.wait_timeout", "%s is too short for %d consecutive checks %s apart", h.WaitTimeout, h.Consecutive, h.Interval)
	}
	if h.Consecutive < 1 {
		bad("health.consecutive", "must be at least 1, got %d", h.Consecutive)
	}
	if h.V2ExpectStatus < 100 || h.V2ExpectStatus > 599 {
		bad("health.v2_expect_status", "must be an HTTP status (e.g. 200, or 401 behind auth), got %d", h.V2ExpectStatus)
	}
	p := c.Probe
	if err := ValidateRepository(p.Repository); err != nil {
		bad("probe.repository", "%v", err)
	}
	if p.Timeout < 0 {
		bad("probe.timeout", "must be positive, got %s", p.Timeout)
	}
	if p.BlobSize < 1 || p.BlobSize > maxBlobSize {
		bad("probe.blob_size", "must be 1-%d bytes, got %d", maxBlobSize, p.BlobSize)
	}
	a := c.Auth
	if (a.Username == "") != !a.Password.IsSet() {
		bad("auth", "username and password go together")
	}
	if err := a.Password.Validate(); err != nil {
		bad("auth.password", "%v", err)
	}
	return errors.Join(errs...)
}

func validateBalancerURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", truncate(raw, 100), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil ||
		u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: want http(s)://host[:port] with nothing after it", truncate(raw, 100))
	}
	return nil
}

func validateInstanceName(name string) error {
	if name == "" {
		return errors.New("is empty")
	}
	if len(name) > 63 {
		return fmt.Errorf("%q is longer than 63 characters", truncate(name, 20))
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if isAlnum(ch) || i > 0 && (ch == '-' || ch == '_') {
			continue
		}
		return fmt.Errorf("%q: use a-z, 0-9, '-' and '_', starting with a letter or digit", name)
	}
	return nil
}

// InstancesOn returns the configured instances on host, in config order.
func (c Config) InstancesOn(host string) []Instance {
	c = c.withDefaults()
	out := make([]Instance, 0, len(c.Instances))
	for _, in := range c.Instances {
		out = append(out, Instance{
			Name:            in.Name,
			Host:            host,
			Port:            in.Port,
			DebugPort:       in.DebugPort,
			Scheme:          c.Scheme,
			ProbeRepository: in.ProbeRepository,
		})
	}
	return out
}
