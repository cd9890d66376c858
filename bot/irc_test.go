package bot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"poolbot/chat"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/ircnet"
)

// These tests run the adapter against a real InspIRCd + Atheme network
// (internal/testenv/ircnet). The bot always connects to the network's
// flood port, whose connect class kills a client that floods; test clients
// use the relaxed port. Every new IRC connection takes about a second to
// register on InspIRCd, so clients connect in parallel.

func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// received is one chat.Handler call.
type received struct {
	m chat.Message
	r chat.Replier
}

// recorder is a chat.Handler that queues what it gets, then runs then (if set).
type recorder struct {
	ch   chan received
	then func(ctx context.Context, m chat.Message, r chat.Replier)
}

func newRecorder() *recorder { return &recorder{ch: make(chan received, 1000)} }

func (h *recorder) HandleMessage(ctx context.Context, m chat.Message, r chat.Replier) {
	h.ch <- received{m, r}
	if h.then != nil {
		h.then(ctx, m, r)
	}
}

// next returns the next message whose text is text, failing on any other.
func (h *recorder) next(t *testing.T, ctx context.Context, text string) received {
	t.Helper()
	select {
	case got := <-h.ch:
		if got.m.Text != text {
			t.Fatalf("handler got %q (from %s), want %q", got.m.Text, got.m.Nick, text)
		}
		return got
	case <-ctx.Done():
		t.Fatalf("handler did not get %q: %v", text, ctx.Err())
	}
	return received{}
}

func botConfig(n *ircnet.Net, nick string) IRCConfig {
	return IRCConfig{
		Server: n.FloodAddr(), Nick: nick, SASLAccount: nick, Password: nick + "-secret-pw",
		Channels: []string{"#ops"}, SALChannel: "#sal",
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second,
		ConnectTimeout: 10 * time.Second, ConfirmTimeout: 10 * time.Second,
		QuitMessage: "poolbot test shutting down",
	}
}

// startBot runs the adapter until the test ends, then checks that Run
// returns promptly and that the logs never contained the password.
func startBot(t testing.TB, cfg IRCConfig, h chat.Handler) (*IRC, *testenv.SyncBuffer) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	bot := NewIRC(cfg, h, logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bot.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
		if cfg.Password != "" && strings.Contains(logs.String(), cfg.Password) {
			t.Error("the password appears in the logs")
		}
		if t.Failed() {
			t.Logf("bot logs:\n%s", logs.String())
		}
	})
	return bot, logs
}

func waitJoined(t testing.TB, ctx context.Context, bot *IRC, channel string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "the bot to join "+channel, func() bool {
		for _, ch := range bot.Channels() {
			if foldEqual(ch, channel) {
				return true
			}
		}
		return false
	})
}

// dial connects test clients in parallel to the relaxed port.
func dial(t testing.TB, ctx context.Context, n *ircnet.Net, opts ...ircnet.ClientOptions) []*ircnet.Client {
	t.Helper()
	cs := make([]*ircnet.Client, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for k := range opts {
		wg.Go(func() { cs[k], errs[k] = n.Dial(ctx, opts[k]) })
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cs[k].Close)
	}
	return cs
}

func fromBot(bot *IRC, command, target string) func(ircnet.Line) bool {
	return func(l ircnet.Line) bool {
		return l.Msg.Command == command && foldEqual(l.Msg.Nick(), bot.Nick()) &&
			len(l.Msg.Params) == 2 && foldEqual(l.Msg.Params[0], target)
	}
}

// linesFromBot are the lines a client got from the bot (any nick it had).
func linesFromBot(c *ircnet.Client, nickPrefix string) []ircnet.Line {
	var out []ircnet.Line
	for _, l := range c.Lines() {
		if strings.HasPrefix(strings.ToLower(l.Msg.Nick()), nickPrefix) {
			out = append(out, l)
		}
	}
	return out
}

var watcherCaps = []string{"account-tag", "message-tags", "server-time", "extended-join"}

