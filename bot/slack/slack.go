package slack

// The Slack adapter. poolbot talks to Slack in Socket Mode: no public HTTP
// endpoint, the app opens a WebSocket to Slack instead. What it relies on:
//
//   - Two tokens. The app-level token (xapp-…, scope connections:write)
//     calls apps.connections.open, which returns a one-off wss:// URL; the
//     bot token (xoxb-…) calls the Web API (auth.test, users.info,
//     chat.postMessage, chat.update).
//   - Over the socket Slack sends a "hello", then envelopes:
//     {"type":"events_api","envelope_id":…,"payload":{"type":"event_callback",
//     "event_id":…,"event":{"type":"message",…}},"retry_attempt":…} and
//     {"type":"slash_commands","envelope_id":…,"payload":{"command":"/poolbot",
//     "text":…,"user_id":…,"channel_id":…}}, and "disconnect" when it wants
//     the app to reconnect. Every envelope must be acknowledged by sending
//     {"envelope_id":…} back within 3 seconds, or Slack retries it with
//     retry_attempt and retry_reason set (and a new envelope).
//   - A slash command's acknowledgement may carry a response payload,
//     shown only to the user who ran it ("ephemeral").
//   - Identity is the user ID (U…/W…), stable and not user-editable; display
//     names are for show only. Bots, including poolbot itself, post with
//     bot_id set or subtype bot_message.
//   - Posting is rate limited (about one message a second per channel;
//     HTTP 429 with Retry-After); chat.update edits a message in place.
//
// The client library is github.com/slack-go/slack's socketmode. Its
// RunContext reconnects by itself after a dropped socket or a
// "disconnect" (retrying transient failures with its own backoff, up to
// 5 minutes), but returns when a reconnect fails for good (invalid or
// revoked token, apps.connections.open answering 404). Run wraps it, and
// the auth.test that precedes each session, in its own loop with
// exponential backoff (reconnect_min..reconnect_max), so the adapter never
// gives up. The library's
// envelope decoding is only used for transport: the adapter decodes the
// few event fields it needs itself, so an event carrying a block the
// library cannot decode is still acknowledged and handled.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	slackapi "github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"poolbot/chat"
)

const (
	// slackAckTimeout bounds handing an acknowledgement to the socket
	// writer; Slack's own deadline is 3 s.
	slackAckTimeout = 2 * time.Second
	// slackNameTimeout bounds a users.info lookup for a display name.
	slackNameTimeout = 3 * time.Second
	// slackNameTTL is how long a display name is cached.
	slackNameTTL = time.Hour
	// slackMaxNames bounds the display name cache.
	slackMaxNames = 1024
	// slackSeenKeys is how many envelope, event and message keys are
	// remembered to drop retries. Slack retries three times within about
	// five minutes; a few thousand keys cover that at any sane traffic.
	slackSeenKeys = 4096
	// slackMaxReplyBytes is the most text put in one posted reply; longer
	// replies are split at line breaks. Slack truncates text over 40,000
	// characters and shows long messages collapsed.
	slackMaxReplyBytes = 3500
	// slackMaxReplyLines bounds the lines one command may buffer.
	slackMaxReplyLines = 200
)

// NewClient returns a Web API client for cfg: the bot token, the
// app-level token for Socket Mode, api_url, request_timeout, and retries
// of rate-limited (429) calls after Slack's Retry-After.
func NewClient(cfg Config, logger *slog.Logger) *slackapi.Client {
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return slackapi.New(cfg.BotToken,
		slackapi.OptionAppLevelToken(cfg.AppToken),
		slackapi.OptionAPIURL(cfg.APIURL),
		slackapi.OptionHTTPClient(&http.Client{Timeout: cfg.RequestTimeout}),
		slackapi.OptionRetry(2),
		slackapi.OptionLog(log.New(slackLibLog{logger}, "", 0)))
}

