package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestSlackTokensReadAtLoad(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Parse("config.example.yaml", exampleIn(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	sl := cfg.Chat.Slack
	if sl == nil || sl.AppToken != "xapp-1-A0-1-s3cret" || sl.BotToken != "xoxb-1-s3cret" {
		t.Fatalf("slack section %v", sl)
	}
	if strings.Contains(sl.String(), "s3cret") {
		t.Fatalf("tokens shown: %s", sl)
	}
}

func TestSlackProblemsReported(t *testing.T) {
	dir := t.TempDir()
	data := string(exampleIn(t, dir))
	// A bot token where the app token belongs, a channel name for an ID,
	// and a missing token file: all reported at once, each naming its key
	// and line.
	if err := os.WriteFile(filepath.Join(dir, "slack-app-token"), []byte("xoxb-wrong-kind\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data = strings.Replace(data, "channels: [C0123ABCDEF]", `channels: ["#wikimedia-operations"]`, 1)
	data = strings.Replace(data, dir+"/slack-bot-token", dir+"/missing-token", 1)
	_, err := Parse("bad.yaml", []byte(data))
	p, ok := err.(*Problems)
	if !ok {
		t.Fatalf("err = %v", err)
	}
	got := strings.Join(p.List, "\n")
	for _, want := range []string{
		": chat.slack_bot_token (file:" + dir + "/missing-token): read secret file",
		": chat.slack_app_token (file:" + dir + "/slack-app-token): must be an app-level token",
		`: chat.slack.channels: "#wikimedia-operations" is not a channel ID`,
	} {
		if !regexp.MustCompile(`(^|\n)line \d+` + regexp.QuoteMeta(want)).MatchString(got) {
			t.Errorf("problems %q: missing %q", p.List, want)
		}
	}
	if len(p.List) != 3 {
		t.Errorf("problems %q, want 3", p.List)
	}
	// With the tokens right, the channel problem is the only one left.
	if err := os.WriteFile(filepath.Join(dir, "slack-app-token"), []byte("xapp-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "missing-token"), []byte("xoxb-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Parse("bad.yaml", []byte(data))
	if err == nil || !regexp.MustCompile(`1 configuration problem\(s\):\n  line \d+: chat.slack.channels: "#wikimedia-operations" is not a channel ID`).MatchString(err.Error()) {
		t.Fatalf("err = %v", err)
	}
}

func TestSlackOnlyNeedsANonIRCSALSink(t *testing.T) {
	dir := t.TempDir()
	data := string(exampleIn(t, dir))
	start := strings.Index(data, "  irc:\n")
	end := strings.Index(data, "  # The SASL password")
	if start < 0 || end < start {
		t.Fatal("example layout changed")
	}
	data = data[:start] + data[end:]
	data = strings.Replace(data, "  irc_sasl_password:\n    file: "+dir+"/irc-password\n", "  irc_sasl_password:\n    file: \"\"\n", 1)
	_, err := Parse("slack-only.yaml", []byte(data))
	if err == nil || !strings.Contains(err.Error(), "sal.sink: channel writes SAL on IRC, but there is no chat.irc") {
		t.Fatalf("err = %v", err)
	}
	data = strings.Replace(data, "  sink: channel ", "  sink: tcpircbot ", 1)
	if _, err := Parse("slack-only.yaml", []byte(data)); err != nil {
		t.Fatalf("Slack only with tcpircbot: %v", err)
	}
}