// The bot logs in with SASL, joins, and turns PRIVMSGs into Messages whose
// Account comes from the server's account tag — never from the nick.
func TestIRCAccountsAndReplies(t *testing.T) {
	t.Parallel()
	n := ircnet.Start(t, ircnet.Options{})
	ctx := testCtx(t, 45*time.Second)
	if err := n.RegisterAll(ctx, ircnet.Account{Name: "poolbot", Password: "poolbot-secret-pw"},
		ircnet.Account{Name: "alice", Password: "alicepw1"}); err != nil {
		t.Fatal(err)
	}
	h := newRecorder()
	h.then = func(ctx context.Context, m chat.Message, r chat.Replier) {
		if m.Text == "!status" || m.Text == "hello bot" {
			if err := r.Reply(ctx, "ack "+m.Text); err != nil {
				t.Errorf("Reply: %v", err)
			}
		}
	}
	bot, _ := startBot(t, botConfig(n, "poolbot"), h)
	cs := dial(t, ctx, n,
		ircnet.ClientOptions{Nick: "watcher", Caps: watcherCaps},
		ircnet.ClientOptions{Nick: "alice2", SASLAccount: "alice", SASLPassword: "alicepw1"},
		ircnet.ClientOptions{Nick: "mallory"})
	watcher, alice, mallory := cs[0], cs[1], cs[2]
	for _, c := range cs {
		if err := c.Join(ctx, "#ops"); err != nil {
			t.Fatal(err)
		}
	}
	waitJoined(t, ctx, bot, "#ops")
	waitJoined(t, ctx, bot, "#sal")
	if !bot.Connected() || !bot.AccountTagAcked() || bot.Nick() != "poolbot" {
		t.Fatalf("connected=%v account-tag=%v nick=%q", bot.Connected(), bot.AccountTagAcked(), bot.Nick())
	}
	// The server says the bot is logged in (SASL).
	if err := watcher.Send("WHOIS", "poolbot"); err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool {
		return l.Msg.Command == "330" && len(l.Msg.Params) >= 3 && l.Msg.Params[1] == "poolbot" && l.Msg.Params[2] == "poolbot"
	}); err != nil {
		t.Fatalf("bot not logged in: %v", err)
	}

	// A logged-in operator in the channel.
	if err := alice.Privmsg("#ops", "!status"); err != nil {
		t.Fatal(err)
	}
	got := h.next(t, ctx, "!status")
	want := chat.Message{Network: "irc", Channel: "#ops", Nick: "alice2", Account: "alice", AccountKnown: true, Text: "!status"}
	if m := got.m; m.Network != want.Network || m.Channel != want.Channel || m.Nick != want.Nick ||
		m.Account != want.Account || !m.AccountKnown || m.Private() {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	// chat.Message.Time is the server's time tag, the same the watcher got.
	wl, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool { return l.Msg.Command == "PRIVMSG" && l.Msg.Params[1] == "!status" })
	if err != nil {
		t.Fatal(err)
	}
	_, ts := wl.Msg.GetTag("time")
	if st, err := time.Parse(time.RFC3339Nano, ts); err != nil || !st.Equal(got.m.Time) {
		t.Errorf("chat.Message.Time %v, server-time %q", got.m.Time, ts)
	}
	// The reply goes to the channel, addressed to the sender.
	if l, err := watcher.WaitFor(ctx, fromBot(bot, "PRIVMSG", "#ops")); err != nil || l.Msg.Params[1] != "alice2: ack !status" {
		t.Fatalf("reply %q, %v", l.Raw, err)
	}

	// A private message: no Channel, and the answer is a NOTICE to the sender.
	if err := alice.Privmsg("poolbot", "hello bot"); err != nil {
		t.Fatal(err)
	}
	got = h.next(t, ctx, "hello bot")
	if !got.m.Private() || got.m.Account != "alice" || got.m.Nick != "alice2" {
		t.Fatalf("private message: %+v", got.m)
	}
	if l, err := alice.WaitFor(ctx, fromBot(bot, "NOTICE", "alice2")); err != nil || l.Msg.Params[1] != "ack hello bot" {
		t.Fatalf("private reply %q, %v", l.Raw, err)
	}

	// CTCP (/me included) and NOTICEs are not for the handler; the next
	// plain message is.
	for _, line := range []string{"PRIVMSG #ops :\x01ACTION !depool apus eqiad\x01", "NOTICE #ops :!depool apus eqiad", "PRIVMSG #ops :after"} {
		if err := alice.SendRaw(line); err != nil {
			t.Fatal(err)
		}
	}
	h.next(t, ctx, "after")

	// alice leaves; mallory takes her nick. Same nick, no account: the
	// server says so, and the adapter believes the server, not the nick.
	alice.Quit()
	if _, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool { return l.Msg.Command == "QUIT" && l.Msg.Nick() == "alice2" }); err != nil {
		t.Fatal(err)
	}
	if err := mallory.Send("NICK", "alice2"); err != nil {
		t.Fatal(err)
	}
	if _, err := mallory.WaitFor(ctx, func(l ircnet.Line) bool { return l.Msg.Command == "NICK" && l.Msg.Params[0] == "alice2" }); err != nil {
		t.Fatal(err)
	}
	if err := mallory.Privmsg("#ops", "!depool apus eqiad trust me"); err != nil {
		t.Fatal(err)
	}
	got = h.next(t, ctx, "!depool apus eqiad trust me")
	if got.m.Nick != "alice2" || got.m.Account != "" || !got.m.AccountKnown {
		t.Fatalf("impostor: %+v (want Account empty, AccountKnown true)", got.m)
	}
	// A client cannot forge the account tag: the server strips it.
	if err := mallory.SendRaw("@account=alice PRIVMSG #ops :forged"); err != nil {
		t.Fatal(err)
	}
	if got = h.next(t, ctx, "forged"); got.m.Account != "" {
		t.Fatalf("forged tag accepted: %+v", got.m)
	}
	// The bot's own lines (echoed back by echo-message) never reach the handler.
	select {
	case extra := <-h.ch:
		t.Fatalf("unexpected message %+v", extra.m)
	default:
	}
}

