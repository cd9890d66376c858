package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sync/errgroup"

	"poolbot/bot"
	"poolbot/commands"
	"poolbot/config"
	"poolbot/sal"
	"poolbot/store"
)

type daemonOptions struct {
	console  bool
	operator string
	stdin    io.Reader
	stdout   io.Writer
	stderr   io.Writer
}

// chatAdapter is what runDaemon needs of IRC and the console alike.
type chatAdapter interface {
	bot.Sayer
	Run(ctx context.Context) error
}

// consoleAdapter binds the console to its handler.
type consoleAdapter struct {
	*bot.Console
	h bot.Handler
}

func (c consoleAdapter) Run(ctx context.Context) error { return c.Console.Run(ctx, c.h) }

// runDaemon wires the parts together and runs them until ctx ends: the
// store, the command layer, the chat adapter, and the SAL sender.
func runDaemon(ctx context.Context, cfg *config.Config, opts daemonOptions) error {
	log := newLogger(cfg.Log, opts.stderr)
	clock := clockwork.NewRealClock()

	st, err := store.Open(ctx, cfg.Store.Path, clock)
	if err != nil {
		return err
	}
	defer st.Close()

	ops, err := commands.NewOperators(cfg.Operators)
	if err != nil {
		return fmt.Errorf("operators: %w", err)
	}

	// The router is built after the adapter (it asks the adapter for the
	// bot's current nick); the adapter reaches it through this handler.
	var router *commands.Router
	handler := bot.HandlerFunc(func(ctx context.Context, m bot.Message, r bot.Replier) {
		router.HandleMessage(ctx, m, r)
	})
	var chat chatAdapter
	nick := func() string { return "poolbot" }
	switch {
	case opts.console:
		if !ops.Known(opts.operator) {
			return fmt.Errorf("console: %q is not an operator in the config", opts.operator)
		}
		channel := cfg.SAL.Channel
		if channel == "" {
			channel = "#console"
		}
		chat = consoleAdapter{bot.NewConsole(opts.stdin, opts.stdout, opts.operator, channel, "poolbot"), handler}
		fmt.Fprintf(opts.stdout, "poolbot console: you are operator %q in %s; try %shelp. Ctrl-D quits.\n",
			opts.operator, channel, cfg.Chat.CommandPrefix)
	case cfg.Chat.IRC != nil:
		irc, err := newIRC(cfg, handler, log)
		if err != nil {
			return err
		}
		chat, nick = irc, irc.Nick
	default:
		return fmt.Errorf("no chat network configured: set chat.irc, or use poolbot console")
	}

	var sink sal.Sink = sal.ChannelSink{Chat: chat, Channel: cfg.SAL.Channel}
	if cfg.SAL.Sink == "tcpircbot" {
		sink = sal.TCPIRCBotSink{Addr: cfg.SAL.TCPIRCBot.Addr, Attribution: cfg.SAL.TCPIRCBot.Attribution,
			Timeout: cfg.SAL.TCPIRCBot.Timeout}
	}
	sender := sal.NewSender(st, sink, clock, log.With("component", "sal"))

	announce := channelAnnouncer{chat: chat, channel: cfg.Chat.NoticeChannel, log: log}
	proc, err := buildProcedure(ctx, cfg, st, clock, log, announce, sender.Wake)
	if err != nil {
		return err
	}
	var observers []bot.Handler
	if proc.observer != nil {
		observers = append(observers, proc.observer)
	}
	router = commands.NewRouter(commands.Options{
		Prefix:            cfg.Chat.CommandPrefix,
		Nick:              nick,
		Services:          cfg.ServiceDatacenters(),
		ForceNeedsConfirm: cfg.Force.NeedsConfirm(),
		ConfirmWindow:     cfg.Force.ConfirmWindow,
	}, ops, st, commands.Backends{
		Notifier: proc.engine, Reporter: proc.engine, Windows: proc.engine,
		Checker: proc.engine, Resumer: proc.engine,
	}, clock, log.With("component", "commands"), observers...)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := chat.Run(ctx)
		// The console ends with its input; that ends poolbot.
		cancel()
		return err
	})
	g.Go(func() error { return sender.Run(ctx) })
	g.Go(func() error { return proc.engine.Run(ctx) })
	for _, run := range proc.runners {
		g.Go(func() error { return run(ctx) })
	}
	log.Info("poolbot started", "version", buildVersion(), "store", st.Path())
	err = g.Wait()
	log.Info("poolbot stopped")
	return err
}

func newIRC(cfg *config.Config, h bot.Handler, log *slog.Logger) (*bot.IRC, error) {
	// config.Load has read the password into the IRC section.
	return bot.New(*cfg.Chat.IRC, h, log.With("component", "irc")), nil
}

// newLogger builds the structured logger. Attributes whose key names a
// secret are redacted, whatever a caller passes.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	hopts := &slog.HandlerOptions{Level: level, ReplaceAttr: redact}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

func redact(_ []string, a slog.Attr) slog.Attr {
	k := strings.ToLower(a.Key)
	for _, s := range []string{"password", "token", "secret", "cookie"} {
		if strings.Contains(k, s) {
			return slog.String(a.Key, "REDACTED")
		}
	}
	return a
}
