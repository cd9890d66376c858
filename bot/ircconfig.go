package bot

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"poolbot/chat"
	"poolbot/internal/ircname"
)

// Defaults for IRCConfig's optional keys.
const (
	DefaultMaxLineBytes   = 400
	DefaultReconnectMin   = 2 * time.Second
	DefaultReconnectMax   = 5 * time.Minute
	DefaultConnectTimeout = 30 * time.Second
	DefaultConfirmTimeout = 30 * time.Second
	DefaultQuitMessage    = "poolbot shutting down"
	DefaultHandlerQueue   = 64
	DefaultRealName       = "poolbot"
)

// IRCConfig configures the IRC adapter (the `irc:` section of the config).
type IRCConfig struct {
	// Server is host:port, e.g. irc.libera.chat:6697.
	Server string `yaml:"server"`
	// TLS turns on TLS (certificate verified; there is no way to skip that).
	TLS bool `yaml:"tls"`
	// TLSCAFile is a PEM bundle to verify the server with instead of the
	// system roots.
	TLSCAFile string `yaml:"tls_ca_file"`
	// Nick is the nick to use; User defaults to Nick, RealName to "poolbot".
	Nick     string `yaml:"nick"`
	User     string `yaml:"user"`
	RealName string `yaml:"realname"`
	// SASLAccount is the NickServ account to log in as with SASL PLAIN.
	SASLAccount string `yaml:"sasl_account"`
	// Password is SASLAccount's password. It never comes from the YAML
	// file: the caller reads it from a file or the environment. It is never
	// logged (IRCConfig's String and LogValue redact it).
	Password string `yaml:"-"`
	// Channels are joined after every (re)connect; SALChannel too.
	Channels   []string `yaml:"channels"`
	SALChannel string   `yaml:"sal_channel"`
	// Flood is the server's flood limit for the bot's connection, as
	// InspIRCd's connect class states it (threshold, command_rate); the
	// output chat.Pacer is derived from it (chat.FloodClass.Pacing). Zero
	// fields mean chat.DefaultFloodClass (threshold 10, command_rate 1000).
	Flood chat.FloodClass `yaml:"flood"`
	// Rate (lines per second) and Burst, when set, replace the pacing
	// derived from Flood (for a network whose limit is not an InspIRCd
	// class, or tests that want no pacing).
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
	// MaxLineBytes caps the text bytes of one outgoing line (default 400);
	// the adapter also keeps every line within what the server can relay.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// ReconnectMin and ReconnectMax bound the exponential reconnect backoff.
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
	// ConnectTimeout bounds dialing, TLS, registration and each write; it
	// is also how long an unanswered keepalive PING is tolerated.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ConfirmTimeout is how long Say waits for the server to echo a line.
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
	// QuitMessage is sent with QUIT on shutdown.
	QuitMessage string `yaml:"quit_message"`
	// HandlerQueue is how many received messages may wait for the chat.Handler;
	// more are dropped (and logged) rather than stalling the connection.
	HandlerQueue int `yaml:"handler_queue"`

	// caps, when non-nil, replaces the requested IRCv3 capabilities (tests).
	caps []string
}

// defaultCaps are requested on every connection; a server that lacks one
// just doesn't acknowledge it.
func defaultCaps() []string {
	return []string{"account-tag", "message-tags", "server-time", "echo-message"}
}

// String describes the config without the password.
func (c IRCConfig) String() string {
	c.Password = chat.Redact(c.Password)
	type plain IRCConfig // no String method: no recursion
	return fmt.Sprintf("%+v", plain(c))
}

// GoString is String, so %#v does not print the password either.
func (c IRCConfig) GoString() string { return c.String() }

// LogValue lets slog log the config without the password.
func (c IRCConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("server", c.Server), slog.Bool("tls", c.TLS), slog.String("nick", c.Nick),
		slog.String("sasl_account", c.SASLAccount), slog.String("password", chat.Redact(c.Password)),
		slog.Any("channels", c.Channels), slog.String("sal_channel", c.SALChannel))
}