// Without an acknowledged account-tag, no sender's account is known: the
// adapter says so instead of reporting everyone as logged out.
func TestIRCAccountTagNotAcked(t *testing.T) {
	t.Parallel()
	n := ircnet.Start(t, ircnet.Options{})
	ctx := testCtx(t, 45*time.Second)
	if err := n.RegisterAll(ctx, ircnet.Account{Name: "poolbot", Password: "poolbot-secret-pw"},
		ircnet.Account{Name: "alice", Password: "alicepw1"}); err != nil {
		t.Fatal(err)
	}
	cfg := botConfig(n, "poolbot")
	cfg.caps = []string{"server-time"} // no account-tag, no echo-message
	h := newRecorder()
	bot, logs := startBot(t, cfg, h)
	alice := dial(t, ctx, n, ircnet.ClientOptions{Nick: "alice", SASLAccount: "alice", SASLPassword: "alicepw1"})[0]
	if err := alice.Join(ctx, "#ops"); err != nil {
		t.Fatal(err)
	}
	waitJoined(t, ctx, bot, "#ops")
	if bot.AccountTagAcked() {
		t.Fatal("AccountTagAcked with account-tag not requested")
	}
	if err := alice.Privmsg("#ops", "!pool apus eqiad T1"); err != nil {
		t.Fatal(err)
	}
	got := h.next(t, ctx, "!pool apus eqiad T1")
	if got.m.AccountKnown || got.m.Account != "" {
		t.Fatalf("got %+v, want AccountKnown false and no Account", got.m)
	}
	if !strings.Contains(logs.String(), "did not acknowledge account-tag") {
		t.Error("no log line about the missing account-tag")
	}
	// Without echo-message, Say's "delivered" means written to the socket.
	if err := bot.Say(ctx, "#ops", "written, not echoed"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitFor(ctx, func(l ircnet.Line) bool {
		return l.Msg.Command == "PRIVMSG" && l.Msg.Params[1] == "written, not echoed"
	}); err != nil {
		t.Fatal(err)
	}
}

// Over TLS (as on Libera.Chat's port 6697), verified against tls_ca_file.
func TestIRCTLS(t *testing.T) {
	t.Parallel()
	n := ircnet.Start(t, ircnet.Options{})
	ctx := testCtx(t, 30*time.Second)
	if err := n.Register(ctx, "poolbot", "poolbot-secret-pw"); err != nil {
		t.Fatal(err)
	}
	cfg := botConfig(n, "poolbot")
	cfg.Server, cfg.TLS, cfg.TLSCAFile = n.TLSAddr(), true, n.CAFile()
	h := newRecorder()
	bot, _ := startBot(t, cfg, h)
	user := dial(t, ctx, n, ircnet.ClientOptions{Nick: "user"})[0]
	if err := user.Join(ctx, "#ops"); err != nil {
		t.Fatal(err)
	}
	waitJoined(t, ctx, bot, "#ops")
	if err := user.Privmsg("#ops", "over tls?"); err != nil {
		t.Fatal(err)
	}
	h.next(t, ctx, "over tls?")
	if err := bot.Say(ctx, "#ops", "yes"); err != nil {
		t.Fatal(err)
	}
	if _, err := user.WaitFor(ctx, func(l ircnet.Line) bool { return l.Msg.Command == "PRIVMSG" && l.Msg.Params[1] == "yes" }); err != nil {
		t.Fatal(err)
	}

	// Without the CA file the system roots do not trust the test CA: the
	// bot refuses to connect (there is no way to skip verification).
	cfg.Nick, cfg.SASLAccount = "untrusting", ""
	cfg.Password, cfg.TLSCAFile = "", ""
	untrusting, logs := startBot(t, cfg, newRecorder())
	testenv.Eventually(t, 30*time.Second, "a failed TLS connect", func() bool { return strings.Contains(logs.String(), "certificate") })
	if untrusting.Connected() {
		t.Fatal("connected without trusting the certificate")
	}
}

// A wrong password: SASL fails, the bot keeps retrying with backoff, logs
// why, and never logs the password.
func TestIRCBadPassword(t *testing.T) {
	t.Parallel()
	n := ircnet.Start(t, ircnet.Options{})
	ctx := testCtx(t, 30*time.Second)
	if err := n.Register(ctx, "poolbot", "the-right-password"); err != nil {
		t.Fatal(err)
	}
	bot, logs := startBot(t, botConfig(n, "poolbot"), newRecorder()) // password poolbot-secret-pw
	testenv.Eventually(t, 30*time.Second, "two failed attempts", func() bool { return strings.Count(logs.String(), "SASL authentication failed") >= 2 })
	if bot.Connected() {
		t.Fatal("connected with a wrong password")
	}
}

// No text can inject a protocol line, long text is split into lines the
// server relays whole, and lines the server refuses are reported.
func TestIRCOutputSafety(t *testing.T) {
	t.Parallel()
	n := ircnet.Start(t, ircnet.Options{})
	ctx := testCtx(t, 45*time.Second)
	if err := n.Register(ctx, "poolbot", "poolbot-secret-pw"); err != nil {
		t.Fatal(err)
	}
	h := newRecorder()
	h.then = func(ctx context.Context, m chat.Message, r chat.Replier) {
		if strings.HasPrefix(m.Text, "echo ") {
			_ = r.Reply(ctx, strings.TrimPrefix(m.Text, "echo ")) // echoes user text
		}
	}
	bot, _ := startBot(t, botConfig(n, "poolbot"), h)
	cs := dial(t, ctx, n, ircnet.ClientOptions{Nick: "watcher", Caps: watcherCaps}, ircnet.ClientOptions{Nick: "user"})
	watcher, user := cs[0], cs[1]
	for _, c := range cs {
		if err := c.Join(ctx, "#ops"); err != nil {
			t.Fatal(err)
		}
	}
	waitJoined(t, ctx, bot, "#ops")
	// The watcher has seen the bot's JOIN (or found it in NAMES) before
	// counting what the bot sends.
	if _, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool {
		return l.Msg.Command == "JOIN" && l.Msg.Nick() == "poolbot" ||
			l.Msg.Command == "353" && namesHas(l.Msg.Params[len(l.Msg.Params)-1], "poolbot")
	}); err != nil {
		t.Fatal(err)
	}
	mark := len(linesFromBot(watcher, "poolbot"))

	for _, text := range []string{"ok\r\nPRIVMSG #ops :injected", "a\x00b", "quit?\nQUIT :bye"} {
		if err := bot.Say(ctx, "#ops", text); err != nil {
			t.Fatalf("Say(%q): %v", text, err)
		}
	}
	if err := bot.Say(ctx, "#ops", "\x00\r\n"); err != nil { // nothing printable: nothing sent
		t.Fatal(err)
	}
	// User text echoed in a reply is sanitised too: no colours, no CTCP.
	if err := user.Privmsg("#ops", "echo \x0304red\x03 \x01VERSION\x01 x\tJOIN #evil"); err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool { return strings.HasPrefix(l.Msg.Params[len(l.Msg.Params)-1], "user: ") }); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"#ops extra", "#ops\r\nQUIT", "", ":x", "#a,#b", "#ops\x00"} {
		if err := bot.Say(ctx, target, "x"); !errors.Is(err, ErrBadTarget) {
			t.Errorf("Say to %q: %v, want ErrBadTarget", target, err)
		}
	}
	if err := bot.Say(ctx, "#ops", "sentinel"); err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool { return l.Msg.Command == "PRIVMSG" && l.Msg.Params[1] == "sentinel" }); err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, l := range linesFromBot(watcher, "poolbot")[mark:] {
		if l.Msg.Command != "PRIVMSG" || l.Msg.Params[0] != "#ops" {
			t.Errorf("the bot sent an unexpected line: %s", l.Raw)
			continue
		}
		texts = append(texts, l.Msg.Params[1])
	}
	want := []string{"ok  PRIVMSG #ops :injected", "a b", "quit? QUIT :bye", "user: red  VERSION  x JOIN #evil", "sentinel"}
	if strings.Join(texts, "|") != strings.Join(want, "|") {
		t.Errorf("watcher saw %q,\nwant %q", texts, want)
	}
	if !bot.Connected() {
		t.Fatal("bot disconnected")
	}

	// Long text: several lines, each within 512 bytes as the server relays
	// it to others (prefix included) and within max_line_bytes, in order,
	// with nothing but spaces lost.
	var b strings.Builder
	for k := 0; b.Len() < 1500; k++ {
		fmt.Fprintf(&b, "host%03d:ok ümlaut-🚀 ", k)
	}
	b.WriteString(strings.Repeat("x", 500)) // a "word" longer than a line
	long := b.String()
	mark = len(linesFromBot(watcher, "poolbot"))
	if err := bot.Say(ctx, "#ops", long); err != nil {
		t.Fatal(err)
	}
	if err := bot.Say(ctx, "#ops", "end of long"); err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool {
		return l.Msg.Command == "PRIVMSG" && l.Msg.Params[1] == "end of long"
	}); err != nil {
		t.Fatal(err)
	}
	var pieces []string
	fromBot := linesFromBot(watcher, "poolbot")
	for _, l := range fromBot[mark : len(fromBot)-1] {
		if l.Msg.Command != "PRIVMSG" {
			t.Fatalf("unexpected line from the bot: %s", l.Raw)
		}
		relayed := l.Raw
		if strings.HasPrefix(relayed, "@") { // tags do not count against 512
			relayed = relayed[strings.IndexByte(relayed, ' ')+1:]
		}
		if len(relayed)+2 > 512 {
			t.Errorf("relayed line is %d bytes: %s", len(relayed)+2, relayed)
		}
		if len(l.Msg.Params[1]) > DefaultMaxLineBytes {
			t.Errorf("text is %d bytes", len(l.Msg.Params[1]))
		}
		pieces = append(pieces, l.Msg.Params[1])
	}
	if len(pieces) < 5 {
		t.Errorf("%d pieces for %d bytes", len(pieces), len(long))
	}
	if got, want := strings.ReplaceAll(strings.Join(pieces, ""), " ", ""), strings.ReplaceAll(long, " ", ""); got != want {
		t.Errorf("split lost or reordered text:\n got %q\nwant %q", got, want)
	}

	// The server refuses: the bot is not in #elsewhere (+n), nobody is "nobody".
	if err := bot.Say(ctx, "#elsewhere", "hello"); !errors.Is(err, ErrNotConfirmed) {
		t.Errorf("Say to a channel the bot is not in: %v, want ErrNotConfirmed", err)
	}
	if err := bot.Say(ctx, "nobody", "hello"); !errors.Is(err, ErrNotConfirmed) {
		t.Errorf("Say to a missing nick: %v, want ErrNotConfirmed", err)
	}
	if err := bot.Say(ctx, "#ops", "still fine"); err != nil {
		t.Errorf("Say after refusals: %v", err)
	}
}

