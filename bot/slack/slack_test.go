package slack_test

// The Slack adapter and mirror against a local Slack (slacktest's Web API
// plus a Socket Mode socket, see internal/testenv/slacknet), with the real
// command router and a real SQLite store.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/bot/slack"
	"poolbot/chat"
	"poolbot/commands"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/slacknet"
	"poolbot/store"
)

const (
	opsChannel    = "C0OPS"
	mirrorChannel = "C0MIRROR"
	waitFor       = 10 * time.Second
)

// testLog sends logs to t.Log until the test ends.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func newTestLogger(t testing.TB) *slog.Logger {
	w := &testLog{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type slackFixture struct {
	t       testing.TB
	srv     *slacknet.Server
	adapter *slack.Adapter
	store   *store.Store
	router  *commands.Router
	clock   *clockwork.FakeClock // store and router
}

type fixtureOpts struct {
	handler     chat.Handler // default: the router
	adapterOpts []slack.Option
	beforeRun   func(*slacknet.Server)
	noWait      bool
}

func newSlackFixture(t testing.TB, o fixtureOpts) *slackFixture {
	t.Helper()
	log := newTestLogger(t)
	srv := slacknet.Start(t, slacknet.Options{Users: map[string]string{
		"U0ALICE": "Alice", "U0BOB": "bob", "U0MALLORY": "alice"}})
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC))
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "poolbot.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ops, err := commands.NewOperators([]commands.Operator{
		{Name: "alice", IRCAccounts: []string{"alice"}, SlackUserIDs: []string{"U0ALICE"}},
		{Name: "bob", IRCAccounts: []string{"bob"}, SlackUserIDs: []string{"U0BOB"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	router := commands.NewRouter(commands.Options{Prefix: "!", Nick: func() string { return "poolbot" },
		Services: map[string][]string{"apus": {"eqiad", "codfw"}}, ForceNeedsConfirm: true},
		ops, st, commands.Backends{}, clock, log.With("component", "commands"))
	h := o.handler
	if h == nil {
		h = router
	}
	f := &slackFixture{t: t, srv: srv, store: st, router: router, clock: clock}
	f.adapter = slack.New(f.config(), h, log, append([]slack.Option{slack.WithNick(func() string { return "poolbot" })}, o.adapterOpts...)...)
	if o.beforeRun != nil {
		o.beforeRun(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.adapter.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Errorf("Run did not return after its context ended")
		}
	})
	if !o.noWait {
		f.waitConnected(1)
	}
	return f
}

func (f *slackFixture) config() slack.Config {
	o := f.srv.Options()
	return slack.Config{Channels: []string{opsChannel}, MirrorChannel: mirrorChannel, APIURL: f.srv.APIURL(),
		AppToken: o.AppToken, BotToken: o.BotToken, ReconnectMin: 50 * time.Millisecond, ReconnectMax: time.Second}
}

// waitConnected waits for the n-th socket and for the adapter to have
// processed its hello.
func (f *slackFixture) waitConnected(n int) {
	f.t.Helper()
	f.srv.WaitConnections(f.t, n, waitFor)
	testenv.Eventually(f.t, waitFor, "the adapter to see hello", f.adapter.Connected)
}

var tsSeq struct {
	sync.Mutex
	n int
}

func nextTS() string {
	tsSeq.Lock()
	defer tsSeq.Unlock()
	tsSeq.n++
	return fmt.Sprintf("1790001000.%06d", tsSeq.n)
}

// say sends a channel message from user and returns its envelope ID and ts.
func (f *slackFixture) say(user, channel, text string) (envelopeID, ts string) {
	f.t.Helper()
	ts = nextTS()
	envelopeID = "env-" + ts
	f.srv.Send(f.t, slacknet.MessageEvent{EnvelopeID: envelopeID, EventID: "Ev" + ts, User: user,
		Channel: channel, Text: text, TS: ts}.JSON())
	return envelopeID, ts
}

// reply waits for the next post in the thread of ts and returns its text.
func (f *slackFixture) reply(ts string) slacknet.Post {
	f.t.Helper()
	var got slacknet.Post
	f.srv.Wait(f.t, "a reply in the thread of "+ts, waitFor, func() bool {
		for _, p := range f.srv.Posts() {
			if p.ThreadTS == ts && p.Method == "chat.postMessage" {
				got = p
				return true
			}
		}
		return false
	})
	return got
}