// Adapter is the Slack chat adapter. Create it with New, start it with
// Run. Its methods are safe for concurrent use.
type Adapter struct {
	cfg     Config // with defaults
	handler chat.Handler
	log     *slog.Logger
	clock   clockwork.Clock
	nick    func() string
	api     *slackapi.Client
	inbox   chan slackDelivery

	running   atomic.Bool
	connected atomic.Bool
	self      atomic.Pointer[slackSelf]
	seen      *seenSet
	names     *nameCache
}

// slackSelf is who the bot is, from auth.test.
type slackSelf struct{ userID, botID string }

// Option customises New.
type Option func(*Adapter)

// WithClock sets the clock for backoff and message times (tests).
func WithClock(c clockwork.Clock) Option { return func(s *Adapter) { s.clock = c } }

// WithNick sets the function that returns the name the command layer
// answers to ("poolbot: status"); a message that starts by mentioning the
// bot is handed on as "<nick>: …". The default is "poolbot". Give the
// command layer's own Nick function so both agree.
func WithNick(nick func() string) Option { return func(s *Adapter) { s.nick = nick } }

// New returns an adapter for cfg (which should have passed Validate)
// that hands every command to handler. A nil logger discards logs.
func New(cfg Config, handler chat.Handler, logger *slog.Logger, opts ...Option) *Adapter {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	s := &Adapter{cfg: cfg, handler: handler, log: logger.With("adapter", "slack"),
		clock: clockwork.NewRealClock(), nick: func() string { return "poolbot" }}
	for _, o := range opts {
		o(s)
	}
	s.api = NewClient(cfg, s.log)
	s.inbox = make(chan slackDelivery, cfg.HandlerQueue)
	s.seen = newSeenSet(slackSeenKeys)
	s.names = newNameCache(slackMaxNames, slackNameTTL)
	return s
}

var (
	_ chat.Sayer   = (*Adapter)(nil)
	_ chat.Replier = (*slackReplier)(nil)
)

// Client is the adapter's Web API client, for a Mirror to share.
func (s *Adapter) Client() *slackapi.Client { return s.api }

// Connected reports whether the Socket Mode connection is up (Slack said
// hello on it).
func (s *Adapter) Connected() bool { return s.connected.Load() }

// Run connects and stays connected until ctx ends, reconnecting with
// exponential backoff (with jitter, between reconnect_min and
// reconnect_max) whenever the library gives up, and hands commands to the
// chat.Handler on its own goroutine, one at a time, in order. It returns nil
// once every goroutine it started has stopped, or an error if it cannot
// start.
func (s *Adapter) Run(ctx context.Context) error {
	if s.handler == nil {
		return errors.New("slack: no handler")
	}
	if err := s.cfg.Validate(); err != nil {
		return err
	}
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("slack: Run is already running")
	}
	defer s.running.Store(false)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.dispatch(ctx) })

	chat.Reconnect(ctx, s.clock, s.cfg.ReconnectMin, s.cfg.ReconnectMax, s.runSession,
		func(_ bool, err error, wait time.Duration) {
			s.log.Error("slack: connection failed; retrying", "err", err, "in", wait)
		})
	return nil
}

// runSession learns who the bot is (auth.test, which also checks the bot
// token) and runs the Socket Mode client until it gives up. hello tells
// whether Slack said hello at least once.
func (s *Adapter) runSession(ctx context.Context) (hello bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	actx, acancel := context.WithTimeout(sctx, s.cfg.RequestTimeout)
	auth, err := s.api.AuthTestContext(actx)
	acancel()
	if err != nil {
		return false, fmt.Errorf("slack: auth.test (bot token): %w", err)
	}
	if !validSlackID(auth.UserID) {
		return false, fmt.Errorf("slack: auth.test: bad user_id %q", auth.UserID)
	}
	s.self.Store(&slackSelf{userID: auth.UserID, botID: auth.BotID})
	s.log.Info("slack: authenticated", "team", auth.Team, "bot_user", auth.UserID, "bot_id", auth.BotID)

	sm := socketmode.New(s.api, socketmode.OptionLog(log.New(slackLibLog{s.log}, "", 0)))
	var said atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.readEvents(sctx, sm, &said)
	}()
	err = sm.RunContext(sctx)
	cancel()
	<-done
	s.connected.Store(false)
	if err == nil {
		err = errors.New("socket mode client stopped")
	}
	return said.Load(), fmt.Errorf("slack: socket mode: %w", err)
}

