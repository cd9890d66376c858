package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"poolbot/bot"
	slackbot "poolbot/bot/slack"
	"poolbot/config"
)

// Secrets never reach the log, whatever the format, however they are
// passed: top-level attributes, attributes in groups, attributes bound with
// With, any spelling of the key; and the IRC config logs without its
// password. Everything else is kept.
func TestLogRedactsSecrets(t *testing.T) {
	t.Parallel()
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

// The secret values themselves are scrubbed wherever they appear, under
// any key: in an error that quotes the SASL password, in the message, in
// a plain string, inside a group and in a struct that prints them. Secrets
// are collected from the config: those config.Load read (IRC, Slack) and
// those other parts read later (SpiderPig, etcd, registry, SSH passphrase).
func TestLogScrubsSecretValues(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("POOLBOT_TEST_ETCD_PW", "etcd-env-pw-77")
	cfg := &config.Config{}
	cfg.Chat.IRC = &bot.IRCConfig{Server: "irc.libera.chat:6697", Nick: "poolbot", Password: "hunter2-sasl"}
	cfg.Chat.Slack = &slackbot.Config{AppToken: "xapp-1-secretapp", BotToken: "xoxb-1-secretbot"}
	cfg.Scap.SpiderPig.Cookie = config.Secret{File: file("cookie", "spiderpig_session=c00kie-value\n")}
	cfg.Conftool.Etcd.Password = config.Secret{Env: "POOLBOT_TEST_ETCD_PW"}
	svc := config.Service{}
	svc.Registry.Auth.Password = config.Secret{File: file("registry-pw", "registry-pw-42\n")}
	svc.Restart.SSH.Passphrase = config.Secret{File: file("passphrase", "ssh-pass-phrase\r\n")}
	cfg.Services = map[string]config.Service{"apus": svc}
	secrets := []string{"hunter2-sasl", "xapp-1-secretapp", "xoxb-1-secretbot", "spiderpig_session=c00kie-value",
		"etcd-env-pw-77", "registry-pw-42", "ssh-pass-phrase"}

	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var b bytes.Buffer
			log := newLogger(config.Log{Format: format, Level: "debug"}, &b, configSecrets(cfg)...)
			log.With("peer", "relay got xoxb-1-secretbot").Warn("irc: SASL failed for hunter2-sasl",
				"err", fmt.Errorf("irc: server said: 904 bad password hunter2-sasl"),
				"detail", "etcd said 401 for etcd-env-pw-77",
				slog.Group("http", slog.String("header", "Cookie: spiderpig_session=c00kie-value")),
				"argv", []string{"curl", "-u", "poolbot:registry-pw-42"},
				"note", "ssh-pass-phrase; xapp-1-secretapp",
				"nick", "alice", "count", 3)
			out := b.String()
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("%s log shows %q:\n%s", format, s, out)
				}
			}
			for _, keep := range []string{"irc: SASL failed for [redacted]", "904 bad password [redacted]",
				"etcd said 401 for [redacted]", "alice", "curl", "relay got [redacted]"} {
				if !strings.Contains(out, keep) {
					t.Errorf("%s log lacks %q:\n%s", format, keep, out)
				}
			}
			if format == "json" {
				var v map[string]any
				if err := json.Unmarshal(b.Bytes(), &v); err != nil {
					t.Fatalf("not one JSON object: %v\n%s", err, out)
				}
				if v["count"] != float64(3) {
					t.Errorf("count %v: values without secrets keep their type", v["count"])
				}
			}
		})
	}

	// With no secret values, text is untouched; too short a value is not
	// scrubbed everywhere.
	var b bytes.Buffer
	newLogger(config.Log{Format: "text"}, &b, "", "ab").Info("about ab", "err", errors.New("tab"))
	if out := b.String(); !strings.Contains(out, "about ab") || strings.Contains(out, "[redacted]") {
		t.Fatalf("log %q", out)
	}
}
