package main

import (
	"context"
	"log/slog"

	"poolbot"
	"poolbot/bot"
	slackbot "poolbot/bot/slack"
	"poolbot/chat"
	"poolbot/config"
	"poolbot/store"
)

// slackParts is the Slack adapter and its mirror, when chat.slack is
// configured. A nil *slackParts means no Slack; its methods then leave
// everything as it was.
type slackParts struct {
	adapter *slackbot.Adapter
	mirror  *slackbot.Mirror // nil when chat.slack.mirror_channel is empty
}

// newSlack builds the Slack side from the config (config.Load has read the
// tokens into it). Commands reach h; nick is the name the command layer
// answers to, so a Slack mention reads as "<nick>: …".
func newSlack(cfg *config.Config, h chat.Handler, nick func() string, log *slog.Logger) *slackParts {
	if cfg.Chat.Slack == nil {
		return nil
	}
	sc := *cfg.Chat.Slack
	slackLog := log.With("component", "slack")
	p := &slackParts{adapter: slackbot.New(sc, h, slackLog, slackbot.WithNick(nick))}
	if sc.MirrorChannel != "" {
		p.mirror = slackbot.NewMirror(p.adapter.Client(), sc, log.With("component", "slack-mirror"))
	}
	return p
}

// announcer returns base with notices also mirrored to Slack. The mirror
// goes first: it only queues, so Slack is not held up by an IRC line
// waiting for its echo.
func (p *slackParts) announcer(base poolbot.Announcer) poolbot.Announcer {
	if p == nil || p.mirror == nil {
		return base
	}
	if base == nil {
		return p.mirror
	}
	return fanoutAnnouncer{p.mirror, base}
}

// salDelivered copies each SAL line to the Slack mirror once the SAL
// sender delivered it (sal.Sender.Delivered): the durable path decides,
// the mirror only copies. Nil without a mirror.
func (p *slackParts) salDelivered() func(context.Context, store.OutboxLine) {
	if p == nil || p.mirror == nil {
		return nil
	}
	return func(ctx context.Context, l store.OutboxLine) { p.mirror.SAL(ctx, l.Notice, l.Line) }
}

// runners are what must run until ctx ends.
func (p *slackParts) runners() []func(ctx context.Context) error {
	if p == nil {
		return nil
	}
	runs := []func(ctx context.Context) error{p.adapter.Run}
	if p.mirror != nil {
		runs = append(runs, p.mirror.Run)
	}
	return runs
}

// fanoutAnnouncer says each notice through every announcer, in order.
type fanoutAnnouncer []poolbot.Announcer

func (f fanoutAnnouncer) Announce(ctx context.Context, n poolbot.Notice) {
	for _, a := range f {
		a.Announce(ctx, n)
	}
}

// ircNick is the bot's IRC nick, or the configured one while IRC is down,
// so that "poolbot: status" (and a Slack mention, which reads as that)
// keeps working whatever the IRC connection is doing.
func ircNick(irc *bot.IRC, configured string) func() string {
	return func() string {
		if n := irc.Nick(); n != "" {
			return n
		}
		return configured
	}
}
