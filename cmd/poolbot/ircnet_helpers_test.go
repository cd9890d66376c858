package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"poolbot/internal/testenv/ircnet"
)

// ircFixture is a real IRC network (InspIRCd and Atheme) with poolbot's
// NickServ account registered and its password in a file, for daemon
// tests.
type ircFixture struct {
	net     *ircnet.Net
	channel string
	pwFile  string
}

// startIRC starts the network in dir and registers poolbot and accounts.
func startIRC(t *testing.T, dir, channel string, accounts ...ircnet.Account) *ircFixture {
	t.Helper()
	f := &ircFixture{net: ircnet.Start(t, ircnet.Options{}), channel: channel, pwFile: filepath.Join(dir, "irc-password")}
	accounts = append([]ircnet.Account{{Name: "poolbot", Password: "botpw-1234"}}, accounts...)
	if err := f.net.RegisterAll(context.Background(), accounts...); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.pwFile, []byte("botpw-1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// chat is the chat section's IRC part (indented for site.Site.Config):
// the relaxed port and a fast pacer, since these tests are about what
// poolbot does, not flood control; extra adds keys to the irc map.
func (f *ircFixture) chat(extra string) string {
	return fmt.Sprintf(`  irc: {server: %q, nick: poolbot, sasl_account: poolbot, channels: [%q], rate: 20, burst: 20,
         reconnect_min: 200ms, reconnect_max: 1s%s}
  irc_sasl_password: {file: %q}`, f.net.Addr(), f.channel, extra, f.pwFile)
}

// dial connects a client (logged in when account is set) and joins the
// channel.
func (f *ircFixture) dial(t *testing.T, nick, account, password string) *ircnet.Client {
	t.Helper()
	ctx := context.Background()
	c, err := f.net.Dial(ctx, ircnet.ClientOptions{Nick: nick, SASLAccount: account, SASLPassword: password,
		Caps: []string{"account-tag", "message-tags", "server-time"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Join(ctx, f.channel); err != nil {
		t.Fatal(err)
	}
	return c
}
