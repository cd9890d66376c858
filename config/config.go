// Package config reads poolbot's YAML configuration.
//
// Decoding is strict: a key the program does not know is an error naming
// the key and its line, because a misspelt safety setting that is silently
// ignored is worse than a bot that refuses to start. Every problem is
// reported at once (Load returns a *Problems). Secrets never live in the
// YAML: a Secret names a file or an environment variable to read.
package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"poolbot/bot"
	slackbot "poolbot/bot/slack"
	"poolbot/chat"
	"poolbot/commands"
	"poolbot/integrations/alertmanager"
	"poolbot/integrations/calendar"
	"poolbot/integrations/conftool"
	"poolbot/integrations/dns"
	"poolbot/integrations/leader"
	"poolbot/integrations/logmsgbot"
	"poolbot/integrations/registry"
	"poolbot/integrations/restart"
	"poolbot/integrations/scap"
	"poolbot/integrations/spicerack"
	"poolbot/internal/secret"
	"poolbot/watch"
)

// Config is the whole configuration file.
type Config struct {
	Chat      Chat                `yaml:"chat"`
	Operators []commands.Operator `yaml:"operators"`
	Services  map[string]Service  `yaml:"services"`
	Force     Force               `yaml:"force"`
	Store     Store               `yaml:"store"`
	SAL       SAL                 `yaml:"sal"`
	Log       Log                 `yaml:"log"`
	Procedure Procedure           `yaml:"procedure"`
	Calendar  calendar.Config     `yaml:"calendar"`
	Scap      scap.Config         `yaml:"scap"`
	Conftool  conftool.Config     `yaml:"conftool"`
	HTTP      HTTP                `yaml:"http"`
	// Watch is the drift watch and the periodic registry probe.
	Watch watch.Config `yaml:"watch"`
	// LogMsgBot is the relay whose channel lines are trusted: scap's
	// Started/Finished lines for the scap gate, and conftool's and
	// cookbooks' !log lines to name who made a drift.
	LogMsgBot logmsgbot.Config `yaml:"logmsgbot"`
	// Alertmanager silences each host around its restart; no urls: off.
	Alertmanager alertmanager.Config `yaml:"alertmanager"`
	// SpicerackLocks are the cookbooks' etcd locks poolbot honours.
	SpicerackLocks spicerack.Config `yaml:"spicerack_locks"`
	// Leader keeps one poolbot active among instances sharing this
	// config; absent: no leader lock (one instance only).
	Leader *leader.Config `yaml:"leader"`
}

// Procedure tunes the request lifecycle.
type Procedure struct {
	// DryRun runs read-only steps for real and only announces mutating ones.
	DryRun bool `yaml:"dry_run"`
	// MaxWait: a request waiting longer expires.
	MaxWait time.Duration `yaml:"max_wait"`
	// PerHostEstimate is the expected time per host until history exists.
	PerHostEstimate time.Duration `yaml:"per_host_estimate"`
	// ScapPoll is how often a request blocked by scap re-probes it.
	ScapPoll time.Duration `yaml:"scap_poll"`
	// ResumeAfterCrash is "auto" or "ask".
	ResumeAfterCrash string `yaml:"resume_after_crash"`
}

// Chat configures the chat side.
type Chat struct {
	// CommandPrefix starts a command in a channel.
	CommandPrefix string `yaml:"command_prefix"`
	// NoticeChannel gets blocking and proceeding notices; default
	// sal.channel.
	NoticeChannel string `yaml:"notice_channel"`
	// CommandLimit limits each person's commands (default a burst of 5,
	// then one every 6s); see chat.CommandLimit.
	CommandLimit chat.CommandLimit `yaml:"command_limit"`
	// IRC is the IRC connection; absent means no IRC.
	IRC *bot.IRCConfig `yaml:"irc"`
	// IRCPassword is the SASL password of the bot's IRC account.
	IRCPassword Secret `yaml:"irc_sasl_password"`
	// Slack is the Slack connection (Socket Mode) and the channel notices
	// and SAL lines are mirrored to; absent means no Slack.
	Slack *slackbot.Config `yaml:"slack"`
	// SlackAppToken is the app-level token (xapp-…) that opens the Socket
	// Mode connection.
	SlackAppToken Secret `yaml:"slack_app_token"`
	// SlackBotToken is the bot token (xoxb-…) for Slack's Web API.
	SlackBotToken Secret `yaml:"slack_bot_token"`
}

