package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/jonboulle/clockwork"

	"poolbot/bot"
	"poolbot/commands"
	"poolbot/config"
	"poolbot/procedure"
	"poolbot/sal"
	"poolbot/store"
	"poolbot/watch"
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

	// /metrics and /healthz (ops.go); the listener opens here, so a taken
	// http.listen fails before anything connects.
	metrics, err := newOps(ctx, cfg, opts.console, st, log)
	if err != nil {
		return err
	}
	defer metrics.close()

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
	var chat chatAdapter // IRC or the console; nil with Slack only
	nick := func() string { return "poolbot" }
	// Slack runs beside IRC (never with the console) and asks for the nick
	// at call time, once the switch below has set it.
	var slk *slackParts
	if !opts.console {
		slk = newSlack(cfg, handler, func() string { return nick() }, log)
	}
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
		chat, nick = irc, ircNick(irc, cfg.Chat.IRC.Nick)
	case slk != nil:
		// Slack only: config requires sal.sink tcpircbot; notices go to
		// the Slack mirror alone.
	default:
		return fmt.Errorf("no chat network configured: set chat.irc and/or chat.slack, or use poolbot console")
	}

	var sink sal.Sink
	if chat != nil {
		sink = sal.ChannelSink{Chat: chat, Channel: cfg.SAL.Channel}
	}
	if cfg.SAL.Sink == "tcpircbot" {
		sink = sal.TCPIRCBotSink{Addr: cfg.SAL.TCPIRCBot.Addr, Attribution: cfg.SAL.TCPIRCBot.Attribution,
			Timeout: cfg.SAL.TCPIRCBot.Timeout}
	}
	if sink == nil {
		return fmt.Errorf("sal.sink: channel needs chat.irc")
	}
	sink = slk.salSink(sink)
	sender := sal.NewSender(st, sink, clock, log.With("component", "sal"))

	var announce procedure.Announcer
	if chat != nil {
		announce = channelAnnouncer{chat: chat, channel: cfg.Chat.NoticeChannel, log: log}
	}
	announce = slk.announcer(announce)
	// The procedure records its own conftool writes for the drift watch.
	own := watch.NewOwnWrites(clock, cfg.Watch.Drift.OwnWriteWindow())
	proc, err := buildProcedure(ctx, cfg, st, clock, log, announce, sender.Wake, metrics.procedureHook, ownWritesHook(own))
	if err != nil {
		return err
	}
	wat, err := buildWatch(cfg, st, clock, log, proc, own, announce, sender.Wake, metrics.registry())
	if err != nil {
		return err
	}
	if err := metrics.attach(chat, slk, proc); err != nil {
		return err
	}
	var observers []bot.Handler
	observers = append(observers, wat.Observer())
	if proc.observer != nil {
		observers = append(observers, proc.observer)
	}
	router = commands.NewRouter(commands.Options{
		Prefix:            cfg.Chat.CommandPrefix,
		Nick:              nick,
		Services:          cfg.ServiceDatacenters(),
		ForceNeedsConfirm: cfg.Force.NeedsConfirm(),
		ConfirmWindow:     cfg.Force.ConfirmWindow,
		SALWritten:        sender.Wake,
	}, ops, st, commands.Backends{
		Notifier: proc.engine, Reporter: proc.engine, Windows: proc.engine,
		Checker: proc.engine, Resumer: proc.engine, Watch: wat,
	}, clock, log.With("component", "commands"), observers...)

	// Shutdown goes in stages (shutdown.go): the procedure finishes or
	// parks its host step and releases the deploy block, the SAL outbox
	// is flushed, and only then do the chat adapters leave. The console
	// ends with its input; that ends poolbot the same way.
	run := stages{flush: sender.Flush, flushTimeout: salFlushTimeout, log: log}
	if chat != nil {
		run.chat = append(run.chat, chat.Run)
	}
	run.chat = append(run.chat, slk.runners()...)
	run.workers = append(run.workers, sender.Run, proc.engine.Run)
	run.workers = append(run.workers, proc.runners...)
	run.workers = append(run.workers, wat.Run)
	run.workers = append(run.workers, metrics.runners()...)
	log.Info("poolbot started", "version", buildVersion(), "store", st.Path())
	err = run.run(ctx)
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
	for _, s := range []string{"password", "passphrase", "token", "secret", "cookie", "authorization", "credential"} {
		if strings.Contains(k, s) {
			return slog.String(a.Key, "REDACTED")
		}
	}
	return a
}