// readEvents consumes the client's events until ctx ends. It acknowledges
// envelopes at once and only queues the work, so acks never wait for a
// command to run.
func (s *Adapter) readEvents(ctx context.Context, sm *socketmode.Client, said *atomic.Bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case evt := <-sm.Events:
			s.onEvent(ctx, sm, evt, said)
		}
	}
}

func (s *Adapter) onEvent(ctx context.Context, sm *socketmode.Client, evt socketmode.Event, said *atomic.Bool) {
	switch evt.Type {
	case socketmode.EventTypeConnecting:
		s.connected.Store(false)
		s.log.Debug("slack: connecting")
	case socketmode.EventTypeConnectionError:
		s.connected.Store(false)
		if e, ok := evt.Data.(*slackapi.ConnectionErrorEvent); ok {
			s.log.Warn("slack: connection attempt failed; the library retries", "err", e.ErrorObj, "in", e.Backoff)
		}
	case socketmode.EventTypeInvalidAuth:
		s.log.Error("slack: Slack refused the app-level token (check slack_app_token)")
	case socketmode.EventTypeConnected:
		s.log.Debug("slack: websocket open")
	case socketmode.EventTypeHello:
		said.Store(true)
		s.connected.Store(true)
		s.log.Info("slack: connected")
	case socketmode.EventTypeIncomingError:
		if e, ok := evt.Data.(*slackapi.IncomingEventError); ok && ctx.Err() == nil {
			s.log.Warn("slack: read error", "err", e.ErrorObj)
		}
	case socketmode.EventTypeErrorWriteFailed:
		if e, ok := evt.Data.(*socketmode.ErrorWriteFailed); ok && e.Response != nil {
			s.log.Warn("slack: acknowledgement not written; Slack will retry the envelope",
				"envelope", e.Response.EnvelopeID, "err", e.Cause)
		}
	case socketmode.EventTypeErrorBadMessage:
		s.onBadMessage(ctx, sm, evt)
	case socketmode.EventTypeEventsAPI:
		if evt.Request == nil {
			return
		}
		s.ack(ctx, sm, evt.Request.EnvelopeID, nil)
		s.onEventsAPI(evt.Request)
	case socketmode.EventTypeSlashCommand:
		if evt.Request == nil {
			return
		}
		cmd, ok := evt.Data.(slackapi.SlashCommand)
		if !ok {
			s.ack(ctx, sm, evt.Request.EnvelopeID, nil)
			return
		}
		s.onSlashCommand(ctx, sm, evt.Request, cmd)
	case socketmode.EventTypeInteractive:
		if evt.Request != nil {
			s.ack(ctx, sm, evt.Request.EnvelopeID, nil) // poolbot posts no buttons
		}
	}
}

// ack hands the acknowledgement of one envelope to the socket writer.
func (s *Adapter) ack(ctx context.Context, sm *socketmode.Client, envelopeID string, payload any) {
	if envelopeID == "" {
		return
	}
	actx, cancel := context.WithTimeout(ctx, slackAckTimeout)
	defer cancel()
	if err := sm.AckCtx(actx, envelopeID, payload); err != nil {
		s.log.Warn("slack: acknowledgement failed; Slack will retry the envelope", "envelope", envelopeID, "err", err)
	}
}

