package scap

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"poolbot/internal/secret"
)

// Paths and names scap uses on the deploy host.
const (
	// DefaultGlobalLock is scap's GLOBAL_LOCK_FILE.
	DefaultGlobalLock = "/var/lock/scap-global-lock"
	// DefaultStagingLock is the lock scap derives for the default MediaWiki
	// stage_dir /srv/mediawiki-staging in lock_dir /var/lock.
	DefaultStagingLock = "/var/lock/scap.srv_mediawiki-staging.lock"
	// DefaultBackportLock is the outer lock `scap backport` holds for the
	// whole backport, including the pause while the deployer tests on
	// mwdebug, when neither lock above need be held.
	DefaultBackportLock = "/var/lock/scap.backport.lock"

	// BackendLockfile takes the global lock file like `scap lock --all`.
	BackendLockfile = "lockfile"
	// BackendCommand runs configured lock/unlock commands.
	BackendCommand = "command"

	// ReasonPlaceholder in a lock/unlock command argv element is replaced by
	// the block's reason. The result is still that one argv element.
	ReasonPlaceholder = "{reason}"
	// ReasonShPlaceholder is replaced by the reason quoted as one POSIX
	// shell word (restart.ShellQuote), for a command that hands its
	// arguments to a shell: ssh joins them into one string that the remote
	// shell parses, so a plain {reason} there would run `$(…)` in it.
	ReasonShPlaceholder = "{reason_sh}"
)

// Defaults for the optional Config fields.
const (
	DefaultLocker         = "poolbot"
	DefaultCommandTimeout = 60 * time.Second
	DefaultSpiderPigLimit = 10
	DefaultSpiderPigWait  = 10 * time.Second
	DefaultMaxRunAge      = 2 * time.Hour
)

// Config is the `scap:` section of poolbot's configuration. The zero value
// of every optional field means "use the default"; WithDefaults fills them.
type Config struct {
	// Locks configures the fcntl probe of scap's lock files.
	Locks LocksConfig `yaml:"locks"`
	// DeployBlock configures how poolbot keeps deployments out.
	DeployBlock DeployBlockConfig `yaml:"deploy_block"`
	// SpiderPig configures the SpiderPig job runner API (off when url is empty).
	SpiderPig SpiderPigConfig `yaml:"spiderpig"`
	// Channel configures watching scap's !log lines relayed by logmsgbot.
	Channel ChannelConfig `yaml:"channel"`
}

// LocksConfig configures the lock-file source.
type LocksConfig struct {
	// Enabled turns the lock-file source on or off (default on).
	Enabled *bool `yaml:"enabled"`
	// Files are probed with F_GETLK (default: the global and MediaWiki staging locks).
	Files []string `yaml:"files"`
	// AllowMissing accepts that none of Files exists. By default that is an
	// error, because it almost always means poolbot is not on the deploy host
	// and the probe would see nothing.
	AllowMissing bool `yaml:"allow_missing"`
}

// DeployBlockConfig configures the deploy block.
type DeployBlockConfig struct {
	// Backend is "lockfile" (default) or "command".
	Backend string `yaml:"backend"`
	// GlobalLock is the file the lockfile backend locks (default scap's global lock).
	GlobalLock string `yaml:"global_lock"`
	// Locker is written as "locker" into the lock file (default "poolbot").
	Locker string `yaml:"locker"`
	// LockCommand is the argv run by the command backend to block deploys;
	// an element may contain {reason}, or {reason_sh} (required with ssh).
	LockCommand []string `yaml:"lock_command"`
	// UnlockCommand is the argv run to lift the block; may contain
	// {reason} or {reason_sh}, like LockCommand.
	UnlockCommand []string `yaml:"unlock_command"`
	// CommandTimeout bounds each lock/unlock command (default 60s).
	CommandTimeout time.Duration `yaml:"command_timeout"`
	// UnlockSignalDir is where `scap lock --unlock-all` writes its signal
	// files as poolbot sees that directory (default /tmp). Under systemd's
	// PrivateTmp (implied by DynamicUser) poolbot's /tmp is not the
	// deployers' one: deploy/poolbot.service binds the host's /tmp to
	// /run/poolbot-host-tmp and sets this there.
	UnlockSignalDir string `yaml:"unlock_signal_dir"`
}

