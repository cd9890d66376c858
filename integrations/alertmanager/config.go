package alertmanager

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Defaults applied by Config's accessors when a field is unset.
const (
	// DefaultMargin is added to the per-host timeout to make the silence
	// outlast the restart and its health checks.
	DefaultMargin = 10 * time.Minute
	// DefaultTimeout bounds one request to one Alertmanager (spicerack: 2 s).
	DefaultTimeout = 2 * time.Second
	// MaxDuration caps a silence: a forgotten one must not hide a host's
	// alerts for days.
	MaxDuration = 24 * time.Hour
)

// Config is the alertmanager: section.
//
//	alertmanager:
//	  urls: [http://alertmanager-eqiad.wikimedia.org:9093, http://alertmanager-codfw.wikimedia.org:9093]
//	  fail_closed: true   # default: no restart without a silence
//	  margin: 10m         # silence = per-host timeout + margin
//	  timeout: 2s         # per request and Alertmanager
type Config struct {
	// URLs are the Alertmanagers' base URLs (scheme://host[:port][/prefix]),
	// tried in order. Empty disables silencing.
	URLs []string `yaml:"urls"`
	// FailClosed, default true, refuses to restart a host that could not be
	// silenced. false goes on with a loud notice.
	FailClosed *bool `yaml:"fail_closed"`
	// Margin is added to the per-host timeout for the silence's duration.
	Margin time.Duration `yaml:"margin"`
	// Timeout bounds each request to one Alertmanager.
	Timeout time.Duration `yaml:"timeout"`
}

// Enabled reports whether silences are configured.
func (c Config) Enabled() bool { return len(c.URLs) > 0 }

// FailClosedOrDefault returns FailClosed, true when unset.
func (c Config) FailClosedOrDefault() bool { return c.FailClosed == nil || *c.FailClosed }

// MarginOrDefault returns Margin, DefaultMargin when unset.
func (c Config) MarginOrDefault() time.Duration {
	if c.Margin == 0 {
		return DefaultMargin
	}
	return c.Margin
}

// TimeoutOrDefault returns Timeout, DefaultTimeout when unset.
func (c Config) TimeoutOrDefault() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// Duration is how long a host's silence lasts: its restart timeout plus the
// margin.
func (c Config) Duration(perHostTimeout time.Duration) time.Duration {
	return perHostTimeout + c.MarginOrDefault()
}

// Validate checks the section; errors name the offending key. An empty
// section is valid (silencing off).
func (c Config) Validate() error {
	seen := make(map[string]bool)
	for i, raw := range c.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("alertmanager.urls[%d]: %w", i, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("alertmanager.urls[%d]: %q must be an http:// or https:// URL", i, raw)
		}
		if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("alertmanager.urls[%d]: %q must be scheme://host[:port][/path] (no user, query or fragment)", i, raw)
		}
		if strings.Contains(u.Path, "/api/") {
			return fmt.Errorf("alertmanager.urls[%d]: %q: give the base URL, without /api/v2", i, raw)
		}
		norm := strings.TrimRight(u.String(), "/")
		if seen[norm] {
			return fmt.Errorf("alertmanager.urls[%d]: %q is listed twice", i, raw)
		}
		seen[norm] = true
	}
	if !c.Enabled() && c.FailClosed != nil {
		return errors.New("alertmanager.fail_closed: set, but alertmanager.urls is empty (silencing is off)")
	}
	if c.Margin < 0 {
		return fmt.Errorf("alertmanager.margin: %s must not be negative", c.Margin)
	}
	if c.Margin > MaxDuration {
		return fmt.Errorf("alertmanager.margin: %s is longer than the %s a silence may last", c.Margin, MaxDuration)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("alertmanager.timeout: %s must not be negative", c.Timeout)
	}
	if c.Timeout > time.Minute {
		return fmt.Errorf("alertmanager.timeout: %s is too long for one request (at most 1m)", c.Timeout)
	}
	return nil
}