func (f *slackFixture) command(user, text string) string {
	f.t.Helper()
	_, ts := f.say(user, opsChannel, text)
	p := f.reply(ts)
	if p.Channel != opsChannel {
		f.t.Fatalf("reply to %q went to %s", text, p.Channel)
	}
	return p.Text
}

func TestSlackOperatorCommandQueuesRequest(t *testing.T) {
	f := newSlackFixture(t, fixtureOpts{})
	env, ts := f.say("U0ALICE", opsChannel, "!depool apus codfw T422166 registry &lt;maint&gt; &amp; more")
	p := f.reply(ts)
	if !strings.Contains(p.Text, "#1 queued: depool apus in codfw") {
		t.Fatalf("reply %q", p.Text)
	}
	f.srv.WaitAck(t, env, waitFor)
	r, err := f.store.Request(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	want := poolbot.Origin{Network: "slack", Account: "U0ALICE", Nick: "Alice", Channel: opsChannel}
	if r.Operator != "alice" || r.Origin != want || r.Action != poolbot.ActionDepool || r.Datacenter != "codfw" {
		t.Fatalf("stored request %+v", r)
	}
	// The reason arrived as plain text (&amp; unescaped once).
	if !strings.Contains(r.Reason, "T422166 registry <maint> & more") {
		t.Fatalf("reason %q", r.Reason)
	}
	if bad := f.srv.BadTokens(); len(bad) > 0 {
		t.Fatalf("wrong tokens used: %v", bad)
	}
}

func TestSlackUnmappedUserRefusedButMayRead(t *testing.T) {
	f := newSlackFixture(t, fixtureOpts{})
	// U0MALLORY's display name is "alice": names never identify anyone.
	got := f.command("U0MALLORY", "!depool apus codfw T1 mine now")
	if !strings.Contains(got, `refused: slack account "U0MALLORY" is not a poolbot operator`) {
		t.Fatalf("refusal: %q", got)
	}
	if open, err := f.store.Unfinished(context.Background(), "apus"); err != nil || len(open) != 0 {
		t.Fatalf("refused command stored something: %v %v", open, err)
	}
	if got := f.command("U0MALLORY", "!status"); !strings.Contains(got, "no active or queued requests") {
		t.Fatalf("read-only !status: %q", got)
	}
}

func TestSlackMentionIsAddressed(t *testing.T) {
	f := newSlackFixture(t, fixtureOpts{})
	// A mention arrives twice, as app_mention and as message, with the
	// same channel and ts: one answer.
	ts := nextTS()
	for i, typ := range []string{"app_mention", "message"} {
		f.srv.Send(t, slacknet.MessageEvent{EnvelopeID: fmt.Sprintf("m%d", i), EventID: fmt.Sprintf("EvM%d", i), Type: typ,
			User: "U0BOB", Channel: opsChannel, Text: "<@U0POOLBOT> status", TS: ts}.JSON())
	}
	if p := f.reply(ts); !strings.Contains(p.Text, "no active or queued requests") {
		t.Fatalf("mention reply %q", p.Text)
	}
	// Addressed, so an unknown command earns an answer (with "!" it would not).
	if got := f.command("U0BOB", "<@U0POOLBOT|poolbot> frobnicate"); !strings.Contains(got, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command reply %q", got)
	}
	f.srv.WaitAck(t, "m1", waitFor)
	n := 0
	for _, p := range f.srv.Posts() {
		if p.ThreadTS == ts {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the doubly delivered mention got %d replies", n)
	}
}

func TestSlackSlashCommandAckedAndAnswered(t *testing.T) {
	f := newSlackFixture(t, fixtureOpts{})
	sent := f.srv.Send(t, slacknet.SlashCommand{EnvelopeID: "s1", Text: "status", UserID: "U0BOB", UserName: "bob",
		ChannelID: opsChannel}.JSON())
	ack := f.srv.WaitAck(t, "s1", 3*time.Second)
	if lat := ack.At.Sub(sent); lat >= 3*time.Second {
		t.Fatalf("slash command acked after %v (Slack's deadline is 3s)", lat)
	} else {
		t.Logf("slash command ack latency %v", lat)
	}
	if len(ack.Payload) != 0 {
		t.Fatalf("a served slash command is acked without a payload, got %s", ack.Payload)
	}
	posts := f.srv.WaitPosts(t, 1, waitFor)
	p := posts[0]
	if p.Channel != opsChannel || p.ThreadTS != "" || !strings.HasPrefix(p.Text, "<@U0BOB> ran `/poolbot status`\n") ||
		!strings.Contains(p.Text, "no active or queued requests") {
		t.Fatalf("slash reply %+v", p)
	}

	// The same command from a channel poolbot does not serve: answered in
	// the acknowledgement, seen only by the user; nothing posted.
	f.srv.Send(t, slacknet.SlashCommand{EnvelopeID: "s2", Text: "depool apus codfw x", UserID: "U0ALICE",
		ChannelID: "C0RANDOM"}.JSON())
	var eph struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
	}
	ack = f.srv.WaitAck(t, "s2", 3*time.Second)
	if err := json.Unmarshal(ack.Payload, &eph); err != nil {
		t.Fatalf("ack payload %s: %v", ack.Payload, err)
	}
	if eph.ResponseType != "ephemeral" || !strings.Contains(eph.Text, "<#C0OPS>") {
		t.Fatalf("ack for a foreign channel: %s", ack.Payload)
	}
	// Empty text: usage, ephemeral.
	f.srv.Send(t, slacknet.SlashCommand{EnvelopeID: "s3", UserID: "U0ALICE", ChannelID: opsChannel}.JSON())
	if ack := f.srv.WaitAck(t, "s3", 3*time.Second); !strings.Contains(string(ack.Payload), "usage: /poolbot") {
		t.Fatalf("empty slash command ack %s", ack.Payload)
	}
	// Not a command (the router ignores it): still answered.
	f.srv.Send(t, slacknet.SlashCommand{EnvelopeID: "s5", Text: "!status", UserID: "U0BOB", ChannelID: opsChannel}.JSON())
	f.srv.Wait(t, "the answer to /poolbot !status", waitFor, func() bool {
		return slices.ContainsFunc(f.srv.Posts(), func(p slacknet.Post) bool {
			return strings.HasPrefix(p.Text, "<@U0BOB> ran `/poolbot !status`\nthat is not a poolbot command; try /poolbot help")
		})
	})
	// A state change by slash command: stored, answered in the channel.
	f.srv.Send(t, slacknet.SlashCommand{EnvelopeID: "s4", Text: "pool apus eqiad T2 back", UserID: "U0ALICE",
		ChannelID: opsChannel}.JSON())
	f.srv.Wait(t, "the pool reply", waitFor, func() bool {
		return slices.ContainsFunc(f.srv.Posts(), func(p slacknet.Post) bool { return strings.Contains(p.Text, "#1 queued: pool apus in eqiad") })
	})
	if len(f.srv.Posts()) != 3 {
		t.Fatalf("posts %+v", f.srv.Posts())
	}
}

// blockingHandler records messages and holds each until released.
type blockingHandler struct {
	release chan struct{}
	mu      sync.Mutex
	got     []chat.Message
}

func (h *blockingHandler) HandleMessage(_ context.Context, m chat.Message, _ chat.Replier) {
	if h.release != nil {
		<-h.release
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, m)
}

func (h *blockingHandler) texts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, m := range h.got {
		out = append(out, m.Text)
	}
	return out
}