// onBadMessage handles a frame the library could not decode (its event
// decoding is strict: one unknown block shape rejects the whole event).
// The envelope is still acknowledged, and an Events API envelope is still
// handled with the adapter's own, lenient decoding.
func (s *Adapter) onBadMessage(ctx context.Context, sm *socketmode.Client, evt socketmode.Event) {
	bad, ok := evt.Data.(*socketmode.ErrorBadMessage)
	if !ok {
		return
	}
	var req socketmode.Request
	if err := json.Unmarshal(bad.Message, &req); err != nil || req.EnvelopeID == "" {
		s.log.Warn("slack: undecodable frame ignored", "err", bad.Cause)
		return
	}
	s.ack(ctx, sm, req.EnvelopeID, nil)
	if req.Type == socketmode.RequestTypeEventsAPI {
		s.log.Debug("slack: library could not decode an event; decoding it here", "err", bad.Cause)
		s.onEventsAPI(&req)
		return
	}
	s.log.Warn("slack: undecodable envelope acknowledged and dropped", "type", req.Type, "err", bad.Cause)
}

// eventCallback is the part of an Events API payload the adapter reads.
type eventCallback struct {
	Type    string `json:"type"`
	EventID string `json:"event_id"`
	Event   struct {
		Type        string `json:"type"`
		Subtype     string `json:"subtype"`
		User        string `json:"user"`
		BotID       string `json:"bot_id"`
		Text        string `json:"text"`
		Channel     string `json:"channel"`
		ChannelType string `json:"channel_type"`
		TS          string `json:"ts"`
		ThreadTS    string `json:"thread_ts"`
	} `json:"event"`
}

// onEventsAPI turns a message or app_mention event into a queued command.
func (s *Adapter) onEventsAPI(req *socketmode.Request) {
	var cb eventCallback
	if err := json.Unmarshal(req.Payload, &cb); err != nil {
		s.log.Warn("slack: events_api payload not decoded", "envelope", req.EnvelopeID, "err", err)
		return
	}
	ev := cb.Event
	if cb.Type != "event_callback" || (ev.Type != "message" && ev.Type != "app_mention") {
		return
	}
	// Retries come as new envelopes with the same event_id; a mention
	// arrives twice (app_mention and message) with the same channel and
	// ts. Either way: handled once.
	keys := []string{"envelope:" + req.EnvelopeID, "event:" + cb.EventID}
	if ev.Channel != "" && ev.TS != "" {
		keys = append(keys, "message:"+ev.Channel+"/"+ev.TS)
	}
	if s.seen.checkAndAdd(keys...) {
		s.log.Debug("slack: duplicate event dropped", "envelope", req.EnvelopeID, "event", cb.EventID,
			"retry_attempt", req.RetryAttempt, "retry_reason", req.RetryReason)
		return
	}
	// Only new messages from people: no edits, deletions, joins, bots or
	// poolbot's own posts (bot_message, bot_id), and never a message
	// without a user.
	switch {
	case ev.Subtype != "" && ev.Subtype != "thread_broadcast",
		ev.BotID != "",
		!validSlackID(ev.User),
		!validSlackID(ev.Channel),
		ev.User == s.selfUserID():
		return
	}
	private := ev.ChannelType == "im" || (ev.ChannelType == "" && strings.HasPrefix(ev.Channel, "D"))
	if !private && !slices.Contains(s.cfg.Channels, ev.Channel) {
		return
	}
	var text string
	if rest, ok := stripBotMention(ev.Text, s.selfUserID()); ok {
		text = s.nickAddress() + PlainText(rest)
	} else {
		text = PlainText(ev.Text)
	}
	msg := chat.Message{Network: "slack", Channel: ev.Channel, Account: ev.User, AccountKnown: true,
		Text: text, Time: slackTime(ev.TS, s.clock)}
	thread := ev.ThreadTS
	if thread == "" && !private {
		thread = ev.TS // start a thread on the command
	}
	if private {
		msg.Channel = "" // chat.Message.Private; replies still go to the DM
	}
	s.enqueue(slackDelivery{msg: msg, r: &slackReplier{s: s, channel: ev.Channel, threadTS: thread}})
}

