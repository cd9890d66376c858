package calendar

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Source kinds for Config.Source.
const (
	SourceWikitech = "wikitech"
	SourceICal     = "ical"
)

// Defaults applied to zero-valued Config fields.
const (
	DefaultAPIURL          = "https://wikitech.wikimedia.org/w/api.php"
	DefaultPage            = "Deployments"
	DefaultTimeout         = 30 * time.Second
	DefaultMaxBodyBytes    = 8 << 20
	DefaultHorizon         = 14 * 24 * time.Hour
	DefaultLookback        = 24 * time.Hour
	DefaultRefreshInterval = 15 * time.Minute // jouncebot's update_interval
	DefaultMaxAge          = time.Hour
	DefaultLeadMargin      = 10 * time.Minute
	DefaultTailMargin      = 15 * time.Minute
	// DefaultUnreadableWindowLength is how long a calendar entry whose end
	// cannot be read is taken to last.
	DefaultUnreadableWindowLength = time.Hour
)

// Config selects and configures the calendar source (YAML key "calendar").
// Zero values mean the documented default.
type Config struct {
	// Source is "wikitech" (default) or "ical".
	Source   string         `yaml:"source"`
	Wikitech WikitechConfig `yaml:"wikitech"`
	ICal     ICalConfig     `yaml:"ical"`
	// RefreshInterval is how often Cached.Run re-reads the calendar.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// MaxAge: a schedule whose last successful fetch is older than this is
	// not trusted (the calendar gate is closed). Must exceed RefreshInterval.
	MaxAge time.Duration `yaml:"max_age"`
	// LeadMargin must be clear before an operation starts.
	LeadMargin time.Duration `yaml:"lead_margin"`
	// TailMargin must be clear after an operation's estimated end.
	TailMargin time.Duration `yaml:"tail_margin"`
	// UnreadableWindowLength is how long a calendar entry whose end cannot
	// be read (a Deployments card without data-utcend, an iCalendar event
	// without DTEND or DURATION) is taken to last from its start. Such an
	// entry is shown as unreadable and keeps the gate closed that long. An
	// entry without a readable start makes the whole calendar unreadable.
	UnreadableWindowLength time.Duration `yaml:"unreadable_window_length"`
}

// WikitechConfig points at a MediaWiki wiki's rendered deployment calendar.
type WikitechConfig struct {
	// APIURL is the wiki's api.php.
	APIURL string `yaml:"api_url"`
	// Page is the calendar's title.
	Page string `yaml:"page"`
	// UserAgent is required by Wikimedia's User-Agent policy and must say how
	// to reach the operators, e.g. "poolbot/1.0 (https://wikitech.wikimedia.org/wiki/Poolbot; sre@example.org)".
	UserAgent string `yaml:"user_agent"`
	// Timeout bounds one whole fetch (both API requests).
	Timeout time.Duration `yaml:"timeout"`
	// MaxBodyBytes bounds each API response.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// UnreadableWindowLength is set by NewSource from the calendar section
	// (calendar.unreadable_window_length).
	UnreadableWindowLength time.Duration `yaml:"-"`
}

// ICalConfig points at an iCalendar feed: exactly one of URL and File.
type ICalConfig struct {
	URL  string `yaml:"url"`
	File string `yaml:"file"`
	// Horizon is how far ahead recurring events are expanded.
	Horizon time.Duration `yaml:"horizon"`
	// Lookback is how far back windows are kept (so a long window that
	// started before now is still active).
	Lookback time.Duration `yaml:"lookback"`
	// Timezone is the zone of floating times and all-day (VALUE=DATE) events
	// when the calendar has no X-WR-TIMEZONE. Default UTC.
	Timezone string `yaml:"timezone"`
	// DeployersProperty names an X- property listing deployer nicks
	// (comma-separated). Events without it fall back to their ATTENDEEs' CN.
	DeployersProperty string `yaml:"deployers_property"`
	// UserAgent for HTTP fetches; default "poolbot-calendar".
	UserAgent    string        `yaml:"user_agent"`
	Timeout      time.Duration `yaml:"timeout"`
	MaxBodyBytes int64         `yaml:"max_body_bytes"`
	// UnreadableWindowLength is set by NewSource from the calendar section
	// (calendar.unreadable_window_length).
	UnreadableWindowLength time.Duration `yaml:"-"`
}

// WithDefaults returns c with zero-valued fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Source == "" {
		c.Source = SourceWikitech
	}
	c.Wikitech = c.Wikitech.withDefaults()
	c.ICal = c.ICal.withDefaults()
	if c.RefreshInterval == 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.LeadMargin == 0 {
		c.LeadMargin = DefaultLeadMargin
	}
	if c.TailMargin == 0 {
		c.TailMargin = DefaultTailMargin
	}
	if c.UnreadableWindowLength == 0 {
		c.UnreadableWindowLength = DefaultUnreadableWindowLength
	}
	c.Wikitech.UnreadableWindowLength = c.UnreadableWindowLength
	c.ICal.UnreadableWindowLength = c.UnreadableWindowLength
	return c
}