// SpiderPigConfig configures the SpiderPig source.
type SpiderPigConfig struct {
	// URL is SpiderPig's base URL, e.g. https://spiderpig.wikimedia.org. Empty disables the source.
	URL string `yaml:"url"`
	// Cookie is the Cookie header value of an authenticated session, read
	// from a file or an environment variable.
	Cookie secret.Ref `yaml:"cookie"`
	// Token is a bearer token, read from a file or an environment variable.
	Token secret.Ref `yaml:"token"`
	// Timeout bounds each request (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// JobsLimit is how many of the newest jobs to inspect (default 10).
	JobsLimit int `yaml:"jobs_limit"`
}

// ChannelConfig configures the IRC line source.
type ChannelConfig struct {
	// Enabled turns the channel source on or off (default on).
	Enabled *bool `yaml:"enabled"`
	// MaxRunAge forgets a Started line with no matching end after this long (default 2h).
	MaxRunAge time.Duration `yaml:"max_run_age"`
}

// DefaultConfig returns the configuration used when the scap section is empty.
func DefaultConfig() Config { return Config{}.WithDefaults() }

// WithDefaults returns a copy of c with every unset optional field filled in.
func (c Config) WithDefaults() Config {
	if c.Locks.Files == nil {
		c.Locks.Files = []string{DefaultGlobalLock, DefaultStagingLock, DefaultBackportLock}
	}
	if c.DeployBlock.Backend == "" {
		c.DeployBlock.Backend = BackendLockfile
	}
	if c.DeployBlock.GlobalLock == "" {
		c.DeployBlock.GlobalLock = DefaultGlobalLock
	}
	if c.DeployBlock.Locker == "" {
		c.DeployBlock.Locker = DefaultLocker
	}
	if c.DeployBlock.UnlockSignalDir == "" {
		c.DeployBlock.UnlockSignalDir = DefaultUnlockSignalDir
	}
	if c.DeployBlock.CommandTimeout == 0 {
		c.DeployBlock.CommandTimeout = DefaultCommandTimeout
	}
	if c.SpiderPig.Timeout == 0 {
		c.SpiderPig.Timeout = DefaultSpiderPigWait
	}
	if c.SpiderPig.JobsLimit == 0 {
		c.SpiderPig.JobsLimit = DefaultSpiderPigLimit
	}
	if c.Channel.MaxRunAge == 0 {
		c.Channel.MaxRunAge = DefaultMaxRunAge
	}
	return c
}

// LocksEnabled reports whether the lock-file source is on (default true).
func (c LocksConfig) LocksEnabled() bool { return c.Enabled == nil || *c.Enabled }

// ChannelEnabled reports whether the channel source is on (default true).
func (c ChannelConfig) ChannelEnabled() bool { return c.Enabled == nil || *c.Enabled }

// SpiderPigEnabled reports whether the SpiderPig source is on (url set).
func (c SpiderPigConfig) SpiderPigEnabled() bool { return c.URL != "" }