// onSlashCommand acknowledges a slash command at once and queues it. A
// command from a channel poolbot does not serve, or an empty one, is
// answered in the acknowledgement itself, seen only by the user.
func (s *Adapter) onSlashCommand(ctx context.Context, sm *socketmode.Client, req *socketmode.Request, cmd slackapi.SlashCommand) {
	if s.seen.checkAndAdd("envelope:" + req.EnvelopeID) {
		s.ack(ctx, sm, req.EnvelopeID, nil)
		return
	}
	ephemeral := func(text string) map[string]any {
		return map[string]any{"response_type": "ephemeral", "text": text}
	}
	text := strings.TrimSpace(PlainText(cmd.Text))
	switch {
	case cmd.Command != s.cfg.SlashCommand:
		s.ack(ctx, sm, req.EnvelopeID, ephemeral(fmt.Sprintf("poolbot does not handle %s", Escape(cmd.Command))))
		return
	case !validSlackID(cmd.UserID) || !validSlackID(cmd.ChannelID):
		s.ack(ctx, sm, req.EnvelopeID, ephemeral("poolbot could not tell who or where you are; nothing was done"))
		return
	case !slices.Contains(s.cfg.Channels, cmd.ChannelID):
		s.ack(ctx, sm, req.EnvelopeID, ephemeral(s.whereText()))
		return
	case text == "":
		s.ack(ctx, sm, req.EnvelopeID, ephemeral(fmt.Sprintf("usage: %s <command> …, e.g. %s status or %s help",
			s.cfg.SlashCommand, s.cfg.SlashCommand, s.cfg.SlashCommand)))
		return
	}
	s.ack(ctx, sm, req.EnvelopeID, nil)
	// "/poolbot status" is addressed to poolbot, like "poolbot: status".
	msg := chat.Message{Network: "slack", Channel: cmd.ChannelID, Nick: cmd.UserName, Account: cmd.UserID,
		AccountKnown: true, Text: s.nickAddress() + text, Time: s.clock.Now()}
	header := fmt.Sprintf("<@%s> ran `%s %s`", cmd.UserID, cmd.Command, Escape(truncateRunes(text, 300)))
	s.enqueue(slackDelivery{msg: msg, r: &slackReplier{s: s, channel: cmd.ChannelID, header: header,
		silent: fmt.Sprintf("that is not a poolbot command; try %s help", s.cfg.SlashCommand)}})
}

func (s *Adapter) whereText() string {
	if len(s.cfg.Channels) == 0 {
		return "poolbot takes no slash commands in this workspace; send it a direct message"
	}
	chans := make([]string, len(s.cfg.Channels))
	for i, c := range s.cfg.Channels {
		chans[i] = "<#" + c + ">"
	}
	return "poolbot takes commands only in " + strings.Join(chans, ", ") + " (or a direct message)"
}

// selfUserID is the bot's own user ID ("" before the first auth.test).
func (s *Adapter) selfUserID() string {
	if self := s.self.Load(); self != nil {
		return self.userID
	}
	return ""
}

// nickAddress is how a message addressed to the bot starts for the
// command layer.
func (s *Adapter) nickAddress() string {
	n := s.nick()
	if n == "" {
		n = "poolbot"
	}
	return n + ": "
}

// slackDelivery is one acknowledged command waiting for the chat.Handler.
type slackDelivery struct {
	msg chat.Message
	r   *slackReplier
}

func (s *Adapter) enqueue(d slackDelivery) {
	select {
	case s.inbox <- d:
	default:
		s.log.Warn("slack: handler queue full; command dropped", "account", d.msg.Account,
			"channel", d.msg.Channel, "queue", cap(s.inbox))
	}
}

// dispatch hands queued commands to the chat.Handler, one at a time, in order,
// then posts what the chat.Handler said.
func (s *Adapter) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-s.inbox:
			s.handle(ctx, d)
		}
	}
}

func (s *Adapter) handle(ctx context.Context, d slackDelivery) {
	d.msg.Nick = s.displayName(ctx, d.msg.Account, d.msg.Nick)
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("slack: handler panicked", "panic", r, "account", d.msg.Account, "channel", d.msg.Channel)
			}
		}()
		s.handler.HandleMessage(ctx, d.msg, d.r)
	}()
	// The reply finishes even if poolbot is stopping meanwhile (each post
	// is bounded by request_timeout): the command was done, so say so.
	d.r.flush(context.WithoutCancel(ctx))
}

