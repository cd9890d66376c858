package logmsgbot

import (
	"strings"
	"testing"
)

func TestRelayTrusts(t *testing.T) {
	byNick := New(Config{})
	byAccount := New(Config{Nicks: []string{"logmsgbot"}, Accounts: []string{"logmsgbot"}})
	for _, c := range []struct {
		relay Relay
		s     Sender
		want  bool
	}{
		{byNick, Sender{Network: "irc", Nick: "logmsgbot"}, true},
		{byNick, Sender{Network: "irc", Nick: "LOGMSGBOT"}, true},
		{byNick, Sender{Network: "irc", Nick: "logmsgbot_"}, false},
		{byNick, Sender{Network: "slack", Nick: "logmsgbot"}, false}, // a Slack display name proves nothing
		{byAccount, Sender{Network: "irc", Nick: "logmsgbot", Account: "logmsgbot"}, true},
		{byAccount, Sender{Network: "irc", Nick: "logmsgbot", Account: "mallory"}, false},
		{byAccount, Sender{Network: "irc", Nick: "logmsgbot"}, false}, // no account tag
		{byAccount, Sender{Network: "irc", Nick: "mallory", Account: "logmsgbot"}, false},
		{New(Config{Nicks: []string{"log[bot]"}}), Sender{Network: "irc", Nick: "LOG{BOT}"}, true}, // rfc1459
		{Relay{}, Sender{Network: "irc", Nick: "logmsgbot"}, false},                                // zero value trusts no one
	} {
		if got := c.relay.Trusts(c.s); got != c.want {
			t.Errorf("%+v.Trusts(%+v) = %v, want %v", c.relay, c.s, got, c.want)
		}
	}
	if !byNick.NickOnly() || byAccount.NickOnly() {
		t.Error("NickOnly wrong")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).WithDefaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	err := Config{Nicks: []string{"log msgbot"}, Accounts: []string{""}}.Validate()
	for _, want := range []string{"nicks[0]: not a valid IRC nick", "accounts[0]: not a valid account name"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want %q", err, want)
		}
	}
	if err := (Config{Nicks: []string{}}).Validate(); err == nil || !strings.Contains(err.Error(), "nicks: must list") {
		t.Errorf("empty nicks: %v", err)
	}
}