// Fifty replies in a burst arrive complete and in order under a connect
// class that kills flooders — and the same burst without the pacer gets
// the bot killed, so this test can fail.
//
// The class is sped up twice from the default (a penalty threshold of 10
// commands draining at 2 a second, not 1) and the bot is told so
// (irc.flood), so 50 lines take about 24 s rather than 53. Not faster: the
// ircd drains the penalty once per pass and skips the seconds it was
// stalled, each skipped second costing speedup commands of the pacer's
// reserve, so the faster the rates, the shorter a stall of a loaded
// machine the paced bot survives.
func TestIRCFloodBurst(t *testing.T) {
	t.Parallel()
	const speedup = 2
	class := ircnet.LiberaLike()
	class.CommandRate *= speedup
	n := ircnet.Start(t, ircnet.Options{Flood: class})
	// Generous: registering, connecting and the paced burst on a loaded
	// machine; only a failure waits this long.
	ctx := testCtx(t, 150*time.Second)
	if err := n.RegisterAll(ctx, ircnet.Account{Name: "poolbot", Password: "poolbot-secret-pw"},
		ircnet.Account{Name: "floodbot", Password: "floodbot-secret-pw"}); err != nil {
		t.Fatal(err)
	}
	const lines = 50
	burst := func(ctx context.Context, m chat.Message, r chat.Replier) {
		if m.Text != "!burst" {
			return
		}
		for k := range lines {
			if err := r.Reply(ctx, fmt.Sprintf("line %02d of %d", k, lines)); err != nil {
				return
			}
		}
	}
	paced := botConfig(n, "poolbot")
	paced.Flood = chat.FloodClass{Threshold: class.Threshold, CommandRate: class.CommandRate}
	h := newRecorder()
	h.then = burst
	bot, _ := startBot(t, paced, h)

	unpaced := botConfig(n, "floodbot")
	unpaced.Rate, unpaced.Burst = 1e6, 1000 // no pacing at all
	unpaced.ReconnectMin, unpaced.ReconnectMax = time.Minute, time.Minute
	hf := newRecorder()
	hf.then = burst
	flooder, _ := startBot(t, unpaced, hf)

	watcher := dial(t, ctx, n, ircnet.ClientOptions{Nick: "watcher"})[0]
	if err := watcher.Join(ctx, "#ops"); err != nil {
		t.Fatal(err)
	}
	waitJoined(t, ctx, bot, "#ops")
	waitJoined(t, ctx, flooder, "#ops")
	t0 := time.Now()
	if err := watcher.Privmsg("#ops", "!burst"); err != nil {
		t.Fatal(err)
	}

	// Without the pacer: killed for flooding.
	q, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool { return l.Msg.Command == "QUIT" && l.Msg.Nick() == "floodbot" })
	if err != nil {
		t.Fatalf("the unpaced bot was not killed: %v", err)
	}
	if !strings.Contains(q.Raw, "Excess Flood") {
		t.Errorf("unpaced bot quit with %s", q.Raw)
	}
	t.Logf("unpaced: %s after %v", q.Raw, time.Since(t0).Round(time.Millisecond))

	// With the pacer: every line, in order, and still connected.
	last := fmt.Sprintf("watcher: line %02d of %d", lines-1, lines)
	end, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool {
		return l.Msg.Nick() == "poolbot" && (l.Msg.Command == "QUIT" || len(l.Msg.Params) == 2 && l.Msg.Params[1] == last)
	})
	if err != nil {
		t.Fatal(err)
	}
	if end.Msg.Command == "QUIT" {
		t.Fatalf("the paced bot was disconnected: %s", end.Raw)
	}
	t.Logf("paced: %d lines in %v", lines, time.Since(t0).Round(time.Millisecond))
	var got []string
	for _, l := range linesFromBot(watcher, "poolbot") {
		switch l.Msg.Command {
		case "PRIVMSG":
			got = append(got, l.Msg.Params[1])
		case "QUIT":
			t.Fatalf("the paced bot quit: %s", l.Raw)
		}
	}
	if len(got) != lines {
		t.Fatalf("got %d lines, want %d", len(got), lines)
	}
	for k, text := range got {
		if want := fmt.Sprintf("watcher: line %02d of %d", k, lines); text != want {
			t.Fatalf("line %d is %q, want %q", k, text, want)
		}
	}
	if !bot.Connected() {
		t.Fatal("the paced bot is not connected")
	}
}