// displayName returns the user's display name for show (cached), or
// fallback, or the ID. It is never used to decide anything.
func (s *Adapter) displayName(ctx context.Context, userID, fallback string) string {
	if name, ok := s.names.get(userID, s.clock.Now()); ok {
		return name
	}
	name := fallback
	nctx, cancel := context.WithTimeout(ctx, slackNameTimeout)
	u, err := s.api.GetUserInfoContext(nctx, userID)
	cancel()
	if err == nil && u != nil {
		for _, n := range []string{u.Profile.DisplayName, u.Profile.RealName, u.RealName, u.Name} {
			if n != "" {
				name = n
				break
			}
		}
	} else {
		s.log.Debug("slack: users.info failed; showing the user ID", "user", userID, "err", err)
	}
	name = truncateRunes(strings.TrimSpace(chat.Sanitize(name)), 64)
	if name == "" {
		name = userID
	}
	if err == nil {
		s.names.put(userID, name, s.clock.Now())
	}
	return name
}

// Say implements chat.Sayer: it posts text (escaped) in channel, a channel ID.
func (s *Adapter) Say(ctx context.Context, channel, text string) error {
	if !validSlackID(channel) {
		return fmt.Errorf("slack: say: bad channel ID %q", channel)
	}
	return s.post(ctx, channel, "", Escape(text))
}

// post sends pre-escaped text; threadTS "" posts at the top level.
func (s *Adapter) post(ctx context.Context, channel, threadTS, escaped string) error {
	_, err := s.postTS(ctx, channel, threadTS, escaped)
	return err
}

func (s *Adapter) postTS(ctx context.Context, channel, threadTS, escaped string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	opts := []slackapi.MsgOption{slackapi.MsgOptionText(escaped, false),
		slackapi.MsgOptionDisableLinkUnfurl(), slackapi.MsgOptionDisableMediaUnfurl()}
	if threadTS != "" {
		opts = append(opts, slackapi.MsgOptionTS(threadTS))
	}
	_, ts, err := s.api.PostMessageContext(ctx, channel, opts...)
	if err != nil {
		return "", fmt.Errorf("slack: chat.postMessage to %s: %w", channel, err)
	}
	return ts, nil
}

// slackReplier answers a command in Slack. While the chat.Handler runs, lines
// are collected and then posted as one message (Slack allows about one
// message a second per channel, and one message reads better than ten):
// for a channel message in its thread, for a direct message in the DM,
// for a slash command as a channel message that starts with who ran what
// (a slash command is invisible to everyone else), with any later replies
// in its thread. A Reply after the command was handled posts at once.
type slackReplier struct {
	s        *Adapter
	channel  string
	threadTS string
	header   string // slash commands: first line of the first message
	silent   string // slash commands: said when the chat.Handler said nothing

	mu      sync.Mutex
	lines   []string
	flushed bool
}

