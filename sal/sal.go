// Package sal delivers Server Admin Log lines from the store's outbox.
//
// Wikimedia's SAL is written by stashbot, which records every channel line
// that starts with "!log ". A line sent by poolbot's own nick is attributed
// to that nick; a line relayed by logmsgbot (tcpircbot, a TCP-to-IRC relay
// that accepts one message per connection from allow-listed hosts) may
// carry a "user@host" attribution as its first word. Both sinks are here.
//
// Delivery is at least once and strictly in order: the Sender takes the
// oldest undelivered line, sends it, and only then marks it sent. A crash
// between the two repeats that one line after restart; nothing is lost. The
// mark does not wait for the disk (store.MarkSALSent): it survives poolbot
// being killed, and a power loss can only repeat the lines marked since the
// store's last synced write.
package sal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/chat"
	"poolbot/store"
)

// Sink delivers one SAL message (without the "!log " prefix).
type Sink interface {
	Send(ctx context.Context, message string) error
}

// ChannelSink says "!log <message>" in the SAL channel through a chat
// adapter; stashbot attributes it to the bot's nick. The adapter would
// split a long line, and stashbot would log only the first piece (the
// rest lacks "!log "), so a line longer than the adapter's LineBudget is
// shortened to fit, ending in "…", as TCPIRCBotSink does.
type ChannelSink struct {
	Chat    chat.Sayer
	Channel string
}

// lineBudgeter is a chat adapter that splits long lines (bot.IRC): it
// tells how many bytes fit on one.
type lineBudgeter interface {
	LineBudget(target string) int
}

// Send implements Sink.
func (c ChannelSink) Send(ctx context.Context, message string) error {
	line := "!log " + message
	if b, ok := c.Chat.(lineBudgeter); ok {
		line = fitLine(line, b.LineBudget(c.Channel))
	}
	// SAL lines go out first (chat.PrioritySAL): they are the record, and
	// notices about a request wait for them anyway.
	if err := c.Chat.Say(chat.WithPriority(ctx, chat.PrioritySAL), c.Channel, line); err != nil {
		return fmt.Errorf("sal: say in %s: %w", c.Channel, err)
	}
	return nil
}

// OnReady implements chat.ReadyNotifier when the adapter does: the Sender
// is woken when the connection comes back (see NewSender).
func (c ChannelSink) OnReady(f func()) {
	if r, ok := c.Chat.(chat.ReadyNotifier); ok {
		r.OnReady(f)
	}
}

// TCPIRCBotSink sends "!log <attribution> <message>" to a tcpircbot relay
// (logmsgbot), one TCP connection per message, as scap, conftool and
// spicerack do. Attribution is "user@host"; stashbot trusts it only from
// logmsgbot.
//
// With AttributeOperator, a request's line is credited to its operator on
// the attribution's host, the way a cookbook run is credited to whoever
// ran it: "poolbot #12 alice: START - …" goes out as
// "!log alice@deploy1003 poolbot #12: START - …", and the SAL reads
// "alice@deploy1003: poolbot #12: START - …". (Through ChannelSink this
// cannot be done: stashbot credits a line to the nick that said it, and
// trusts a user@host word only from logmsgbot and wm-bot.)
type TCPIRCBotSink struct {
	Addr              string
	Attribution       string
	AttributeOperator bool
	Timeout           time.Duration
}

// tcpircbotChunk is the relay's read size: it sends each 460-byte chunk as
// its own IRC line, so a longer message would be cut in two SAL entries.
const tcpircbotChunk = 460

// Send implements Sink.
func (t TCPIRCBotSink) Send(ctx context.Context, message string) error {
	who := t.Attribution
	if id, operator, text, ok := poolbot.ParseSALLine(message); ok && t.AttributeOperator {
		_, host, _ := strings.Cut(t.Attribution, "@")
		who = operator + "@" + host
		message = poolbot.SALPrefix + " " + id.String() + ": " + text
	}
	// The relay must get exactly one line, and one chunk.
	line := fitLine("!log "+who+" "+message, tcpircbotChunk)
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return fmt.Errorf("sal: tcpircbot %s: %w", t.Addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte(line)); err != nil {
		return fmt.Errorf("sal: tcpircbot %s: write: %w", t.Addr, err)
	}
	// A clean close is how tcpircbot knows the message is complete.
	if err := conn.Close(); err != nil {
		return fmt.Errorf("sal: tcpircbot %s: close: %w", t.Addr, err)
	}
	return nil
}

// ellipsis ends a line that fitLine shortened.
const ellipsis = "…"