// Service is one service poolbot manages.
type Service struct {
	// Datacenters the service can be pooled in, in display order.
	Datacenters []string `yaml:"datacenters"`
	// Restart is how the service's dependent hosts are restarted.
	Restart restart.Config `yaml:"restart"`
	// Registry is the registry instances on each of those hosts and how
	// they are checked.
	Registry registry.Config `yaml:"registry"`
	// DNS, when set, makes each request wait for the discovery record to
	// follow the conftool change before any host is restarted.
	DNS *dns.Config `yaml:"dns"`
	// Drain depools each host from its load-balancer pools around its
	// restart; no pools: no drain.
	Drain Drain `yaml:"drain"`
}

// Drain selects the conftool node objects (tags dc, cluster, service) a
// host is depooled from before its restart and repooled in after it.
//
//	drain:
//	  pools: [{dc: codfw, cluster: apus, service: apus}]
//	  period: 5s     # wait after the depool, as the cookbook does
type Drain struct {
	Pools  []conftool.Pool `yaml:"pools"`
	Period time.Duration   `yaml:"period"`
}

// Force configures the break-glass !force.
type Force struct {
	// RequireConfirm makes !force wait for a second operator's !confirm.
	RequireConfirm *bool `yaml:"require_confirm"`
	// ConfirmWindow is how long a !force waits for !confirm.
	ConfirmWindow time.Duration `yaml:"confirm_window"`
}

// NeedsConfirm is RequireConfirm with its default (true).
func (f Force) NeedsConfirm() bool { return f.RequireConfirm == nil || *f.RequireConfirm }

// Store configures the SQLite file.
type Store struct {
	Path string `yaml:"path"`
}

// SAL configures where Server Admin Log lines go.
type SAL struct {
	// Sink is "channel" (say "!log …" in Channel) or "tcpircbot" (send to
	// a logmsgbot relay, which keeps a user@host attribution).
	Sink    string `yaml:"sink"`
	Channel string `yaml:"channel"`
	// TCPIRCBot is the relay, for Sink "tcpircbot".
	TCPIRCBot TCPIRCBot `yaml:"tcpircbot"`
}

// TCPIRCBot is a logmsgbot relay.
type TCPIRCBot struct {
	Addr        string `yaml:"addr"`
	Attribution string `yaml:"attribution"`
	// AttributeOperator credits a request's lines to its operator on the
	// attribution's host (alice@deploy1003); default true.
	AttributeOperator *bool         `yaml:"attribute_operator"`
	Timeout           time.Duration `yaml:"timeout"`
}

// AttributeOperatorOrDefault is AttributeOperator, true when unset.
func (t TCPIRCBot) AttributeOperatorOrDefault() bool {
	return t.AttributeOperator == nil || *t.AttributeOperator
}

// Log configures structured logging.
type Log struct {
	Format string `yaml:"format"` // "text" or "json"
	Level  string `yaml:"level"`  // "debug", "info", "warn", "error"
}

// Secret is read from a file or an environment variable, never written in
// the YAML itself: the one style of every secret in the config.
type Secret = secret.Ref

// Problems is every problem found in a configuration.
type Problems struct {
	File string
	List []string
}

func (p *Problems) Error() string {
	return fmt.Sprintf("%s: %d configuration problem(s):\n  %s", p.File, len(p.List), strings.Join(p.List, "\n  "))
}

// add records one problem.
func (p *Problems) add(format string, args ...any) {
	p.List = append(p.List, fmt.Sprintf(format, args...))
}

// addErr records a section's validation error, which may join several
// problems one per line, each starting with its own key path relative to
// parent ("restart.hosts: ..."); parent (e.g. "services.apus") is put
// before each of them, making the path absolute.
func (p *Problems) addErr(parent string, err error) {
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		if parent != "" {
			l = parent + "." + l
		}
		p.List = append(p.List, l)
	}
}