func TestSlackAcksDoNotWaitForCommands(t *testing.T) {
	h := &blockingHandler{release: make(chan struct{})}
	f := newSlackFixture(t, fixtureOpts{handler: h})
	var envs []string
	var sent []time.Time
	for i := range 5 {
		ts := nextTS()
		env := fmt.Sprintf("busy-%d", i)
		sent = append(sent, f.srv.Send(t, slacknet.MessageEvent{EnvelopeID: env, EventID: "EvB" + ts, User: "U0BOB",
			Channel: opsChannel, Text: fmt.Sprintf("!status %d", i), TS: ts}.JSON()))
		envs = append(envs, env)
	}
	for i, env := range envs {
		ack := f.srv.WaitAck(t, env, 3*time.Second) // the first command is still being "handled"
		t.Logf("ack %s after %v while the handler was blocked", env, ack.At.Sub(sent[i]))
	}
	close(h.release)
	f.srv.Wait(t, "5 handled commands", waitFor, func() bool { return len(h.texts()) == 5 })
	want := []string{"!status 0", "!status 1", "!status 2", "!status 3", "!status 4"}
	if got := h.texts(); !slices.Equal(got, want) {
		t.Fatalf("handled %q, want %q in order", got, want)
	}
}

func TestSlackRetriedEnvelopeHandledOnce(t *testing.T) {
	h := &blockingHandler{}
	f := newSlackFixture(t, fixtureOpts{handler: h})
	ts := nextTS()
	ev := slacknet.MessageEvent{EnvelopeID: "r1", EventID: "EvRetry", User: "U0ALICE", Channel: opsChannel,
		Text: "!depool apus codfw T1 once", TS: ts}
	f.srv.Send(t, ev.JSON())
	ev.EnvelopeID, ev.RetryAttempt, ev.RetryReason = "r2", 1, "timeout" // Slack's retry: new envelope, same event
	f.srv.Send(t, ev.JSON())
	ev.EnvelopeID = "r1" // and the same envelope twice
	f.srv.Send(t, ev.JSON())
	f.say("U0ALICE", opsChannel, "!status barrier")
	f.srv.Wait(t, "the barrier", waitFor, func() bool { return slices.Contains(h.texts(), "!status barrier") })
	if got := h.texts(); !slices.Equal(got, []string{"!depool apus codfw T1 once", "!status barrier"}) {
		t.Fatalf("handled %q", got)
	}
	// The acks travel back over the socket on their own: the barrier
	// being handled does not mean the server has read them yet.
	acks := func() int {
		n := 0
		for _, a := range f.srv.Acks() {
			if a.EnvelopeID == "r1" || a.EnvelopeID == "r2" {
				n++
			}
		}
		return n
	}
	f.srv.Wait(t, "every delivery acked (3)", waitFor, func() bool { return acks() >= 3 })
	if n := acks(); n != 3 {
		t.Fatalf("every delivery must be acked once (3), got %d", n)
	}
}