// Reply implements chat.Replier. While the command is being handled it only
// collects the line and returns nil; the post happens when the chat.Handler
// returns, and a failure to post is logged.
func (r *slackReplier) Reply(ctx context.Context, text string) error {
	r.mu.Lock()
	if !r.flushed {
		if len(r.lines) < slackMaxReplyLines {
			r.lines = append(r.lines, text)
		} else if len(r.lines) == slackMaxReplyLines {
			r.lines = append(r.lines, "… (more output cut)")
		}
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	return r.send(ctx, []string{text})
}

func (r *slackReplier) flush(ctx context.Context) {
	r.mu.Lock()
	lines := r.lines
	r.lines, r.flushed = nil, true
	r.mu.Unlock()
	if len(lines) == 0 && r.silent != "" {
		// The command layer ignores lines that are not commands; a slash
		// command always deserves an answer.
		lines = []string{r.silent}
	}
	if len(lines) == 0 {
		return
	}
	if err := r.send(ctx, lines); err != nil {
		r.s.log.Warn("slack: reply not posted", "channel", r.channel, "err", err)
	}
}

// send posts lines (escaped), split into messages of at most
// slackMaxReplyBytes at line breaks.
func (r *slackReplier) send(ctx context.Context, lines []string) error {
	var chunks []string
	var cur strings.Builder
	r.mu.Lock()
	header := r.header
	r.header = ""
	r.mu.Unlock()
	if header != "" {
		cur.WriteString(header)
	}
	for _, l := range lines {
		l = truncateRunes(Escape(l), slackMaxReplyBytes)
		if cur.Len() > 0 && cur.Len()+1+len(l) > slackMaxReplyBytes {
			chunks = append(chunks, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte('\n')
		}
		cur.WriteString(l)
	}
	if cur.Len() > 0 {
		chunks = append(chunks, cur.String())
	}
	for _, c := range chunks {
		r.mu.Lock()
		thread := r.threadTS
		r.mu.Unlock()
		ts, err := r.s.postTS(ctx, r.channel, thread, c)
		if err != nil {
			return err
		}
		r.mu.Lock()
		if r.threadTS == "" && header != "" {
			r.threadTS = ts // later replies to a slash command thread under it
		}
		r.mu.Unlock()
	}
	return nil
}

// slackTime parses a message ts ("1700000000.123456").
func slackTime(ts string, clock clockwork.Clock) time.Time {
	sec, frac, _ := strings.Cut(ts, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || s <= 0 {
		return clock.Now()
	}
	var ns int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		ns, _ = strconv.ParseInt(frac, 10, 64)
	}
	return time.Unix(s, ns).UTC()
}

// seenSet remembers the last n keys (envelope IDs, event IDs, channel/ts)
// to drop retried and duplicate events.
type seenSet struct {
	mu   sync.Mutex
	keys map[string]struct{}
	ring []string
	next int
}

func newSeenSet(n int) *seenSet {
	return &seenSet{keys: make(map[string]struct{}, n), ring: make([]string, n)}
}

// checkAndAdd reports whether any of keys was seen before, and remembers
// them all. Keys with nothing after their "kind:" prefix are skipped.
func (s *seenSet) checkAndAdd(keys ...string) (dup bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if strings.HasSuffix(k, ":") {
			continue
		}
		if _, ok := s.keys[k]; ok {
			dup = true
		}
	}
	for _, k := range keys {
		if strings.HasSuffix(k, ":") {
			continue
		}
		if _, ok := s.keys[k]; ok {
			continue
		}
		if old := s.ring[s.next]; old != "" {
			delete(s.keys, old)
		}
		s.ring[s.next] = k
		s.keys[k] = struct{}{}
		s.next = (s.next + 1) % len(s.ring)
	}
	return dup
}

// nameCache caches display names for a while.
type nameCache struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	names map[string]cachedName
}

type cachedName struct {
	name string
	at   time.Time
}

func newNameCache(max int, ttl time.Duration) *nameCache {
	return &nameCache{max: max, ttl: ttl, names: map[string]cachedName{}}
}

func (c *nameCache) get(id string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.names[id]
	if !ok || now.Sub(n.at) > c.ttl {
		return "", false
	}
	return n.name, true
}

func (c *nameCache) put(id, name string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.names) >= c.max {
		for k, v := range c.names { // drop expired entries, or any one
			if now.Sub(v.at) > c.ttl || len(c.names) >= c.max {
				delete(c.names, k)
			}
		}
	}
	c.names[id] = cachedName{name: name, at: now}
}

// slackLibLog sends the library's log lines (debug output only) to slog.
type slackLibLog struct{ log *slog.Logger }

func (w slackLibLog) Write(p []byte) (int, error) {
	w.log.Debug("slack-go: " + chat.Sanitize(strings.TrimSpace(string(p))))
	return len(p), nil
}
