package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"poolbot"
	"poolbot/bot"
	"poolbot/chat"
	"poolbot/commands"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/ircnet"
	"poolbot/sal"
	"poolbot/store"
)

const channel = "#wikimedia-operations"

// world is poolbot wired as `poolbot run` wires it, minus the procedure:
// IRC adapter → command router → SQLite store, and the SAL sender back
// through the adapter.
type world struct {
	net    *ircnet.Net
	store  *store.Store
	irc    *bot.IRC
	sender *sal.Sender
	sink   *gatedSink
	cancel context.CancelFunc
	done   chan struct{}
}

func startWorld(t testing.TB) *world { return startWorldOn(t, false, ircnet.Options{}) }

// startWorldPaced with fast set connects the bot to the relaxed port with
// a fast pacer: for measuring latency rather than flood protection.
func startWorldPaced(t testing.TB, fast bool) *world { return startWorldOn(t, fast, ircnet.Options{}) }

// startWorldOn is startWorldPaced on a network started with opts.
func startWorldOn(t testing.TB, fast bool, opts ircnet.Options) *world {
	t.Helper()
	return startWorldWith(t, worldOptions{fast: fast, net: opts})
}

// worldOptions are the ways a world can differ.
type worldOptions struct {
	fast bool           // the relaxed port and a fast pacer
	net  ircnet.Options // the network's options
	// limiter limits each identity's commands (nil: no limit).
	limiter *chat.CommandLimiter
	// rate and burst, when set, replace the pacing derived from the
	// flood class (to measure the old fixed pacing).
	rate  float64
	burst int
}

// startWorldWith starts a world as o says.
func startWorldWith(t testing.TB, o worldOptions) *world {
	t.Helper()
	fast, opts := o.fast, o.net
	ctx := context.Background()
	n := ircnet.Start(t, opts)
	if err := n.RegisterAll(ctx, ircnet.Account{Name: "poolbot", Password: "botpw-1234"},
		ircnet.Account{Name: "alice", Password: "alicepw-1234"}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "poolbot.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ops, err := commands.NewOperators([]commands.Operator{{Name: "alice", IRCAccounts: []string{"alice"}}})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{net: n, store: st, done: make(chan struct{})}
	var router *commands.Router
	// The bot connects to the strict, Libera-like connect class: if it
	// flooded, the server would kill it.
	cfg := bot.IRCConfig{
		Server: n.FloodAddr(), Nick: "poolbot", SASLAccount: "poolbot", Password: "botpw-1234",
		Channels: []string{channel}, ReconnectMin: 200 * time.Millisecond, ReconnectMax: time.Second,
		ConnectTimeout: 10 * time.Second,
	}
	if o.rate != 0 {
		cfg.Rate, cfg.Burst = o.rate, o.burst
	}
	if fast {
		cfg.Server, cfg.Rate, cfg.Burst = n.Addr(), 1000, 100
	}
	w.irc = bot.NewIRC(cfg, chat.HandlerFunc(func(ctx context.Context, m chat.Message, r chat.Replier) { router.HandleMessage(ctx, m, r) }), nil)
	router = commands.NewRouter(commands.Options{Nick: w.irc.Nick,
		Services: map[string][]string{"apus": {"eqiad", "codfw"}}, ForceNeedsConfirm: true, Limiter: o.limiter},
		ops, st, commands.Backends{}, nil, nil)
	w.sink = &gatedSink{Sink: sal.ChannelSink{Chat: w.irc, Channel: channel}, open: true}
	w.sender = sal.NewSender(st, w.sink, nil, nil)
	w.sender.MinBackoff, w.sender.MaxBackoff, w.sender.Poll = 100*time.Millisecond, 500*time.Millisecond, 200*time.Millisecond
	runCtx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	go func() {
		defer close(w.done)
		go w.sender.Run(runCtx)
		_ = w.irc.Run(runCtx)
	}()
	t.Cleanup(w.stop)
	testenv.Eventually(t, 30*time.Second, "bot connected", w.irc.Connected)
	return w
}

// gatedSink fails while closed, as a disconnected network does, so a
// test can hold SAL delivery until its observer is in the channel.
type gatedSink struct {
	sal.Sink
	mu   sync.Mutex
	open bool
}

func (g *gatedSink) Send(ctx context.Context, m string) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	if !open {
		return errors.New("gate closed")
	}
	return g.Sink.Send(ctx, m)
}

