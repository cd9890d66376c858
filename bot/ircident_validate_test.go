package bot

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// The bot's identity (nick, user, realname) goes on the wire in NICK and
// USER, and nick and user are relayed in the prefix of every line the bot
// sends: Validate must refuse anything that would break those lines or
// make them invalid UTF-8. FuzzIRCLine found a non-UTF-8 user ("\xf1")
// accepted; the relayed ":nick!~\xf1@host PRIVMSG …" is not UTF-8.
func TestIRCConfigValidateIdentity(t *testing.T) {
	base := IRCConfig{Server: "irc.libera.chat:6697", Nick: "poolbot"}
	if err := base.Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for _, tc := range []struct {
		key               string
		nick, user, rname string
	}{
		{key: "irc.user", user: "\xf1"},
		{key: "irc.user", user: "pool\x80bot"},
		{key: "irc.user", user: "\xff\xfe"},
		{key: "irc.user", user: "pöolbot"}, // UTF-8, but not ASCII: servers refuse it in an ident
		{key: "irc.user", user: "pool bot"},
		{key: "irc.user", user: "pool\tbot"},
		{key: "irc.user", user: "pool\rbot"},
		{key: "irc.user", user: "pool\nbot"},
		{key: "irc.user", user: "pool\x00bot"},
		{key: "irc.user", user: "pool\x7fbot"},
		{key: "irc.user", user: ":poolbot"},
		{key: "irc.user", user: "a!b"},
		{key: "irc.user", user: strings.Repeat("u", 65)},
		{key: "irc.nick", nick: "pool\xf1"},
		{key: "irc.nick", nick: "pöolbot"},
		{key: "irc.nick", nick: "pool bot"},
		{key: "irc.nick", nick: "pool\r\nbot"},
		{key: "irc.nick", nick: "pool\x00bot"},
		{key: "irc.realname", rname: "pool\xf1bot"},
		{key: "irc.realname", rname: "\xc3"},
		{key: "irc.realname", rname: "pool\rbot"},
		{key: "irc.realname", rname: "pool\nbot"},
		{key: "irc.realname", rname: "pool\x00bot"},
		{key: "irc.realname", rname: strings.Repeat("r", 500)},
	} {
		c := base
		if tc.nick != "" {
			c.Nick = tc.nick
		}
		c.User, c.RealName = tc.user, tc.rname
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.key+":") {
			t.Errorf("nick %q user %q realname %q: Validate() = %v, want an error for %s", c.Nick, c.User, c.RealName, err, tc.key)
			continue
		}
		// The message itself is printable: it quotes the bad value.
		if msg := err.Error(); !utf8.ValidString(msg) || strings.ContainsAny(msg, "\r\n\x00") {
			t.Errorf("error message is not one clean line: %q", msg)
		}
	}
	// What stays valid: an ordinary ident, a 64-byte one, and a realname
	// with spaces and non-ASCII letters (it is USER's trailing parameter).
	for _, ok := range []IRCConfig{
		{User: "poolbot"},
		{User: "pool-bot_1~"},
		{User: strings.Repeat("u", 64)},
		{RealName: "poolbot — Wikimedia SRE pool/depool bot"},
		{RealName: "Zoë's bot"},
	} {
		c := base
		c.User, c.RealName = ok.User, ok.RealName
		if err := c.Validate(); err != nil {
			t.Errorf("user %q realname %q: %v", c.User, c.RealName, err)
		}
	}
}
