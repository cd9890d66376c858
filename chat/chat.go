// Package chat is the vocabulary poolbot's chat adapters share with the
// rest of the bot: the normalised incoming Message, the Handler the command
// layer implements, the Sayer and Replier that send text, and output pacing,
// sanitising and splitting. It links no chat library, so the procedure, the
// watchers and the command layer can speak it without pulling in IRC or
// Slack code; the adapters live in bot/ (IRC, console) and bot/slack.
//
// An adapter's job ends at the protocol: it turns a network's events into
// Messages (with the sender's account, never trusting a nick) and delivers
// text safely. Deciding what a message means is the commands package's job.
package chat

import (
	"context"
	"time"
)

// Message is one line said to poolbot or in a channel poolbot sits in.
type Message struct {
	// Network is the adapter the message came from: "irc", "slack" or "console".
	Network string
	// Channel is where it was said; empty for a private message.
	Channel string
	// Nick is how the sender is shown. It is for display only: anyone can
	// take a nick, so it is never used for authorization.
	Nick string
	// Source is the sender's full IRC source, nick!user@host (empty on
	// other networks): with no account, what tells one sender from
	// another for rate limiting (Identity).
	Source string
	// Account is the sender's verified identity on Network: the services
	// account on IRC (IRCv3 account-tag), the user ID on Slack, the operator
	// given on the console's command line. Empty when the sender is not
	// logged in.
	Account string
	// AccountKnown is false when the network cannot tell whether the sender
	// is logged in (on IRC: the server did not acknowledge account-tag). A
	// missing Account then means "unknown", not "logged out", and every
	// state-changing command must be refused (fail closed).
	AccountKnown bool
	// Text is the message body as received, before any sanitising.
	Text string
	// Time is when the server says it was sent (server-time), or when it
	// was received.
	Time time.Time
}

// Private reports whether the message was sent to poolbot directly.
func (m Message) Private() bool { return m.Channel == "" }

// Replier answers a Message where it came from: in the channel (addressed
// to the sender) or by private message. Implementations pace, sanitise and
// split the text like every other output line.
type Replier interface {
	Reply(ctx context.Context, text string) error
}

// Handler receives every message an adapter sees, commands and plain
// channel chatter alike (the scap watcher reads logmsgbot's lines). It must
// not block for long: adapters call it from their read loop's hand-off
// goroutine, one message at a time, in arrival order.
type Handler interface {
	HandleMessage(ctx context.Context, m Message, r Replier)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m Message, r Replier)

// HandleMessage calls f.
func (f HandlerFunc) HandleMessage(ctx context.Context, m Message, r Replier) { f(ctx, m, r) }

// Sayer sends lines to a channel (or a nick). Say returns nil only once the
// line is known to be delivered (on IRC: the server echoed it back with
// echo-message, or, without that capability, it was written to the
// server's socket while registered); an error means it may not have been
// delivered and the caller (the SAL outbox) must try again later.
type Sayer interface {
	Say(ctx context.Context, target, text string) error
}

// ReadyNotifier is a chat adapter that says when it can deliver lines
// again. Whoever retries deliveries with a backoff (the SAL sender) uses it
// so as not to sleep through the moment the connection comes back: after
// a long outage the backoff has grown to its maximum, and lines queued
// meanwhile would otherwise wait for it to run out.
type ReadyNotifier interface {
	// OnReady registers f, called each time the adapter becomes ready to
	// deliver (on IRC: registered and the JOINs sent), on the adapter's
	// goroutine: f must return at once.
	OnReady(f func())
}