func TestSlackIgnoresBotsEditsAndOtherChannels(t *testing.T) {
	h := &blockingHandler{}
	f := newSlackFixture(t, fixtureOpts{handler: h})
	for i, ev := range []slacknet.MessageEvent{
		{Subtype: "bot_message", BotID: "B0OTHER", Text: "!depool apus codfw by a bot"},
		{User: "U0ALICE", BotID: "B0APP", Text: "!depool apus codfw by an app as alice"},
		{User: "U0POOLBOT", Text: "!depool apus codfw by poolbot itself"},
		{User: "U0ALICE", Subtype: "message_changed", Text: "!depool apus codfw edited"},
		{User: "U0ALICE", Channel: "C0RANDOM", Text: "!depool apus codfw elsewhere"},
		{User: "U0ALICE", Text: "!depool apus codfw <@U0MALLORY|mallory>", Channel: "C0OPS", Subtype: "channel_join"},
	} {
		if ev.Channel == "" {
			ev.Channel = opsChannel
		}
		ev.TS = nextTS()
		ev.EnvelopeID, ev.EventID = fmt.Sprintf("ign%d", i), fmt.Sprintf("EvIgn%d", i)
		f.srv.Send(t, ev.JSON())
	}
	// A direct message is read (bare command, private), answered in the DM.
	ts := nextTS()
	f.srv.Send(t, slacknet.MessageEvent{EnvelopeID: "dm", EventID: "EvDM", User: "U0ALICE", Channel: "D0ALICE",
		Text: "status", TS: ts}.JSON())
	f.srv.Wait(t, "the DM", waitFor, func() bool { return len(h.texts()) >= 1 })
	h.mu.Lock()
	got := slices.Clone(h.got)
	h.mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("handled %+v", got)
	}
	m := got[0]
	if !m.Private() || m.Network != "slack" || m.Account != "U0ALICE" || !m.AccountKnown || m.Nick != "Alice" || m.Text != "status" {
		t.Fatalf("DM message %+v", m)
	}
	for i := range 6 {
		f.srv.WaitAck(t, fmt.Sprintf("ign%d", i), waitFor)
	}
}

func TestSlackUndecodableBlockStillHandled(t *testing.T) {
	// slack-go's event decoding rejects a whole event over one malformed
	// block; the adapter acks it and decodes the fields it needs itself.
	f := newSlackFixture(t, fixtureOpts{})
	ts := nextTS()
	f.srv.Send(t, slacknet.MessageEvent{EnvelopeID: "bad1", EventID: "EvBad", User: "U0BOB", Channel: opsChannel,
		Text: "!status", TS: ts, RawBlocks: `[{"type":"rich_text","elements":"not a list"}]`}.JSON())
	f.srv.WaitAck(t, "bad1", 3*time.Second)
	if p := f.reply(ts); !strings.Contains(p.Text, "no active or queued requests") {
		t.Fatalf("reply %q", p.Text)
	}
}