// The first connection is retried until the network is up (ircevent alone
// would wait forever), Say fails fast while the bot is down, and after the
// network restarts the bot reconnects, logs in, rejoins and delivers again.
func TestIRCReconnect(t *testing.T) {
	t.Parallel()
	n := ircnet.Start(t, ircnet.Options{})
	// Two restarts of ircd and services (each may take up to its 30 s
	// start timeout on a loaded machine) and the reconnects after them.
	ctx := testCtx(t, 3*time.Minute)
	if err := n.Register(ctx, "poolbot", "poolbot-secret-pw"); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	bot, logs := startBot(t, botConfig(n, "poolbot"), newRecorder())
	testenv.Eventually(t, 30*time.Second, "a failed first connect", func() bool { return strings.Contains(logs.String(), "connect failed; retrying") })
	if err := bot.Say(ctx, "#ops", "while down"); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Say while down: %v, want ErrNotConnected", err)
	}

	for round := 1; round <= 2; round++ {
		if err := n.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		watcher := dial(t, ctx, n, ircnet.ClientOptions{Nick: fmt.Sprintf("watcher%d", round)})[0]
		if err := watcher.Join(ctx, "#ops"); err != nil {
			t.Fatal(err)
		}
		waitJoined(t, ctx, bot, "#ops")
		text := fmt.Sprintf("back, round %d", round)
		if err := bot.Say(ctx, "#ops", text); err != nil {
			t.Fatalf("Say after restart: %v", err)
		}
		if _, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool { return l.Msg.Command == "PRIVMSG" && l.Msg.Params[1] == text }); err != nil {
			t.Fatal(err)
		}
		// Down again: Say reports it instead of pretending.
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, "the bot to notice the disconnect", func() bool { return !bot.Connected() })
		if err := bot.Say(ctx, "#ops", "while down"); !errors.Is(err, ErrNotConnected) {
			t.Fatalf("Say while down: %v, want ErrNotConnected", err)
		}
	}
}

