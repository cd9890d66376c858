package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"poolbot/bot"
	"poolbot/config"
)

// Secrets never reach the log, whatever the format, however they are
// passed: top-level attributes, attributes in groups, attributes bound with
// With, any spelling of the key; and the IRC config logs without its
// password. Everything else is kept.
func TestLogRedactsSecrets(t *testing.T) {
	secrets := []string{"hunter2", "xoxb-1-bot", "xapp-1-app", "sessioncookie", "Bearer abc", "etcdpw", "keypass"}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var b bytes.Buffer
			log := newLogger(config.Log{Format: format, Level: "debug"}, &b)
			log.With("SASLPassword", "hunter2").Info("connecting",
				"bot_token", "xoxb-1-bot", "AppToken", "xapp-1-app",
				slog.Group("spiderpig", slog.String("cookie", "sessioncookie"), slog.String("url", "https://spiderpig.example")),
				slog.Group("http", slog.Group("headers", slog.String("Authorization", "Bearer abc"))),
				"etcd_credentials", "etcdpw", "passphrase", "keypass",
				"irc", bot.IRCConfig{Server: "irc.libera.chat:6697", Nick: "poolbot", SASLAccount: "poolbot", Password: "hunter2"},
				"nick", "alice", "err", errors.New("connection refused"))
			out := b.String()
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("%s log shows %q:\n%s", format, s, out)
				}
			}
			for _, keep := range []string{"alice", "https://spiderpig.example", "connection refused", "irc.libera.chat:6697", "REDACTED"} {
				if !strings.Contains(out, keep) {
					t.Errorf("%s log lacks %q:\n%s", format, keep, out)
				}
			}
			if format == "json" {
				var v map[string]any
				if err := json.Unmarshal(b.Bytes(), &v); err != nil {
					t.Fatalf("not one JSON object: %v\n%s", err, out)
				}
				if v["msg"] != "connecting" || v["level"] != "INFO" {
					t.Errorf("json record %v", v)
				}
			}
		})
	}
	// The level filters.
	var b bytes.Buffer
	log := newLogger(config.Log{Format: "text", Level: "warn"}, &b)
	log.Info("quiet")
	log.Warn("loud")
	if strings.Contains(b.String(), "quiet") || !strings.Contains(b.String(), "loud") {
		t.Fatalf("level warn: %q", b.String())
	}
}