func TestSlackReconnectsAfterServerDropsSocket(t *testing.T) {
	f := newSlackFixture(t, fixtureOpts{})
	if got := f.command("U0BOB", "!status"); !strings.Contains(got, "no active") {
		t.Fatalf("before: %q", got)
	}
	f.srv.Drop() // no close frame: as a network failure would
	f.waitConnected(2)
	if got := f.command("U0ALICE", "!depool apus codfw T3 after the drop"); !strings.Contains(got, "#1 queued") {
		t.Fatalf("after the drop: %q", got)
	}
	f.srv.Disconnect(t) // Slack asks the app to reconnect
	f.waitConnected(3)
	if got := f.command("U0BOB", "!status 1"); !strings.Contains(got, "#1") {
		t.Fatalf("after disconnect: %q", got)
	}
	if n := f.srv.ConnectionsOpened(); n != 3 {
		t.Fatalf("apps.connections.open called %d times, want 3", n)
	}
}

func TestSlackRetriesWhenTheLibraryGivesUp(t *testing.T) {
	// invalid_auth from apps.connections.open makes slack-go's RunContext
	// return; the adapter backs off (on its clock) and tries again.
	clock := clockwork.NewFakeClock()
	f := newSlackFixture(t, fixtureOpts{noWait: true, adapterOpts: []slack.Option{slack.WithClock(clock)},
		beforeRun: func(s *slacknet.Server) { s.FailConnectionsOpen(2, "invalid_auth") }})
	for attempt := 1; attempt <= 2; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatalf("attempt %d: adapter is not waiting to retry: %v", attempt, err)
		}
		cancel()
		if n := f.srv.ConnectionsOpened(); n != attempt {
			t.Fatalf("attempt %d: apps.connections.open called %d times", attempt, n)
		}
		clock.Advance(time.Second) // reconnect_max: covers any jittered backoff
	}
	f.waitConnected(1)
	if got := f.command("U0BOB", "!status"); !strings.Contains(got, "no active") {
		t.Fatalf("after retries: %q", got)
	}
}

func TestSlackSameOperatorOnIRCAndSlackIsOnePerson(t *testing.T) {
	f := newSlackFixture(t, fixtureOpts{})
	f.command("U0ALICE", "!depool apus codfw T4 maint")
	if got := f.command("U0ALICE", "!force 1 registry broken"); !strings.Contains(got, "needs !confirm 1 from another operator") {
		t.Fatalf("force: %q", got)
	}
	// alice on IRC is alice.
	var irc ircReplies
	f.router.HandleMessage(context.Background(), chat.Message{Network: "irc", Channel: "#wikimedia-operations",
		Nick: "alice", Account: "alice", AccountKnown: true, Text: "!confirm 1"}, &irc)
	if got := irc.take(); len(got) != 1 || !strings.Contains(got[0], "different operator") {
		t.Fatalf("alice on IRC confirming her own force: %q", got)
	}
	if got := f.command("U0BOB", "!confirm 1"); !strings.Contains(got, "FORCE confirmed by bob") {
		t.Fatalf("bob on Slack: %q", got)
	}
	r, _ := f.store.Request(context.Background(), 1)
	if r.ForcedBy != "alice" || r.ConfirmedBy != "bob" {
		t.Fatalf("request %+v", r)
	}
}

type ircReplies struct {
	mu    sync.Mutex
	lines []string
}

func (r *ircReplies) Reply(_ context.Context, text string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, text)
	return nil
}

func (r *ircReplies) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.lines
	r.lines = nil
	return l
}

// --- the mirror ---