// fitLine makes line one IRC line of at most maxBytes bytes: sanitised
// like every chat line (chat.Sanitize: CR, LF, NUL and other controls
// become spaces, formatting goes, invalid UTF-8 becomes U+FFFD), trailing
// spaces dropped, and if still too long cut at a rune boundary and ended
// with an ellipsis, so the SAL shows that something is missing.
func fitLine(line string, maxBytes int) string {
	line = strings.TrimRight(chat.Sanitize(line), " ")
	if len(line) <= maxBytes {
		return line
	}
	mark := ellipsis
	if maxBytes < 2*len(ellipsis) {
		mark = ""
	}
	cut := max(maxBytes-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(line[cut]) {
		cut--
	}
	return strings.TrimRight(line[:cut], " ") + mark
}

// Outbox is the part of the store the Sender needs.
type Outbox interface {
	NextSAL(ctx context.Context) (store.OutboxLine, bool, error)
	MarkSALSent(ctx context.Context, id int64) error
	MarkSALFailed(ctx context.Context, id int64, cause error) error
}

// Sender delivers the outbox through a Sink.
type Sender struct {
	outbox Outbox
	sink   Sink
	clock  clockwork.Clock
	log    *slog.Logger
	wake   chan struct{}
	// Poll is how often the sender looks at the outbox when nobody woke
	// it; Wake makes new lines go out at once.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed send.
	MinBackoff, MaxBackoff time.Duration
	// Delivered, when set, is called with each line once it was delivered
	// and marked sent, in outbox order, on the sender's goroutine (the
	// Slack mirror copies it; notices held behind it go out).
	Delivered func(ctx context.Context, line store.OutboxLine)
}

// NewSender returns a Sender; call Run to start it. When the sink can say
// that its chat connection is ready again (chat.ReadyNotifier: a
// ChannelSink on IRC), the Sender is woken then: a restarted poolbot, or
// one whose network was down for a while, has its backoff at MaxBackoff,
// and without this its queued lines would wait for that to run out (67 s
// were seen) instead of going out as soon as the bot is in the channel.
func NewSender(outbox Outbox, sink Sink, clock clockwork.Clock, log *slog.Logger) *Sender {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sender{
		outbox: outbox, sink: sink, clock: clock, log: log,
		wake:       make(chan struct{}, 1),
		Poll:       5 * time.Second,
		MinBackoff: time.Second,
		MaxBackoff: time.Minute,
	}
	if r, ok := sink.(chat.ReadyNotifier); ok {
		r.OnReady(s.Wake)
	}
	return s
}

// Wake tells the sender that a new line was queued. It never blocks.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers lines until ctx is done.
func (s *Sender) Run(ctx context.Context) error {
	backoff := s.MinBackoff
	for {
		delivered, err := s.deliverOne(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			s.log.Warn("SAL line not delivered; will retry", "err", err, "retry_in", backoff)
			if !s.sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, s.MaxBackoff)
		case delivered:
			backoff = s.MinBackoff
		default:
			backoff = s.MinBackoff
			if !s.sleep(ctx, s.Poll) {
				return nil
			}
		}
	}
}

// Flush delivers every queued line, giving up at the first failure or
// when ctx ends. It is used at shutdown.
func (s *Sender) Flush(ctx context.Context) error {
	for {
		delivered, err := s.deliverOne(ctx)
		if err != nil {
			return err
		}
		if !delivered {
			return nil
		}
	}
}

// deliverOne sends the oldest line. delivered is false when the outbox was
// empty.
func (s *Sender) deliverOne(ctx context.Context) (delivered bool, err error) {
	line, ok, err := s.outbox.NextSAL(ctx)
	if err != nil || !ok {
		return false, err
	}
	if sendErr := s.sink.Send(ctx, line.Line); sendErr != nil {
		// Record the attempt with a fresh context: the caller's may be the
		// reason the send failed.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.outbox.MarkSALFailed(mctx, line.ID, sendErr); err != nil {
			return false, errors.Join(sendErr, err)
		}
		return false, sendErr
	}
	// The line is out; mark it even if ctx was cancelled meanwhile, so a
	// shutdown right now does not repeat it.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.outbox.MarkSALSent(mctx, line.ID); err != nil {
		return false, err
	}
	s.log.Info("SAL line delivered", "id", line.ID, "request", int64(line.RequestID))
	if s.Delivered != nil {
		s.Delivered(mctx, line)
	}
	return true, nil
}

func (s *Sender) sleep(ctx context.Context, d time.Duration) bool {
	t := s.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-s.wake:
		return true
	case <-t.Chan():
		return true
	}
}