// Load reads, decodes and validates the file at path. Any problem makes
// it return a *Problems listing all of them.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates data; name is used in messages.
//
// Problems are collected, not returned at the first: unknown keys, bad
// durations and values of the wrong type are reported with their lines
// and left out, the rest is decoded and validated, and a validation
// problem whose key is in the file gets that key's line too. Only a file
// that is not YAML at all, or a decoding error that cannot be placed,
// stops before validation.
func Parse(name string, data []byte) (*Config, error) {
	probs := &Problems{File: name}
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		probs.add("%s", oneLine(err))
		return nil, probs
	}
	lines := keyLines(file) // before entries are taken out
	probs.List = append(probs.List, checkKeys(file, reflect.TypeFor[Config]())...)
	var body ast.Node
	if len(file.Docs) > 0 {
		body = file.Docs[0].Body
	}
	cfg := decodeAll(body, func() *Config { return &Config{Scap: scap.DefaultConfig(), Watch: watch.DefaultConfig()} }, probs)
	if cfg == nil {
		return nil, probs
	}
	cfg.applyDefaults()
	n := len(probs.List)
	cfg.validate(probs)
	withLines(probs.List[n:], lines)
	if len(probs.List) > 0 {
		return nil, probs
	}
	return cfg, nil
}

func (c *Config) applyDefaults() {
	if c.Chat.CommandPrefix == "" {
		c.Chat.CommandPrefix = "!"
	}
	if c.Force.ConfirmWindow == 0 {
		c.Force.ConfirmWindow = 10 * time.Minute
	}
	if c.SAL.Sink == "" {
		c.SAL.Sink = "channel"
	}
	if c.Chat.NoticeChannel == "" {
		c.Chat.NoticeChannel = c.SAL.Channel
	}
	if c.Chat.IRC != nil && c.Chat.IRC.SALChannel == "" && c.SAL.Sink == "channel" {
		c.Chat.IRC.SALChannel = c.SAL.Channel
	}
	if c.SAL.TCPIRCBot.Timeout == 0 {
		c.SAL.TCPIRCBot.Timeout = 5 * time.Second
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Procedure.MaxWait == 0 {
		c.Procedure.MaxWait = 12 * time.Hour
	}
	if c.Procedure.PerHostEstimate == 0 {
		c.Procedure.PerHostEstimate = 2 * time.Minute
	}
	if c.Procedure.ScapPoll == 0 {
		c.Procedure.ScapPoll = 250 * time.Millisecond
	}
	if c.Procedure.ResumeAfterCrash == "" {
		c.Procedure.ResumeAfterCrash = "auto"
	}
	if c.Calendar.Source != CalendarNone {
		c.Calendar = c.Calendar.WithDefaults()
	}
	c.Scap = c.Scap.WithDefaults()
	c.Watch = c.Watch.WithDefaults()
	c.LogMsgBot = c.LogMsgBot.WithDefaults()
	for name, svc := range c.Services {
		svc.Registry = registryDefaults(svc.Registry)
		c.Services[name] = svc
	}
}

// CalendarNone turns the calendar gate off. It must be said explicitly:
// a missing calendar section means wikitech.
const CalendarNone = "none"

// registryDefaults fills a service's registry section from WMF's layout
// where it was left empty.
func registryDefaults(r registry.Config) registry.Config {
	d := registry.DefaultConfig()
	if len(r.Instances) == 0 {
		r.Instances = d.Instances
	}
	if r.Scheme == "" {
		r.Scheme = d.Scheme
	}
	if r.Probe.Repository == "" {
		r.Probe.Repository = d.Probe.Repository
	}
	return r
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	channelRE = regexp.MustCompile(`^[#&][^\s,\x00-\x1f]{1,49}$`)
	attribRE  = regexp.MustCompile(`^[^@\s]+@\S+$`)
)

func (c *Config) validate(p *Problems) {
	if strings.ContainsAny(c.Chat.CommandPrefix, " \t\r\n\x00") || len(c.Chat.CommandPrefix) > 3 {
		p.add("chat.command_prefix: %q must be 1-3 characters without spaces", c.Chat.CommandPrefix)
	}
	if err := c.Chat.CommandLimit.Validate(); err != nil {
		p.add("chat.command_limit: %v", err)
	}
	if c.Chat.IRC != nil {
		// Reading the password here makes check-config catch a missing
		// or empty secret file before the bot is started with it.
		if c.Chat.IRCPassword.IsSet() {
			pw, err := c.Chat.IRCPassword.Read()
			if err != nil {
				p.add("chat.irc_sasl_password (%s): %v", c.Chat.IRCPassword, err)
			}
			c.Chat.IRC.Password = pw
		}
		if err := c.Chat.IRC.Validate(); err != nil {
			p.addErr("chat", err)
		}
		if !c.Chat.IRCPassword.IsSet() && c.Chat.IRC.SASLAccount != "" {
			p.add("chat.irc_sasl_password: chat.irc.sasl_account is set, so a file or env for its password is required")
		}
	}
	if c.Chat.IRCPassword.File != "" && c.Chat.IRCPassword.Env != "" {
		p.add("chat.irc_sasl_password: set either file or env, not both")
	}
	c.validateSlack(p)
	if len(c.Operators) == 0 {
		p.add("operators: at least one operator is required (nobody could change anything)")
	}
	if _, err := commands.NewOperators(c.Operators); err != nil {
		p.add("operators: %v", err)
	}
	for i, op := range c.Operators {
		if !nameRE.MatchString(op.Name) {
			p.add("operators[%d].name: %q must match %s", i, op.Name, nameRE)
		}
		if len(op.IRCAccounts)+len(op.SlackUserIDs) == 0 {
			p.add("operators[%d] (%s): no irc_accounts or slack_user_ids", i, op.Name)
		}
	}
	if len(c.Services) == 0 {
		p.add("services: at least one service is required")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		svc := c.Services[name]
		if !nameRE.MatchString(name) {
			p.add("services.%s: service name must match %s", name, nameRE)
		}
		if len(svc.Datacenters) == 0 {
			p.add("services.%s.datacenters: at least one datacenter is required", name)
		}
		seen := map[string]bool{}
		for _, dc := range svc.Datacenters {
			if !nameRE.MatchString(dc) {
				p.add("services.%s.datacenters: %q must match %s", name, dc, nameRE)
			}
			if seen[dc] {
				p.add("services.%s.datacenters: %q is listed twice", name, dc)
			}
			seen[dc] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		svc := c.Services[name]
		if err := svc.Restart.Validate(); err != nil {
			p.addErr("services."+name, err)
		}
		if err := svc.Registry.Validate(); err != nil {
			p.addErr("services."+name, err)
		}
		if svc.DNS != nil {
			validateDNS(p, name, svc)
		}
	}
	if c.Calendar.Source != CalendarNone {
		if err := c.Calendar.Validate(); err != nil {
			p.addErr("", err)
		}
	}
	if err := c.Scap.Validate(); err != nil {
		p.addErr("", err)
	}
	if err := c.Watch.Validate(); err != nil {
		p.addErr("", err)
	}
	if err := c.LogMsgBot.Validate(); err != nil {
		p.addErr("logmsgbot", err)
	}
	if err := c.Conftool.Validate(); err != nil {
		p.addErr("", err)
	}
	c.validateGuards(p)
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"max_wait", c.Procedure.MaxWait}, {"per_host_estimate", c.Procedure.PerHostEstimate}, {"scap_poll", c.Procedure.ScapPoll}} {
		if d.d < 0 {
			p.add("procedure.%s: must not be negative", d.key)
		}
	}
	switch c.Procedure.ResumeAfterCrash {
	case "auto", "ask":
	default:
		p.add("procedure.resume_after_crash: %q must be auto or ask", c.Procedure.ResumeAfterCrash)
	}
	if c.Force.ConfirmWindow < 0 {
		p.add("force.confirm_window: must be positive")
	}
	if c.Store.Path == "" {
		p.add("store.path: the SQLite file is required")
	}
	switch c.SAL.Sink {
	case "channel":
		if !channelRE.MatchString(c.SAL.Channel) {
			p.add("sal.channel: %q is not a channel name", c.SAL.Channel)
		}
	case "tcpircbot":
		if c.SAL.TCPIRCBot.Addr == "" {
			p.add("sal.tcpircbot.addr: required with sal.sink: tcpircbot")
		}
		if !attribRE.MatchString(c.SAL.TCPIRCBot.Attribution) {
			p.add("sal.tcpircbot.attribution: %q must look like user@host", c.SAL.TCPIRCBot.Attribution)
		}
	default:
		p.add("sal.sink: %q must be channel or tcpircbot", c.SAL.Sink)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		p.add("log.format: %q must be text or json", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level: %q must be debug, info, warn or error", c.Log.Level)
	}
	c.validateHTTP(p)
}

// ServiceDatacenters is the services map the command layer wants.
func (c *Config) ServiceDatacenters() map[string][]string {
	out := make(map[string][]string, len(c.Services))
	for name, s := range c.Services {
		out[name] = slices.Clone(s.Datacenters)
	}
	return out
}

// validateSlack reads the Slack tokens into chat.slack (so check-config
// catches a missing or empty token file) and validates the section.
func (c *Config) validateSlack(p *Problems) {
	for _, s := range []struct {
		key string
		sec Secret
	}{{"slack_app_token", c.Chat.SlackAppToken}, {"slack_bot_token", c.Chat.SlackBotToken}} {
		if s.sec.File != "" && s.sec.Env != "" {
			p.add("chat.%s: set either file or env, not both", s.key)
		}
	}
	sl := c.Chat.Slack
	if sl == nil {
		return
	}
	// Tokens that could not be read are reported once, here; the rest of
	// the section is still checked with stand-ins.
	check := *sl
	for _, s := range []struct {
		key          string
		sec          Secret
		dst, checked *string
		placeholder  string
	}{
		{"slack_app_token", c.Chat.SlackAppToken, &sl.AppToken, &check.AppToken, "xapp-unread"},
		{"slack_bot_token", c.Chat.SlackBotToken, &sl.BotToken, &check.BotToken, "xoxb-unread"},
	} {
		*s.checked = s.placeholder
		if !s.sec.IsSet() {
			p.add("chat.%s: chat.slack is set, so a file or env for this token is required", s.key)
			continue
		}
		v, err := s.sec.Read()
		if err != nil {
			p.add("chat.%s (%s): %v", s.key, s.sec, err)
			continue
		}
		*s.dst, *s.checked = v, v
	}
	if err := check.Validate(); err != nil {
		// The tokens are not keys of chat.slack but chat.slack_*_token.
		for _, l := range strings.Split(err.Error(), "\n") {
			if rest, ok := strings.CutPrefix(l, "slack: app token: "); ok {
				p.add("chat.slack_app_token (%s): %s", c.Chat.SlackAppToken, rest)
			} else if rest, ok := strings.CutPrefix(l, "slack: bot token: "); ok {
				p.add("chat.slack_bot_token (%s): %s", c.Chat.SlackBotToken, rest)
			} else {
				p.addErr("chat", errors.New(l))
			}
		}
	}
	if c.Chat.IRC == nil && c.SAL.Sink == "channel" {
		p.add("sal.sink: channel writes SAL on IRC, but there is no chat.irc; with only Slack, use sal.sink: tcpircbot (the Slack mirror is a copy, not the log)")
	}
}

// validateDNS checks a service's dns section, and that it knows the
// service's datacenters and the datacenter of every listed host.
func validateDNS(p *Problems, name string, svc Service) {
	d := *svc.DNS
	if err := d.Validate("dns."); err != nil {
		p.addErr("services."+name, err)
		return
	}
	known := map[string]bool{}
	for _, dc := range d.Datacenters {
		known[dc.Name] = true
	}
	for _, dc := range svc.Datacenters {
		if !known[dc] {
			p.add("services.%s.dns.datacenters: %s is a datacenter of the service but has no entry (its clients' answer cannot be checked)", name, dc)
		}
	}
	if d.HostCheckOrDefault() {
		for _, h := range svc.Restart.Hosts {
			if _, ok := d.HostDatacenter(h); !ok {
				p.add("services.%s.dns.host_datacenters: host %s has no datacenter in its name; list it here (or set host_check: false)", name, h)
			}
		}
	}
}

// validateGuards checks the sections of issue 15: drain pools,
// Alertmanager, spicerack locks, leader lock. The locks live in etcd
// beside conftool's data, so they need the etcd conftool backend.
func (c *Config) validateGuards(p *Problems) {
	etcd := c.Conftool.Backend == conftool.BackendEtcd
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		d := c.Services[name].Drain
		for i, pool := range d.Pools {
			if err := pool.Validate(); err != nil {
				p.add("services.%s.drain.pools[%d]: %v", name, i, err)
			}
		}
		if d.Period < 0 || d.Period > 10*time.Minute {
			p.add("services.%s.drain.period: %s must be between 0 (default 5s) and 10m", name, d.Period)
		}
	}
	if err := c.Alertmanager.Validate(); err != nil {
		p.addErr("", err)
	}
	if c.SpicerackLocks.Enabled {
		if err := c.SpicerackLocks.Validate(); err != nil {
			p.addErr("", err)
		}
		if !etcd {
			p.add("spicerack_locks.enabled: spicerack's locks live in etcd; it needs conftool.backend: etcd")
		}
	}
	if c.Leader != nil {
		if err := c.Leader.Validate(); err != nil {
			p.addErr("", err)
		}
		if !etcd {
			p.add("leader: the leader lock lives in etcd; it needs conftool.backend: etcd")
		}
	}
}
