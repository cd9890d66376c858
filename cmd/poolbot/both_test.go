package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"poolbot"
	slackbot "poolbot/bot/slack"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/ircnet"
	"poolbot/internal/testenv/site"
	"poolbot/internal/testenv/slacknet"
	"poolbot/store"
)

// One poolbot on IRC and Slack at once, against a real ircnet and
// slacknet, with alice an operator on both networks (NickServ account
// alice, Slack user U0ALICE) and bob on IRC only:
//
//   - a command from Slack queues a request whose SAL lines reach the IRC
//     SAL channel as "!log" lines, each then mirrored to the Slack mirror
//     channel;
//   - the two-person rule compares operators, not networks: alice's
//     !force on IRC cannot be confirmed by alice from Slack, bob can;
//   - CR/LF in a Slack message cannot inject an IRC protocol line: what
//     poolbot says in the channel stays whole, the line breaks of the
//     reason became spaces.
func TestDaemonIRCAndSlack(t *testing.T) {
	t.Parallel()
	const (
		channel = "#wikimedia-operations"
		opsCh   = "C0OPS"
		mirror  = "C0MIRROR"
	)
	w := site.New(t, 2)
	irc := startIRC(t, w.Dir, channel, ircnet.Account{Name: "alice", Password: "alicepw-1234"},
		ircnet.Account{Name: "bob", Password: "bobpw-1234"})
	srv := slacknet.Start(t, slacknet.Options{Users: map[string]string{"U0ALICE": "Alice"}})
	ctx := context.Background()
	secret := func(name, value string) string {
		path := filepath.Join(w.Dir, name)
		if err := os.WriteFile(path, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	so := srv.Options()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfgPath := w.Config(t, irc.chat("")+fmt.Sprintf(`
  slack: {channels: [%s], mirror_channel: %s, mirror_thread: true, api_url: %q}
  slack_app_token: {file: %q}
  slack_bot_token: {file: %q}`, opsCh, mirror, srv.APIURL(), secret("slack-app", so.AppToken), secret("slack-bot", so.BotToken)),
		fmt.Sprintf("http: {listen: %q}\nforce: {require_confirm: true}\n", httpAddr))
	// The world's config names alice on IRC only: map her Slack user to
	// the same operator, and add bob.
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	const ops = "operators: [{name: alice, irc_accounts: [alice]}]"
	if !strings.Contains(string(data), ops) {
		t.Fatalf("lab config changed: no %q", ops)
	}
	y := strings.Replace(string(data), ops, "operators:\n"+
		"  - {name: alice, irc_accounts: [alice], slack_user_ids: [U0ALICE]}\n"+
		"  - {name: bob, irc_accounts: [bob]}", 1)
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}

	dial := func(nick, account, password string) *ircnet.Client { return irc.dial(t, nick, account, password) }
	alice := dial("alice", "alice", "alicepw-1234")
	bob := dial("bob", "bob", "bobpw-1234")
	// fromBot is a PRIVMSG poolbot said in the channel containing sub.
	fromBot := func(sub string) func(ircnet.Line) bool {
		return func(l ircnet.Line) bool {
			return l.Msg.Command == "PRIVMSG" && l.Msg.Nick() == "poolbot" && len(l.Msg.Params) == 2 &&
				l.Msg.Params[0] == channel && strings.Contains(l.Msg.Params[1], sub)
		}
	}
	waitLine := func(c *ircnet.Client, what string, match func(ircnet.Line) bool) ircnet.Line {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		l, err := c.WaitFor(wctx, match)
		if err != nil {
			t.Fatalf("%s: %v\nlines:\n%s", what, err, rawLines(c))
		}
		return l
	}
	openStore := func() *store.Store {
		t.Helper()
		st, err := store.Open(ctx, filepath.Join(w.Dir, "poolbot.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	// slackSay sends a message from alice's Slack account in the ops
	// channel and returns poolbot's reply in the message's thread.
	slackN := 0
	slackSay := func(text string) string {
		t.Helper()
		slackN++
		ts := fmt.Sprintf("1790004000.%06d", slackN)
		env := fmt.Sprintf("both%d", slackN)
		srv.Send(t, slacknet.MessageEvent{EnvelopeID: env, EventID: "Ev" + env, User: "U0ALICE", Channel: opsCh,
			Text: text, TS: ts}.JSON())
		srv.WaitAck(t, env, 10*time.Second)
		var reply string
		srv.Wait(t, "reply to "+text, 20*time.Second, func() bool {
			for _, p := range srv.Posts() {
				if p.Channel == opsCh && p.ThreadTS == ts {
					reply = p.Text
					return true
				}
			}
			return false
		})
		return reply
	}
	// salLines is every "!log" line poolbot said about request id, as
	// alice saw them, without "!log ".
	salLines := func(id int) []string {
		var out []string
		prefix := fmt.Sprintf("!log poolbot #%d ", id)
		for _, l := range alice.Lines() {
			if fromBot(prefix)(l) && strings.HasPrefix(l.Msg.Params[1], prefix) {
				out = append(out, strings.TrimPrefix(l.Msg.Params[1], "!log "))
			}
		}
		return out
	}
	// mirroredSAL waits until every one of lines was posted in the
	// thread of one status message in the mirror channel, in order.
	mirroredSAL := func(lines []string) {
		t.Helper()
		srv.Wait(t, "SAL lines in the Slack mirror", 20*time.Second, func() bool {
			var got []string
			for _, p := range srv.Posts() {
				if p.Channel == mirror && p.Method == "chat.postMessage" && p.ThreadTS != "" {
					got = append(got, p.Text)
				}
			}
			k := 0
			for _, g := range got {
				if k < len(lines) && g == slackbot.Escape(lines[k]) {
					k++
				}
			}
			return k == len(lines)
		})
	}

	d := startDaemon(t, cfgPath)
	waitLine(alice, "poolbot joins", func(l ircnet.Line) bool { return l.Msg.Command == "JOIN" && l.Msg.Nick() == "poolbot" })
	srv.WaitConnections(t, 1, 30*time.Second)
	testenv.Eventually(t, 45*time.Second, "/healthz to report both networks", func() bool {
		body := httpGet(t, "http://"+httpAddr+"/healthz")
		return strings.Contains(body, "chat irc: ok") && strings.Contains(body, "chat slack: ok")
	})

	// (a) A command from Slack: SAL on IRC, mirrored to Slack.
	if got := slackSay("!restart apus T100 from slack"); !strings.Contains(got, "#1 queued") {
		t.Fatalf("Slack reply %q", got)
	}
	waitLine(alice, "END of #1", fromBot("!log poolbot #1 alice: END (PASS)"))
	st := openStore()
	if r, err := st.Request(ctx, 1); err != nil || r.Operator != "alice" || r.Origin.Network != "slack" ||
		r.State != poolbot.StateDone {
		t.Fatalf("#1 stored as %+v, %v", r, err)
	}
	want, err := st.SALLines(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := salLines(1)
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("#1's SAL lines on IRC:\n%s\nstored:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, sub := range []string{"START - restart apus", "(1/2)", "(2/2)", "deploy block released", "END (PASS)"} {
		if !slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, sub) }) {
			t.Errorf("no SAL line of #1 with %q:\n%s", sub, strings.Join(got, "\n"))
		}
	}
	mirroredSAL(got)
	srv.Wait(t, "#1's status message done", 20*time.Second, func() bool {
		return slices.ContainsFunc(srv.Posts(), func(p slacknet.Post) bool {
			return p.Channel == mirror && strings.Contains(p.Blocks, "*poolbot #1*") && strings.Contains(p.Blocks, "*done*")
		})
	})

	// (b) Two-person rule across networks. A running scap keeps #2
	// waiting, so it can be forced.
	release := site.HoldLock(t, filepath.Join(w.LockDir, "scap.srv_mediawiki-staging.lock"), "shared")
	if err := alice.Privmsg(channel, "!restart apus T200 scap is stuck"); err != nil {
		t.Fatal(err)
	}
	waitLine(alice, "#2 queued", fromBot("alice: #2 queued"))
	if err := alice.Privmsg(channel, "!force 2 scap is stuck T200"); err != nil {
		t.Fatal(err)
	}
	waitLine(alice, "FORCE requested", fromBot("alice: #2 FORCE requested by alice"))
	if got := slackSay("!confirm 2"); !strings.Contains(got, "refused: #2 was forced by alice; the confirmation must come from a different operator") {
		t.Fatalf("alice confirming her own force from Slack: %q", got)
	}
	if r, err := st.Request(ctx, 2); err != nil || !r.Forced || r.ConfirmedBy != "" || !r.State.Pending() {
		t.Fatalf("#2 after alice's own confirm: %+v, %v", r, err)
	}
	if err := bob.Privmsg(channel, "!confirm 2"); err != nil {
		t.Fatal(err)
	}
	waitLine(bob, "bob's confirmation", fromBot("bob: #2 FORCE confirmed by bob"))
	waitLine(alice, "SAL: FORCE confirmed", fromBot("!log poolbot #2 alice: FORCE confirmed by bob"))
	if r, err := st.Request(ctx, 2); err != nil || r.ConfirmedBy != "bob" {
		t.Fatalf("#2 after bob's confirm: %+v, %v", r, err)
	}
	events, err := st.Events(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	var confirms []string
	for _, e := range events {
		if e.Kind == "confirm" {
			confirms = append(confirms, e.Actor)
		}
	}
	if !slices.Equal(confirms, []string{"bob"}) {
		t.Fatalf("confirm events by %v, want [bob]", confirms)
	}
	release()
	waitLine(alice, "END of #2", fromBot("!log poolbot #2 alice: END (PASS)"))

	// (c) CR/LF from Slack.
	injections := []struct{ text, reason string }{
		{"!restart apus T300 a\r\nPRIVMSG #wikimedia-operations :pwned", "T300 a PRIVMSG #wikimedia-operations :pwned"},
		{"!restart apus T400 b\nPRIVMSG #wikimedia-operations :pwned\n", "T400 b PRIVMSG #wikimedia-operations :pwned"},
	}
	for k, inj := range injections {
		id := 3 + k
		if got := slackSay(inj.text); !strings.Contains(got, fmt.Sprintf("#%d queued", id)) {
			t.Fatalf("Slack reply to %q: %q", inj.text, got)
		}
		waitLine(alice, fmt.Sprintf("END of #%d", id), fromBot(fmt.Sprintf("!log poolbot #%d alice: END (PASS)", id)))
		if r, err := st.Request(ctx, poolbot.RequestID(id)); err != nil || r.Reason != inj.reason {
			t.Fatalf("#%d stored reason %q, %v; want %q", id, r.Reason, err, inj.reason)
		}
		start := fmt.Sprintf("!log poolbot #%d alice: START - restart apus", id)
		l := waitLine(alice, "START of #"+fmt.Sprint(id), fromBot(start))
		if !strings.HasSuffix(l.Msg.Params[1], ": "+inj.reason) {
			t.Errorf("START line %q does not end in the reason %q", l.Msg.Params[1], inj.reason)
		}
	}
	// Every line poolbot sent, as two clients saw them: one whole message
	// each, and "pwned" only ever inside a reason.
	for _, c := range []*ircnet.Client{alice, bob} {
		pwned := 0
		for _, l := range c.Lines() {
			if strings.Contains(l.Raw, "pwned") && l.Msg.Command == "PRIVMSG" && len(l.Msg.Params) == 2 &&
				strings.HasPrefix(strings.TrimLeft(l.Msg.Params[1], " :"), "pwned") {
				t.Errorf("%s: an injected line: %q", c.Nick(), l.Raw)
			}
			if l.Msg.Nick() != "poolbot" {
				continue
			}
			switch l.Msg.Command {
			case "PRIVMSG", "NOTICE":
			case "JOIN", "QUIT", "MODE", "NICK":
				continue
			default:
				t.Errorf("%s: poolbot sent %q", c.Nick(), l.Raw)
				continue
			}
			if len(l.Msg.Params) != 2 || l.Msg.Params[0] != channel && l.Msg.Params[0] != c.Nick() {
				t.Errorf("%s: poolbot line %q is not one message to %s or %s", c.Nick(), l.Raw, channel, c.Nick())
				continue
			}
			text := l.Msg.Params[1]
			if strings.Contains(text, "pwned") {
				pwned++
				if !strings.Contains(text, injections[0].reason) && !strings.Contains(text, injections[1].reason) {
					t.Errorf("%s: poolbot line with pwned outside the reason: %q", c.Nick(), text)
				}
			}
			if strings.HasPrefix(text, "PRIVMSG") || strings.ContainsAny(text, "\r\n\x00") {
				t.Errorf("%s: poolbot line %q", c.Nick(), text)
			}
		}
		if pwned < len(injections) {
			t.Errorf("%s saw %d lines with the reasons, want at least %d (the START lines)", c.Nick(), pwned, len(injections))
		}
	}
	d.stop()
	d.wait(t, 30*time.Second)
}

func rawLines(c *ircnet.Client) string {
	var b strings.Builder
	for _, l := range c.Lines() {
		b.WriteString(l.Raw + "\n")
	}
	return b.String()
}