// Validate checks c (after filling defaults) and names the offending key.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("scap.%s: %s", key, fmt.Sprintf(format, args...)))
	}

	seen := map[string]bool{}
	if c.Locks.LocksEnabled() && len(c.Locks.Files) == 0 {
		bad("locks.files", "must list at least one lock file while locks.enabled is true")
	}
	for i, f := range c.Locks.Files {
		key := fmt.Sprintf("locks.files[%d]", i)
		if err := checkLockPath(f); err != nil {
			bad(key, "%v", err)
			continue
		}
		if seen[filepath.Clean(f)] {
			bad(key, "%q is listed twice", f)
		}
		seen[filepath.Clean(f)] = true
	}

	switch c.DeployBlock.Backend {
	case BackendLockfile:
		if err := checkLockPath(c.DeployBlock.GlobalLock); err != nil {
			bad("deploy_block.global_lock", "%v", err)
		}
		if d := c.DeployBlock.UnlockSignalDir; d != "" && (!filepath.IsAbs(d) || filepath.Clean(d) != d) {
			bad("deploy_block.unlock_signal_dir", "%q must be a clean absolute directory", d)
		}
	case BackendCommand:
		if err := checkCommand(c.DeployBlock.LockCommand); err != nil {
			bad("deploy_block.lock_command", "%v", err)
		}
		if err := checkCommand(c.DeployBlock.UnlockCommand); err != nil {
			bad("deploy_block.unlock_command", "%v", err)
		}
	default:
		bad("deploy_block.backend", "must be %q or %q, got %q", BackendLockfile, BackendCommand, c.DeployBlock.Backend)
	}
	if c.DeployBlock.Backend != BackendCommand && (len(c.DeployBlock.LockCommand) > 0 || len(c.DeployBlock.UnlockCommand) > 0) {
		bad("deploy_block.lock_command", "is only used with backend %q (backend is %q)", BackendCommand, c.DeployBlock.Backend)
	}
	if !validLocker(c.DeployBlock.Locker) {
		bad("deploy_block.locker", "must be 1-64 characters of letters, digits, '.', '_' or '-', got %q", c.DeployBlock.Locker)
	}
	if c.DeployBlock.CommandTimeout < 0 {
		bad("deploy_block.command_timeout", "must be positive, got %s", c.DeployBlock.CommandTimeout)
	}

	sp := c.SpiderPig
	if sp.SpiderPigEnabled() {
		if err := checkSpiderPigURL(sp.URL); err != nil {
			bad("spiderpig.url", "%v", err)
		}
	}
	var creds []string
	for _, kv := range []struct {
		key string
		ref secret.Ref
	}{{"cookie", sp.Cookie}, {"token", sp.Token}} {
		if !kv.ref.IsSet() {
			continue
		}
		creds = append(creds, kv.key)
		if err := kv.ref.Validate(); err != nil {
			bad("spiderpig."+kv.key, "%v", err)
		}
		if kv.ref.File != "" && !filepath.IsAbs(kv.ref.File) {
			bad("spiderpig."+kv.key+".file", "must be an absolute path, got %q", kv.ref.File)
		}
	}
	if len(creds) > 1 {
		bad("spiderpig", "set only one of cookie, token (got %s)", strings.Join(creds, ", "))
	}
	if len(creds) > 0 && !sp.SpiderPigEnabled() {
		bad("spiderpig.url", "is empty but %s is set; set the url to enable SpiderPig", creds[0])
	}
	if sp.Timeout < 0 {
		bad("spiderpig.timeout", "must be positive, got %s", sp.Timeout)
	}
	if sp.JobsLimit < 1 || sp.JobsLimit > 100 {
		bad("spiderpig.jobs_limit", "must be between 1 and 100, got %d", sp.JobsLimit)
	}

	ch := c.Channel
	if ch.MaxRunAge < 0 {
		bad("channel.max_run_age", "must be positive, got %s", ch.MaxRunAge)
	}

	if !c.Locks.LocksEnabled() && !ch.ChannelEnabled() && !sp.SpiderPigEnabled() {
		bad("locks.enabled", "every scap source is off; poolbot could not see a deployment")
	}
	return errors.Join(errs...)
}

func checkLockPath(p string) error {
	if p == "" {
		return errors.New("must not be empty")
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("must be an absolute path, got %q", p)
	}
	if strings.ContainsRune(p, 0) {
		return errors.New("contains a NUL byte")
	}
	return nil
}

func checkCommand(argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("is required with backend %q (an argv list, e.g. [\"/usr/bin/scap\", \"lock\", \"--all\", \"--bg\", %q])", BackendCommand, ReasonPlaceholder)
	}
	if argv[0] == "" || strings.Contains(argv[0], ReasonPlaceholder) || strings.Contains(argv[0], ReasonShPlaceholder) {
		return errors.New("the program (first element) must be a fixed, non-empty name")
	}
	for i, a := range argv {
		if strings.ContainsAny(a, "\x00\r\n") {
			return fmt.Errorf("element %d contains a NUL or newline", i)
		}
		if strings.Contains(a, ReasonPlaceholder) && filepath.Base(argv[0]) == "ssh" {
			return fmt.Errorf("element %d: ssh passes %s to the remote shell unquoted; use %s", i, ReasonPlaceholder, ReasonShPlaceholder)
		}
	}
	return nil
}

func checkSpiderPigURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("must be an http(s) URL with a host, got %q", raw)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("must use https (credentials are sent), got %q", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("must be a base URL without query or fragment, got %q", raw)
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func validLocker(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Credentials reads the SpiderPig credential configured by cookie or
// token. None configured gives zero Credentials.
func (c SpiderPigConfig) Credentials() (Credentials, error) {
	switch {
	case c.Cookie.IsSet():
		v, err := c.Cookie.Read()
		if err != nil {
			return Credentials{}, fmt.Errorf("spiderpig cookie (%s): %w", c.Cookie, err)
		}
		return Credentials{Cookie: v}, nil
	case c.Token.IsSet():
		v, err := c.Token.Read()
		if err != nil {
			return Credentials{}, fmt.Errorf("spiderpig token (%s): %w", c.Token, err)
		}
		return Credentials{Token: v}, nil
	}
	return Credentials{}, nil
}