func startMirror(t *testing.T, cfg func(*slack.Config)) (*slacknet.Server, *slack.Mirror, func()) {
	t.Helper()
	srv := slacknet.Start(t, slacknet.Options{})
	o := srv.Options()
	c := slack.Config{MirrorChannel: mirrorChannel, APIURL: srv.APIURL(), AppToken: o.AppToken, BotToken: o.BotToken}
	if cfg != nil {
		cfg(&c)
	}
	log := newTestLogger(t)
	m := slack.NewMirror(slack.NewClient(c, log), c, log,
		slack.WithMirrorClock(clockwork.NewFakeClockAt(time.Date(2026, 11, 22, 14, 3, 22, 0, time.UTC))))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := func() {
		go func() {
			defer close(done)
			_ = m.Run(ctx)
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	t.Cleanup(cancel)
	return srv, m, start
}

// salLine hands m a SAL line as the SAL sender does once it is delivered.
func salLine(ctx context.Context, m *slack.Mirror, n poolbot.Notice) { m.SAL(ctx, n, n.SALLine()) }

func TestSlackMirrorEscapesUserText(t *testing.T) {
	srv, m, start := startMirror(t, nil)
	start()
	ctx := context.Background()
	m.Announce(ctx, poolbot.Notice{Text: "registry check failed on registry2003 <!channel> & see <https://evil.example|T1>"})
	posts := srv.WaitPosts(t, 1, waitFor)
	want := "registry check failed on registry2003 &lt;!channel&gt; &amp; see &lt;https://evil.example|T1&gt;"
	if posts[0].Text != want || posts[0].Channel != mirrorChannel {
		t.Fatalf("mirrored %+v, want text %q", posts[0], want)
	}
	// The same in a request's status message (text and blocks).
	salLine(ctx, m, poolbot.Notice{Request: 5, Operator: "alice", Kind: poolbot.NoticeStarted, State: poolbot.StateSwitching,
		Title: "depool apus in codfw: T1 <!channel> <@U0X>", Text: "START - depool apus in codfw: T1 <!channel> <@U0X>"})
	posts = srv.WaitPosts(t, 2, waitFor)
	p := posts[1]
	for _, s := range []string{p.Text, p.Blocks} {
		if strings.Contains(s, "<!channel>") || strings.Contains(s, "<@U0X>") {
			t.Fatalf("unescaped control sequence mirrored: %s", s)
		}
	}
	if !strings.Contains(p.Blocks, `T1 \u0026lt;!channel\u0026gt; \u0026lt;@U0X\u0026gt;`) {
		t.Fatalf("blocks %s", p.Blocks)
	}
}

func TestSlackMirrorUpdatesOneMessagePerRequest(t *testing.T) {
	srv, m, start := startMirror(t, nil)
	start()
	ctx := context.Background()
	about7 := func(kind poolbot.NoticeKind, state poolbot.State, text string) poolbot.Notice {
		return poolbot.Notice{Request: 7, Operator: "alice", Kind: kind, State: state, Text: text}
	}
	host := func(n int) poolbot.Notice {
		h := about7(poolbot.NoticeHost, poolbot.StateRestarting, fmt.Sprintf(
			"restarted docker-registry-restricted.service docker-registry-ml.service on registry200%d.codfw.wmnet (%d/3): healthy", n+2, n))
		h.Host, h.Hosts = n, 3
		return h
	}
	startLine := about7(poolbot.NoticeStarted, poolbot.StateSwitching, "START - depool apus in codfw: T422166 maint")
	startLine.Title = "depool apus in codfw: T422166 maint"
	lines := []poolbot.Notice{
		startLine,
		about7(poolbot.NoticeStarted, poolbot.StateSwitching, "deploy block taken (scap locked for all deployments)"),
		about7(poolbot.NoticeSwitched, poolbot.StateRestarting, "conftool: set apus/codfw pooled=false (was true)"),
		host(1), host(2), host(3),
		about7(poolbot.NoticeInfo, "", "deploy block released"),
		about7(poolbot.NoticeEnded, poolbot.StateDone, "END (PASS) - depool apus in codfw: 3/3 hosts restarted (duration: 7m12s)"),
	}
	eight := func(text string) poolbot.Notice {
		return poolbot.Notice{Request: 8, Operator: "bob", Kind: poolbot.NoticeWaiting, State: poolbot.StateWaiting, Text: text}
	}
	m.Announce(ctx, eight("#8 pool apus in eqiad (bob) waiting: deployment window UTC late ends 15:00"))
	for i, l := range lines {
		salLine(ctx, m, l)
		if i == 3 {
			m.Announce(ctx, eight("#8 pool apus in eqiad (bob) waiting: one operation at a time: #7 is running"))
			m.Announce(ctx, poolbot.Notice{Text: "apus pooled state changed outside poolbot"})
		}
	}
	posts := srv.WaitPosts(t, len(lines)+3, waitFor)
	var seven []slacknet.Post
	for _, p := range posts {
		if strings.Contains(p.Text, "poolbot #7") {
			seven = append(seven, p)
		}
	}
	if len(seven) != len(lines) {
		t.Fatalf("%d posts about #7 for %d lines: %+v", len(seven), len(lines), seven)
	}
	if seven[0].Method != "chat.postMessage" {
		t.Fatalf("first #7 post is %s", seven[0].Method)
	}
	for _, p := range seven[1:] {
		if p.Method != "chat.update" || p.TS != seven[0].TS {
			t.Fatalf("later #7 lines must update message %s in place, got %s of %s", seven[0].TS, p.Method, p.TS)
		}
	}
	last := seven[len(seven)-1]
	for _, want := range []string{":white_check_mark: *done*", "hosts 3/3", "by alice", "END (PASS)"} {
		if !strings.Contains(last.Blocks, want) {
			t.Errorf("final status blocks %s: missing %q", last.Blocks, want)
		}
	}
	counts := map[string]int{}
	for _, p := range posts {
		counts[p.Method]++
	}
	// #7: 1 post + 7 updates; #8: 1 post + 1 update; the plain notice: 1 post.
	if counts["chat.postMessage"] != 3 || counts["chat.update"] != len(lines)-1+1 {
		t.Fatalf("calls %v", counts)
	}
	t.Logf("%d lines about #7 → 1 chat.postMessage + %d chat.update", len(lines), len(seven)-1)
}

func TestSlackMirrorThreadAndAddressedNotices(t *testing.T) {
	srv, m, start := startMirror(t, func(c *slack.Config) { c.MirrorThread = true })
	start()
	ctx := context.Background()
	salLine(ctx, m, poolbot.Notice{Request: 9, Operator: "alice", Kind: poolbot.NoticeStarted, State: poolbot.StateRestarting,
		Title: "restart apus: T5", Text: "START - restart apus: T5"})
	m.Announce(ctx, poolbot.Notice{Request: 9, Operator: "alice", To: "alice", Kind: poolbot.NoticeEnded, State: poolbot.StateFailed,
		Text: "#9 restart apus FAILED: registry2003 unhealthy; done: none; not touched: registry2004"})
	posts := srv.WaitPosts(t, 4, waitFor)
	status := posts[0]
	if status.Method != "chat.postMessage" || status.ThreadTS != "" {
		t.Fatalf("status %+v", status)
	}
	if p := posts[1]; p.ThreadTS != status.TS || p.Text != "poolbot #9 alice: START - restart apus: T5" || p.Broadcast {
		t.Fatalf("thread reply %+v", p)
	}
	if p := posts[2]; p.Method != "chat.update" || !strings.Contains(p.Blocks, ":x: *failed*") {
		t.Fatalf("update %+v", p)
	}
	if p := posts[3]; p.ThreadTS != status.TS || !p.Broadcast || !strings.HasPrefix(p.Text, "alice: #9") {
		t.Fatalf("addressed notice must be a broadcast thread reply: %+v", p)
	}
}

func TestSlackMirrorNeverBlocks(t *testing.T) {
	srv, m, start := startMirror(t, func(c *slack.Config) { c.MirrorQueue = 2 })
	begin := time.Now()
	for i := range 5 {
		m.Announce(context.Background(), poolbot.Notice{Text: fmt.Sprintf("notice %d", i)})
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("Announce blocked for %v", d)
	}
	if got := m.Dropped(); got != 3 {
		t.Fatalf("dropped %d, want 3", got)
	}
	start()
	posts := srv.WaitPosts(t, 2, waitFor)
	if posts[0].Text != "notice 0" || posts[1].Text != "notice 1" {
		t.Fatalf("posts %+v", posts)
	}
}

// BenchmarkSlackAck measures the time from Slack writing an envelope on
// the socket to the adapter's acknowledgement arriving back (loopback),
// with the real router handling each command behind it.
func BenchmarkSlackAck(b *testing.B) {
	f := newSlackFixture(b, fixtureOpts{})
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		ts := fmt.Sprintf("1790002000.%06d", i)
		env := "bench-" + ts
		sent := f.srv.Send(b, slacknet.MessageEvent{EnvelopeID: env, EventID: "EvBench" + ts, User: "U0BOB",
			Channel: opsChannel, Text: "!status", TS: ts}.JSON())
		n := i
		f.srv.Wait(b, "ack", waitFor, func() bool { return f.srv.AckCount() >= n })
		acks := f.srv.Acks()
		lat = append(lat, acks[len(acks)-1].At.Sub(sent))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
