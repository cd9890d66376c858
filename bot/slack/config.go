package slack

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"poolbot/chat"
)

// Defaults for Config's optional keys.
const (
	DefaultAPIURL         = "https://slack.com/api/"
	DefaultSlashCommand   = "/poolbot"
	DefaultReconnectMin   = 2 * time.Second
	DefaultReconnectMax   = 5 * time.Minute
	DefaultRequestTimeout = 10 * time.Second
	DefaultHandlerQueue   = 64
	DefaultMirrorQueue    = 256
)

// Config configures the Slack adapter (the `chat.slack:` section of
// the config) and the mirror.
type Config struct {
	// Channels are the IDs (C…, G…) of the channels where messages are
	// read as commands ("!status", "@poolbot status") and where the slash
	// command is accepted. Direct messages to the bot are always read.
	Channels []string `yaml:"channels"`
	// MirrorChannel is the ID of the channel that gets a copy of notices
	// and SAL lines; empty turns mirroring off.
	MirrorChannel string `yaml:"mirror_channel"`
	// MirrorThread also posts every line about a request as a reply in the
	// thread of that request's status message.
	MirrorThread bool `yaml:"mirror_thread"`
	// MirrorQueue is how many lines may wait to be mirrored; more are
	// dropped (and logged), never blocking the caller.
	MirrorQueue int `yaml:"mirror_queue"`
	// SlashCommand is the slash command's name as registered in the app.
	SlashCommand string `yaml:"slash_command"`
	// APIURL is the Web API base URL (tests, proxies).
	APIURL string `yaml:"api_url"`
	// ReconnectMin and ReconnectMax bound the exponential backoff after a
	// failed connection.
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
	// RequestTimeout bounds each Web API call.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// HandlerQueue is how many acknowledged commands may wait for the
	// chat.Handler; more are dropped (and logged).
	HandlerQueue int `yaml:"handler_queue"`

	// AppToken (xapp-…) and BotToken (xoxb-…) never come from the YAML:
	// the caller reads them from files or the environment. They are never
	// logged (String and LogValue redact them).
	AppToken string `yaml:"-"`
	BotToken string `yaml:"-"`
}

// String describes the config without the tokens.
func (c Config) String() string {
	c.AppToken, c.BotToken = chat.Redact(c.AppToken), chat.Redact(c.BotToken)
	type plain Config // no String method: no recursion
	return fmt.Sprintf("%+v", plain(c))
}

// GoString is String, so %#v does not print the tokens either.
func (c Config) GoString() string { return c.String() }

// LogValue lets slog log the config without the tokens.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("channels", c.Channels), slog.String("mirror_channel", c.MirrorChannel),
		slog.String("slash_command", c.SlashCommand), slog.String("api_url", c.APIURL),
		slog.String("app_token", chat.Redact(c.AppToken)), slog.String("bot_token", chat.Redact(c.BotToken)))
}

// Validate reports every problem with the config, one per line (joined
// with errors.Join), each starting with its key as slack.<key>; the
// tokens, which are not YAML keys, as "slack: app token" and "slack: bot
// token".
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("slack.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	// checkToken checks one token: which is "app" or "bot", prefix its
	// kind's prefix, kind what it must be, and scope what it needs.
	checkToken := func(which, token, prefix, kind, scope string) {
		problem := ""
		switch {
		case token == "":
			problem = "required (an " + prefix + " token" + scope + ", read from a file or the environment)"
		case !strings.HasPrefix(token, prefix):
			problem = "must be " + kind + " (" + prefix + "…)"
		case strings.ContainsAny(token, " \t\r\n"):
			problem = "must not contain white space"
		default:
			return
		}
		errs = append(errs, fmt.Errorf("slack: %s token: %s", which, problem))
	}
	checkToken("app", c.AppToken, "xapp-", "an app-level token", " with connections:write")
	checkToken("bot", c.BotToken, "xoxb-", "a bot token", "")
	for _, ch := range c.Channels {
		if !validSlackID(ch) || ch[0] != 'C' && ch[0] != 'G' {
			bad("channels", "%q is not a channel ID (C… or G…, as shown in the channel's details; not #name)", ch)
		}
	}
	if c.MirrorChannel != "" && (!validSlackID(c.MirrorChannel) || c.MirrorChannel[0] != 'C' && c.MirrorChannel[0] != 'G') {
		bad("mirror_channel", "%q is not a channel ID (C… or G…)", c.MirrorChannel)
	}
	if len(c.Channels) == 0 && c.MirrorChannel == "" {
		bad("channels, mirror_channel", "set at least one, or remove the slack section")
	}
	if c.SlashCommand != "" && (!strings.HasPrefix(c.SlashCommand, "/") || len(c.SlashCommand) < 2 ||
		strings.ContainsFunc(c.SlashCommand, func(r rune) bool { return r <= ' ' || r == 0x7f })) {
		bad("slash_command", "%q must be /name", c.SlashCommand)
	}
	if c.APIURL != "" {
		u, err := url.Parse(c.APIURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("api_url", "%q is not an http(s) URL", c.APIURL)
		}
	}
	if c.ReconnectMin < 0 {
		bad("reconnect_min", "must not be negative")
	}
	if c.ReconnectMax < 0 {
		bad("reconnect_max", "must not be negative")
	}
	if c.ReconnectMin > 0 && c.ReconnectMax > 0 && c.ReconnectMin > c.ReconnectMax {
		bad("reconnect_min", "%v is more than reconnect_max %v", c.ReconnectMin, c.ReconnectMax)
	}
	if c.RequestTimeout != 0 && c.RequestTimeout < 100*time.Millisecond {
		bad("request_timeout", "%v is less than 100ms", c.RequestTimeout)
	}
	if c.HandlerQueue < 0 {
		bad("handler_queue", "must not be negative")
	}
	if c.MirrorQueue < 0 {
		bad("mirror_queue", "must not be negative")
	}
	return errors.Join(errs...)
}

// withDefaults fills in the optional keys.
func (c Config) withDefaults() Config {
	if c.SlashCommand == "" {
		c.SlashCommand = DefaultSlashCommand
	}
	if c.APIURL == "" {
		c.APIURL = DefaultAPIURL
	}
	if !strings.HasSuffix(c.APIURL, "/") {
		c.APIURL += "/" // the library appends method names
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = max(DefaultReconnectMax, c.ReconnectMin)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.HandlerQueue == 0 {
		c.HandlerQueue = DefaultHandlerQueue
	}
	if c.MirrorQueue == 0 {
		c.MirrorQueue = DefaultMirrorQueue
	}
	return c
}