// Validate reports every problem with the config, one per line (joined
// with errors.Join), each starting with its key as irc.<key>.
func (c IRCConfig) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("irc.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Server == "" {
		bad("server", "required (host:port, e.g. irc.libera.chat:6697)")
	} else if host, port, err := net.SplitHostPort(c.Server); err != nil || host == "" {
		bad("server", "%q is not host:port", c.Server)
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		bad("server", "bad port in %q", c.Server)
	}
	if c.TLSCAFile != "" {
		if !c.TLS {
			bad("tls_ca_file", "set, but tls is off")
		} else if _, err := loadCAFile(c.TLSCAFile); err != nil {
			bad("tls_ca_file", "%v", err)
		}
	}
	if err := validNick(c.Nick); err != nil {
		bad("nick", "%v", err)
	}
	// The user (ident) is sent in USER and relayed in the bot's prefix on
	// every line: printable ASCII only (servers take nothing else there,
	// and a non-UTF-8 byte would make every relayed line invalid UTF-8),
	// and short enough that the line budget, which counts it in full,
	// stays meaningful (servers cut it to USERLEN, about 10, anyway).
	const (
		maxUserLen = 64
		// USER <user> 0 * :<realname> CR LF fits in 512 bytes.
		maxRealNameLen = 512 - len("USER ") - maxUserLen - len(" 0 * :") - 2
	)
	if c.User != "" {
		nonASCII := strings.ContainsFunc(c.User, func(r rune) bool { return r >= utf8.RuneSelf })
		switch {
		case !utf8.ValidString(c.User):
			bad("user", "%q is not valid UTF-8 (use printable ASCII)", c.User)
		case !validWord(c.User, "@!") || nonASCII:
			bad("user", "%q must be one word of printable ASCII, without spaces, control characters, '@' or '!'", c.User)
		case len(c.User) > maxUserLen:
			bad("user", "%d bytes is longer than %d", len(c.User), maxUserLen)
		}
	}
	// The realname is free text (spaces are fine: it is USER's trailing
	// parameter) but must stay on its line and be UTF-8, as every line the
	// bot sends is.
	if strings.ContainsAny(c.RealName, "\r\n\x00") {
		bad("realname", "must not contain line breaks or NUL")
	} else if !utf8.ValidString(c.RealName) {
		bad("realname", "%q is not valid UTF-8", c.RealName)
	} else if len(c.RealName) > maxRealNameLen {
		bad("realname", "is longer than %d bytes", maxRealNameLen)
	}
	if c.SASLAccount != "" && !validWord(c.SASLAccount, "") {
		bad("sasl_account", "%q must be one word without control characters", c.SASLAccount)
	}
	if c.SASLAccount != "" && c.Password == "" {
		bad("sasl_account", "set, but no password was given (it is read from a file or the environment, never the YAML)")
	}
	if c.SASLAccount == "" && c.Password != "" {
		bad("sasl_account", "required when a password is given")
	}
	for _, ch := range c.Channels {
		if !validChannel(ch) {
			bad("channels", "%q is not a channel name (#name, no spaces, commas or control characters)", ch)
		}
	}
	if c.SALChannel != "" && !validChannel(c.SALChannel) {
		bad("sal_channel", "%q is not a channel name", c.SALChannel)
	}
	if c.Flood != (chat.FloodClass{}) {
		if err := c.withDefaults().Flood.Validate(); err != nil {
			bad("flood", "%v", err)
		}
	}
	if c.Rate < 0 {
		bad("rate", "%v lines per second must not be negative", c.Rate)
	}
	if c.Burst < 0 {
		bad("burst", "%d must not be negative", c.Burst)
	}
	if c.MaxLineBytes != 0 && (c.MaxLineBytes < 64 || c.MaxLineBytes > 510) {
		bad("max_line_bytes", "%d is outside 64..510", c.MaxLineBytes)
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
	if c.ConnectTimeout != 0 && c.ConnectTimeout < time.Second {
		bad("connect_timeout", "%v is less than 1s", c.ConnectTimeout)
	}
	if c.ConfirmTimeout < 0 {
		bad("confirm_timeout", "must not be negative")
	}
	if strings.ContainsAny(c.QuitMessage, "\r\n\x00") {
		bad("quit_message", "must not contain line breaks or NUL")
	}
	if c.HandlerQueue < 0 {
		bad("handler_queue", "must not be negative")
	}
	return errors.Join(errs...)
}

// withDefaults fills in the optional keys.
func (c IRCConfig) withDefaults() IRCConfig {
	if c.User == "" {
		c.User = c.Nick
	}
	if c.RealName == "" {
		c.RealName = DefaultRealName
	}
	def := chat.DefaultFloodClass()
	if c.Flood.Threshold == 0 {
		c.Flood.Threshold = def.Threshold
	}
	if c.Flood.CommandRate == 0 {
		c.Flood.CommandRate = def.CommandRate
	}
	rate, burst := c.Flood.Pacing()
	if c.Rate == 0 {
		c.Rate = rate
	}
	if c.Burst == 0 {
		c.Burst = burst
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = DefaultMaxLineBytes
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = max(DefaultReconnectMax, c.ReconnectMin)
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ConfirmTimeout == 0 {
		c.ConfirmTimeout = DefaultConfirmTimeout
	}
	if c.QuitMessage == "" {
		c.QuitMessage = DefaultQuitMessage
	}
	if c.HandlerQueue == 0 {
		c.HandlerQueue = DefaultHandlerQueue
	}
	if c.caps == nil {
		c.caps = defaultCaps()
	}
	return c
}

// joinList is every channel to join, SALChannel included, without duplicates.
func (c IRCConfig) joinList() []string {
	var out []string
	for _, ch := range append(slices.Clone(c.Channels), c.SALChannel) {
		if ch == "" || slices.ContainsFunc(out, func(o string) bool { return foldEqual(o, ch) }) {
			continue
		}
		out = append(out, ch)
	}
	return out
}

// validNick is poolbot's one nick rule (ircname.CheckNick).
func validNick(n string) error { return ircname.CheckNick(n) }

// validWord: non-empty, no space or control character, none of extra.
func validWord(s, extra string) bool {
	if s == "" || s[0] == ':' {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(extra, r) {
			return false
		}
	}
	return true
}

func validChannel(ch string) bool {
	return len(ch) >= 2 && len(ch) <= 50 && (ch[0] == '#' || ch[0] == '&') && validWord(ch, ",\x07")
}

// validTarget accepts a channel or nick that fits alone in a parameter
// (and in UTF-8, like every line the bot sends).
func validTarget(t string) bool { return len(t) <= 64 && utf8.ValidString(t) && validWord(t, ",\x07") }