func (c WikitechConfig) withDefaults() WikitechConfig {
	if c.APIURL == "" {
		c.APIURL = DefaultAPIURL
	}
	if c.Page == "" {
		c.Page = DefaultPage
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.UnreadableWindowLength == 0 {
		c.UnreadableWindowLength = DefaultUnreadableWindowLength
	}
	return c
}

func (c ICalConfig) withDefaults() ICalConfig {
	if c.Horizon == 0 {
		c.Horizon = DefaultHorizon
	}
	if c.Lookback == 0 {
		c.Lookback = DefaultLookback
	}
	if c.Timezone == "" {
		c.Timezone = "UTC"
	}
	if c.UserAgent == "" {
		c.UserAgent = "poolbot-calendar"
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.UnreadableWindowLength == 0 {
		c.UnreadableWindowLength = DefaultUnreadableWindowLength
	}
	return c
}

// Validate checks the configuration (after defaults), naming the offending
// key. Only the selected source's section is checked.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	switch c.Source {
	case SourceWikitech:
		errs = append(errs, c.Wikitech.validate("calendar.wikitech"))
	case SourceICal:
		errs = append(errs, c.ICal.validate("calendar.ical"))
	default:
		errs = append(errs, fmt.Errorf("calendar.source: %q is not %q or %q", c.Source, SourceWikitech, SourceICal))
	}
	if c.RefreshInterval < time.Minute {
		errs = append(errs, fmt.Errorf("calendar.refresh_interval: %s is below 1m (be gentle with the wiki)", c.RefreshInterval))
	}
	if c.MaxAge <= c.RefreshInterval {
		errs = append(errs, fmt.Errorf("calendar.max_age: %s must exceed calendar.refresh_interval (%s), or every schedule goes stale before it is refreshed", c.MaxAge, c.RefreshInterval))
	}
	if c.LeadMargin < 0 {
		errs = append(errs, fmt.Errorf("calendar.lead_margin: %s is negative", c.LeadMargin))
	}
	if c.TailMargin < 0 {
		errs = append(errs, fmt.Errorf("calendar.tail_margin: %s is negative", c.TailMargin))
	}
	// calendar.unreadable_window_length is checked with the source's
	// section, which WithDefaults gives it to.
	return errors.Join(errs...)
}

func (c WikitechConfig) validate(prefix string) error {
	var errs []error
	if err := checkHTTPURL(c.APIURL); err != nil {
		errs = append(errs, fmt.Errorf("%s.api_url: %w", prefix, err))
	}
	if strings.TrimSpace(c.Page) == "" || strings.ContainsAny(c.Page, "|#<>[]{}\r\n") {
		errs = append(errs, fmt.Errorf("%s.page: %q is not a valid page title", prefix, c.Page))
	}
	if err := checkUserAgent(c.UserAgent); err != nil {
		errs = append(errs, fmt.Errorf("%s.user_agent: %w", prefix, err))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%s.timeout: %s is negative", prefix, c.Timeout))
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("%s.max_body_bytes: %d is too small", prefix, c.MaxBodyBytes))
	}
	if err := checkUnreadableWindowLength(c.UnreadableWindowLength); err != nil {
		errs = append(errs, fmt.Errorf("calendar.unreadable_window_length: %w", err))
	}
	return errors.Join(errs...)
}

func (c ICalConfig) validate(prefix string) error {
	var errs []error
	switch {
	case c.URL == "" && c.File == "":
		errs = append(errs, fmt.Errorf("%s: set url or file", prefix))
	case c.URL != "" && c.File != "":
		errs = append(errs, fmt.Errorf("%s: set only one of url and file", prefix))
	case c.URL != "":
		if err := checkHTTPURL(c.URL); err != nil {
			errs = append(errs, fmt.Errorf("%s.url: %w", prefix, err))
		}
	}
	if c.Horizon < time.Hour || c.Horizon > 366*24*time.Hour {
		errs = append(errs, fmt.Errorf("%s.horizon: %s is not between 1h and 366 days", prefix, c.Horizon))
	}
	if c.Lookback < 0 || c.Lookback > 31*24*time.Hour {
		errs = append(errs, fmt.Errorf("%s.lookback: %s is not between 0 and 31 days", prefix, c.Lookback))
	}
	if _, err := loadZone(c.Timezone); err != nil {
		errs = append(errs, fmt.Errorf("%s.timezone: %w", prefix, err))
	}
	if p := c.DeployersProperty; p != "" && (!strings.HasPrefix(strings.ToUpper(p), "X-") || strings.ContainsAny(p, ":;,= \t\r\n")) {
		errs = append(errs, fmt.Errorf("%s.deployers_property: %q is not an X- property name", prefix, p))
	}
	if err := checkUserAgent(c.UserAgent); err != nil {
		errs = append(errs, fmt.Errorf("%s.user_agent: %w", prefix, err))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%s.timeout: %s is negative", prefix, c.Timeout))
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("%s.max_body_bytes: %d is too small", prefix, c.MaxBodyBytes))
	}
	if err := checkUnreadableWindowLength(c.UnreadableWindowLength); err != nil {
		errs = append(errs, fmt.Errorf("calendar.unreadable_window_length: %w", err))
	}
	return errors.Join(errs...)
}

// checkUnreadableWindowLength: an entry without a readable end must block
// for some time (a window shorter than a minute is not a window), and not
// for more than a day, which would look like a calendar that never opens.
func checkUnreadableWindowLength(d time.Duration) error {
	if d < time.Minute || d > 24*time.Hour {
		return fmt.Errorf("%s is not between 1m and 24h", d)
	}
	return nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// checkUserAgent requires a non-empty, single-line User-Agent. Wikimedia's
// policy asks for contact information in it; that cannot be checked
// mechanically, so the config documentation says so.
func checkUserAgent(ua string) error {
	if strings.TrimSpace(ua) == "" {
		return errors.New("required: name the bot and how to contact its operators (Wikimedia User-Agent policy)")
	}
	for _, r := range ua {
		if r < 0x20 || r == 0x7f {
			return errors.New("contains control characters")
		}
	}
	return nil
}

// loadZone loads an IANA time zone, refusing the names that time.LoadLocation
// maps to something other than a real zone ("" is UTC, "Local" is the
// machine's zone).
func loadZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	return loc, nil
}