// Someone sits on the bot's nick: the bot registers under another, asks
// NickServ (it is logged in by SASL) to regain its nick, and works on.
func TestIRCNickCollision(t *testing.T) {
	t.Parallel()
	n := ircnet.Start(t, ircnet.Options{})
	ctx := testCtx(t, 45*time.Second)
	if err := n.Register(ctx, "poolbot", "poolbot-secret-pw"); err != nil {
		t.Fatal(err)
	}
	cs := dial(t, ctx, n, ircnet.ClientOptions{Nick: "poolbot"}, ircnet.ClientOptions{Nick: "watcher"})
	squatter, watcher := cs[0], cs[1]
	if err := watcher.Join(ctx, "#ops"); err != nil {
		t.Fatal(err)
	}
	bot, _ := startBot(t, botConfig(n, "poolbot"), newRecorder())
	waitJoined(t, ctx, bot, "#ops")
	testenv.Eventually(t, 30*time.Second, "the bot to regain its nick", func() bool { return bot.Nick() == "poolbot" })
	l, err := squatter.WaitFor(ctx, func(l ircnet.Line) bool {
		return (l.Msg.Command == "NICK" && l.Msg.Nick() == "poolbot") || l.Msg.Command == "ERROR"
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("squatter: %s", l.Raw)
	if err := bot.Say(ctx, "#ops", "mine again"); err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool {
		return l.Msg.Command == "PRIVMSG" && l.Msg.Nick() == "poolbot" && l.Msg.Params[1] == "mine again"
	}); err != nil {
		t.Fatal(err)
	}

	// Kicked (the watcher created #ops, so it is op): the bot rejoins.
	rejoins := func() int {
		k := 0
		for _, l := range watcher.Lines() {
			if l.Msg.Command == "JOIN" && l.Msg.Nick() == "poolbot" {
				k++
			}
		}
		return k
	}
	joinsBefore := rejoins()
	if err := watcher.Send("KICK", "#ops", "poolbot", "testing"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the bot to rejoin after a kick", func() bool { return rejoins() > joinsBefore })
	if err := bot.Say(ctx, "#ops", "back in"); err != nil {
		t.Fatal(err)
	}
}

// A slow handler neither blocks the connection (echoes, PINGs) nor makes
// the adapter buffer without bound: excess messages are dropped and logged,
// the rest arrive in order.
func TestIRCHandlerQueue(t *testing.T) {
	t.Parallel()
	n := ircnet.Start(t, ircnet.Options{})
	ctx := testCtx(t, 45*time.Second)
	if err := n.Register(ctx, "poolbot", "poolbot-secret-pw"); err != nil {
		t.Fatal(err)
	}
	cfg := botConfig(n, "poolbot")
	cfg.HandlerQueue = 2
	release := make(chan struct{})
	h := newRecorder()
	h.then = func(ctx context.Context, m chat.Message, r chat.Replier) {
		if m.Text == "block" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	}
	bot, logs := startBot(t, cfg, h)
	user := dial(t, ctx, n, ircnet.ClientOptions{Nick: "user"})[0]
	if err := user.Join(ctx, "#ops"); err != nil {
		t.Fatal(err)
	}
	waitJoined(t, ctx, bot, "#ops")
	if err := user.Privmsg("#ops", "block"); err != nil {
		t.Fatal(err)
	}
	h.next(t, ctx, "block") // the handler is now stuck
	for k := range 6 {
		if err := user.Privmsg("#ops", fmt.Sprintf("m%d", k)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "dropped messages to be logged", func() bool {
		return strings.Count(logs.String(), "handler queue full") == 4
	})
	// Say needs the read loop (for the echo): it is not blocked.
	if err := bot.Say(ctx, "#ops", "still reading"); err != nil {
		t.Fatal(err)
	}
	close(release)
	h.next(t, ctx, "m0")
	h.next(t, ctx, "m1")
	if err := user.Privmsg("#ops", "later"); err != nil {
		t.Fatal(err)
	}
	h.next(t, ctx, "later")
}

// Shutting down sends QUIT with the configured message and leaves no
// goroutine behind. (Not parallel: it counts goroutines.)
func TestIRCQuitMessage(t *testing.T) {
	n := ircnet.Start(t, ircnet.Options{})
	ctx := testCtx(t, 30*time.Second)
	if err := n.Register(ctx, "poolbot", "poolbot-secret-pw"); err != nil {
		t.Fatal(err)
	}
	watcher := dial(t, ctx, n, ircnet.ClientOptions{Nick: "watcher"})[0]
	if err := watcher.Join(ctx, "#ops"); err != nil {
		t.Fatal(err)
	}
	cfg := botConfig(n, "poolbot")
	bot := NewIRC(cfg, newRecorder(), nil)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	before := runtime.NumGoroutine()
	go func() { done <- bot.Run(runCtx) }()
	waitJoined(t, ctx, bot, "#ops")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return")
	}
	if bot.Connected() {
		t.Error("Connected after Run returned")
	}
	testenv.Eventually(t, 30*time.Second, "Run's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	l, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool { return l.Msg.Command == "QUIT" && l.Msg.Nick() == "poolbot" })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(l.Msg.Params[0], cfg.QuitMessage) {
		t.Errorf("QUIT %q, want %q", l.Raw, cfg.QuitMessage)
	}
}

func TestIRCConfigValidate(t *testing.T) {
	good := IRCConfig{Server: "irc.libera.chat:6697", TLS: true, Nick: "poolbot", SASLAccount: "poolbot",
		Password: "s3cret", Channels: []string{"#wikimedia-operations"}, SALChannel: "#wikimedia-operations"}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		key    string
		change func(*IRCConfig)
	}{
		{"server", func(c *IRCConfig) { c.Server = "" }},
		{"server", func(c *IRCConfig) { c.Server = "irc.libera.chat" }},
		{"server", func(c *IRCConfig) { c.Server = "irc.libera.chat:x" }},
		{"tls_ca_file", func(c *IRCConfig) { c.TLSCAFile = "/nonexistent.pem" }},
		{"tls_ca_file", func(c *IRCConfig) { c.TLS = false; c.TLSCAFile = "/etc/hostname" }},
		{"nick", func(c *IRCConfig) { c.Nick = "" }},
		{"nick", func(c *IRCConfig) { c.Nick = "pool bot" }},
		{"nick", func(c *IRCConfig) { c.Nick = "9lives" }},
		{"nick", func(c *IRCConfig) { c.Nick = "poolbot\r\nQUIT" }},
		{"user", func(c *IRCConfig) { c.User = "a@b" }},
		{"realname", func(c *IRCConfig) { c.RealName = "x\ny" }},
		{"sasl_account", func(c *IRCConfig) { c.Password = "" }},
		{"sasl_account", func(c *IRCConfig) { c.SASLAccount = "" }},
		{"channels", func(c *IRCConfig) { c.Channels = []string{"ops"} }},
		{"channels", func(c *IRCConfig) { c.Channels = []string{"#a,#b"} }},
		{"sal_channel", func(c *IRCConfig) { c.SALChannel = "#sal log" }},
		{"rate", func(c *IRCConfig) { c.Rate = -1 }},
		{"burst", func(c *IRCConfig) { c.Burst = -1 }},
		{"max_line_bytes", func(c *IRCConfig) { c.MaxLineBytes = 600 }},
		{"reconnect_min", func(c *IRCConfig) { c.ReconnectMin, c.ReconnectMax = time.Minute, time.Second }},
		{"connect_timeout", func(c *IRCConfig) { c.ConnectTimeout = time.Millisecond }},
		{"quit_message", func(c *IRCConfig) { c.QuitMessage = "bye\r\nJOIN #x" }},
		{"handler_queue", func(c *IRCConfig) { c.HandlerQueue = -1 }},
	} {
		c := good
		c.Channels = append([]string(nil), good.Channels...)
		tc.change(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: Validate() = %v, want an error naming %q", tc.key, err, tc.key)
		}
	}
	// The password never shows in a printed or logged config.
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "irc", good)
	for _, s := range []string{good.String(), fmt.Sprintf("%v %+v %#v %s", good, good, good, good), logged.String()} {
		if strings.Contains(s, "s3cret") || !strings.Contains(s, "redacted") {
			t.Errorf("password not redacted: %s", s)
		}
	}
}

func TestIRCBudget(t *testing.T) {
	i := NewIRC(IRCConfig{Server: "x:1", Nick: "poolbot"}, newRecorder(), nil)
	// ":poolbot!~poolbot@<63-byte host> PRIVMSG #wikimedia-operations :" + text + CRLF <= 512
	got := 512 - 2 - (1 + 7 + 1 + 1 + 7 + 1 + 63 + 1) - len("PRIVMSG #wikimedia-operations :")
	if got != 397 {
		t.Fatalf("arithmetic: %d", got)
	}
	if b := i.budgetFor("poolbot", "PRIVMSG", "#wikimedia-operations"); b != 397 {
		t.Errorf("budget %d, want 397", b)
	}
	if b := i.budgetFor("poolbot", "PRIVMSG", "#x"); b != DefaultMaxLineBytes {
		t.Errorf("budget %d, want max_line_bytes %d", b, DefaultMaxLineBytes)
	}
}

// namesHas reports whether a NAMES reply lists nick, whatever its channel
// prefix: whoever joins an empty channel first is its operator ("@poolbot").
func namesHas(names, nick string) bool {
	for _, n := range strings.Fields(names) {
		if strings.TrimLeft(n, "@%+~&") == nick {
			return true
		}
	}
	return false
}