func (g *gatedSink) set(open bool) { g.mu.Lock(); g.open = open; g.mu.Unlock() }

func (w *world) stop() {
	w.cancel()
	<-w.done
}

// user joins the channel as a client; account "" means not logged in.
func user(t testing.TB, n *ircnet.Net, nick, account, password string) *ircnet.Client {
	t.Helper()
	c, err := dialUser(n, nick, account, password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// dialUser is user without the testing.TB, for use off the test's
// goroutine (t.Fatal must not be called there): it returns the error, and
// the caller closes the client.
func dialUser(n *ircnet.Net, nick, account, password string) (*ircnet.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := n.Dial(ctx, ircnet.ClientOptions{Nick: nick, SASLAccount: account, SASLPassword: password,
		Caps: []string{"account-tag", "message-tags", "server-time"}})
	if err != nil {
		return nil, err
	}
	if err := c.Join(ctx, channel); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: join %s: %w", nick, channel, err)
	}
	return c, nil
}

// reply waits for the bot's next channel PRIVMSG that contains want.
func reply(t testing.TB, c *ircnet.Client, want string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := c.WaitFor(ctx, func(l ircnet.Line) bool {
		return l.Msg.Command == "PRIVMSG" && l.Msg.Nick() == "poolbot" && len(l.Msg.Params) == 2 &&
			strings.Contains(l.Msg.Params[1], want)
	})
	if err != nil {
		t.Fatalf("no reply containing %q: %v\nlines:\n%s", want, err, dump(c))
	}
	return l.Msg.Params[1]
}

func dump(c *ircnet.Client) string {
	var b strings.Builder
	for _, l := range c.Lines() {
		b.WriteString(l.Raw + "\n")
	}
	return b.String()
}

// An operator logged in with SASL is accepted and the request stored; once
// the operator has quit, a client that takes the operator's exact nick
// without logging in is refused and stores nothing: identity is the
// account, never the nick.
func TestOperatorByAccountNotNick(t *testing.T) {
	t.Parallel()
	w := startWorld(t)
	// Both clients in parallel: each takes about a second to register.
	// The observer stays in the channel throughout, to see the operator
	// leave.
	type dialed struct {
		c   *ircnet.Client
		err error
	}
	obsCh := make(chan dialed, 1)
	go func() {
		c, err := dialUser(w.net, "observer", "", "")
		obsCh <- dialed{c, err}
	}()
	alice := user(t, w.net, "alice_laptop", "alice", "alicepw-1234")
	od := <-obsCh
	if od.err != nil {
		t.Fatal(od.err)
	}
	obs := od.c
	t.Cleanup(obs.Close)

	if err := alice.Privmsg(channel, "!depool apus codfw T422166 \x02switchover\x02 test"); err != nil {
		t.Fatal(err)
	}
	got := reply(t, alice, "#1 queued")
	if got != "alice_laptop: #1 queued: depool apus in codfw (T422166), position 1 in the apus queue" {
		t.Fatalf("reply %q", got)
	}
	req, err := w.store.Request(context.Background(), 1)
	if err != nil || req.Operator != "alice" || req.Origin.Account != "alice" || req.Origin.Nick != "alice_laptop" ||
		req.Reason != "T422166 switchover test" {
		t.Fatalf("stored %+v, %v", req, err)
	}

	// The operator leaves; once the server has relayed the QUIT the nick
	// is free, and an impostor who is not logged in takes exactly it.
	alice.Quit()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := obs.WaitFor(ctx, func(l ircnet.Line) bool {
		return l.Msg.Command == "QUIT" && l.Msg.Nick() == "alice_laptop"
	}); err != nil {
		t.Fatalf("the operator's QUIT: %v\nlines:\n%s", err, dump(obs))
	}
	impostor := user(t, w.net, "alice_laptop", "", "")
	if impostor.Nick() != "alice_laptop" {
		t.Fatalf("impostor registered as %q", impostor.Nick())
	}
	// A state-changing command under the operator's nick: refused.
	if err := impostor.Privmsg(channel, "!cancel 1 trust me"); err != nil {
		t.Fatal(err)
	}
	if got := reply(t, impostor, "refused"); !strings.HasPrefix(got, "alice_laptop: refused") || !strings.Contains(got, "not logged in") {
		t.Fatalf("impostor reply %q", got)
	}
	if err := impostor.Privmsg(channel, "!pool apus codfw trust me"); err != nil {
		t.Fatal(err)
	}
	// The second refusal (the first was already there).
	if _, err := impostor.WaitFor(ctx, func() func(ircnet.Line) bool {
		n := 0
		return func(l ircnet.Line) bool {
			if l.Msg.Command == "PRIVMSG" && l.Msg.Nick() == "poolbot" && len(l.Msg.Params) == 2 &&
				strings.Contains(l.Msg.Params[1], "refused") && strings.Contains(l.Msg.Params[1], "not logged in") {
				n++
			}
			return n == 2
		}
	}()); err != nil {
		t.Fatalf("no refusal of !pool: %v\nlines:\n%s", err, dump(impostor))
	}
	// Nothing stored: still the one request, unchanged, and no event by
	// anyone but alice.
	reqs, _ := w.store.List(context.Background(), store.Filter{})
	if len(reqs) != 1 {
		t.Fatalf("%d requests stored, want 1", len(reqs))
	}
	after, err := w.store.Request(context.Background(), 1)
	if err != nil || after.State != req.State || after.CancelRequested || after.CancelledBy != "" {
		t.Fatalf("request #1 after the impostor: %+v, %v", after, err)
	}
	events, err := w.store.Events(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Actor != "alice" || e.Kind != "created" {
			t.Errorf("event after the impostor: %+v", e)
		}
	}
	// Read-only commands work for anyone, addressed by nick too.
	if err := impostor.Privmsg(channel, "poolbot: status"); err != nil {
		t.Fatal(err)
	}
	reply(t, impostor, "#1 depool apus in codfw by alice: queued")
}

// A reason with CR/LF cannot reach the server from IRC (the protocol ends
// the line there), but a reply echoing user text is sanitised and the
// bot's own lines never carry an injected command.
func TestRepliesCannotInject(t *testing.T) {
	t.Parallel()
	w := startWorld(t)
	alice := user(t, w.net, "alice_laptop", "alice", "alicepw-1234")
	// \x01 and colour codes are stripped from the echoed reason; the
	// literal "\r\n" text stays harmless text.
	if err := alice.Privmsg(channel, "!depool apus codfw \x0304red\x03 \x01ACTION\x01 x"); err != nil {
		t.Fatal(err)
	}
	reply(t, alice, "#1 queued")
	// The operator is told what was taken out of the reason.
	reply(t, alice, "reason: removed 2 IRC formatting codes, replaced 2 control characters by a space; stored as: red ACTION x")
	if err := alice.Privmsg(channel, "!status 1"); err != nil {
		t.Fatal(err)
	}
	got := reply(t, alice, "reason: red ACTION x")
	if !strings.HasSuffix(got, "reason: red ACTION x") || !strings.Contains(got, "#1 requested") {
		t.Fatalf("status echoes %q", got)
	}
	// A SAL line with CR/LF inside (text a handler built from user input)
	// arrives as one line.
	if err := w.store.Tx(context.Background(), func(tx *store.Tx) error {
		return tx.QueueSAL(1, "poolbot #1 alice: hello\r\nPRIVMSG #wikimedia-operations :injected\x00")
	}); err != nil {
		t.Fatal(err)
	}
	w.sender.Wake()
	reply(t, alice, "!log poolbot #1 alice: hello")
	time.Sleep(300 * time.Millisecond)
	for _, l := range alice.Lines() {
		if l.Msg.Command == "PRIVMSG" && len(l.Msg.Params) == 2 && strings.HasPrefix(l.Msg.Params[1], "injected") {
			t.Fatalf("injected line arrived: %q", l.Raw)
		}
	}
}

// SAL lines queued while the ircd is down are delivered after the bot
// reconnects and rejoins, complete and in order.
func TestSALSurvivesIRCdRestart(t *testing.T) {
	t.Parallel()
	w := startWorld(t)
	ctx := context.Background()
	if err := w.net.Stop(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "bot disconnected", func() bool { return !w.irc.Connected() })
	// Say fails while the network is down; before the restart the gate is
	// closed too, so that nothing is delivered before the observer joins.
	direct := sal.ChannelSink{Chat: w.irc, Channel: channel}
	if err := direct.Send(ctx, "probe while down"); err == nil {
		t.Fatal("Say succeeded while the ircd was down")
	}
	var want []string
	for i := 1; i <= 5; i++ {
		line := poolbot.SALLine(poolbot.RequestID(7), "alice", fmt.Sprintf("host %d/5 restarted", i))
		want = append(want, "!log "+line)
		if err := w.store.Tx(ctx, func(tx *store.Tx) error { return tx.QueueSAL(0, line) }); err != nil {
			t.Fatal(err)
		}
	}
	w.sender.Wake()
	time.Sleep(500 * time.Millisecond) // the sender tries, fails, backs off
	if n, _ := w.store.SALBacklog(ctx); n != 5 {
		t.Fatalf("backlog while down = %d, want 5", n)
	}
	w.sink.set(false)
	if err := w.net.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	obs := user(t, w.net, "observer", "", "")
	w.sink.set(true)
	w.sender.Wake()
	for _, l := range want {
		reply(t, obs, l[len("!log "):])
	}
	var got []string
	for _, l := range obs.Lines() {
		if l.Msg.Command == "PRIVMSG" && l.Msg.Nick() == "poolbot" && strings.HasPrefix(l.Msg.Params[1], "!log ") {
			got = append(got, l.Msg.Params[1])
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("SAL lines after restart:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	testenv.Eventually(t, 10*time.Second, "backlog drained", func() bool { n, _ := w.store.SALBacklog(ctx); return n == 0 })
}

// On a server that does not offer account-tag, poolbot cannot tell who
// anyone is: a logged-in operator's state-changing command is refused
// and nothing is stored; read-only commands still work.
func TestNoAccountTagFailsClosed(t *testing.T) {
	t.Parallel()
	w := startWorldOn(t, false, ircnet.Options{NoAccountTag: true})
	ctx := context.Background()
	alice, err := w.net.Dial(ctx, ircnet.ClientOptions{Nick: "alice", SASLAccount: "alice", SASLPassword: "alicepw-1234",
		Caps: []string{"message-tags", "server-time"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(alice.Close)
	if err := alice.Join(ctx, channel); err != nil {
		t.Fatal(err)
	}
	if err := alice.Privmsg(channel, "!depool apus codfw T422166 test"); err != nil {
		t.Fatal(err)
	}
	got := reply(t, alice, "refused")
	if !strings.Contains(got, "account-tag") {
		t.Fatalf("refusal %q does not say why", got)
	}
	if _, err := w.store.Request(context.Background(), 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a request was stored: %v", err)
	}
	if err := alice.Privmsg(channel, "!help depool"); err != nil {
		t.Fatal(err)
	}
	reply(t, alice, "depool")
}
