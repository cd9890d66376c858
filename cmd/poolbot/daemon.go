package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/bot"
	"poolbot/chat"
	"poolbot/commands"
	"poolbot/config"
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
	chat.Sayer
	Run(ctx context.Context) error
}

// consoleAdapter binds the console to its handler.
type consoleAdapter struct {
	*bot.Console
	h chat.Handler
}

func (c consoleAdapter) Run(ctx context.Context) error { return c.Console.Run(ctx, c.h) }

// runDaemon wires the parts together and runs them until ctx ends: the
// store, the command layer, the chat adapter, and the SAL sender.
func runDaemon(ctx context.Context, cfg *config.Config, opts daemonOptions) error {
	log := newLogger(cfg.Log, opts.stderr, configSecrets(cfg)...)
	clock := clockwork.NewRealClock()

	st, err := store.Open(ctx, cfg.Store.Path, clock)
	if err != nil {
		return err
	}
	defer st.Close()

	// /metrics and /healthz (monitoring.go); the listener opens here, so a taken
	// http.listen fails before anything connects.
	metrics, err := newMonitoring(ctx, cfg, opts.console, st, log)
	if err != nil {
		return err
	}
	defer metrics.close()

	// One active poolbot: a standby waits here, before chat, actions and
	// SAL (leadership.go).
	lead, active, err := waitLeadership(ctx, cfg, clock, log, metrics)
	if err != nil || !active {
		return err
	}
	defer lead.close(log)
	if lead != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		lead.watch(ctx, cancel, log)
	}

	operators, err := commands.NewOperators(cfg.Operators)
	if err != nil {
		return fmt.Errorf("operators: %w", err)
	}

	// The router is built after the adapter (it asks the adapter for the
	// bot's current nick); the adapter reaches it through this handler.
	var router *commands.Router
	handler := chat.HandlerFunc(func(ctx context.Context, m chat.Message, r chat.Replier) {
		router.HandleMessage(ctx, m, r)
	})
	var adapter chatAdapter // IRC or the console; nil with Slack only
	nick := func() string { return "poolbot" }
	// Slack runs beside IRC (never with the console) and asks for the nick
	// at call time, once the switch below has set it.
	var slk *slackParts
	if !opts.console {
		slk = newSlack(cfg, handler, func() string { return nick() }, log)
	}
	switch {
	case opts.console:
		if !operators.Known(opts.operator) {
			return fmt.Errorf("console: %q is not an operator in the config", opts.operator)
		}
		channel := cfg.SAL.Channel
		if channel == "" {
			channel = "#console"
		}
		adapter = consoleAdapter{bot.NewConsole(opts.stdin, opts.stdout, opts.operator, channel, "poolbot"), handler}
		fmt.Fprintf(opts.stdout, "poolbot console: you are operator %q in %s; try %shelp. Ctrl-D quits.\n",
			opts.operator, channel, cfg.Chat.CommandPrefix)
	case cfg.Chat.IRC != nil:
		irc, err := newIRC(cfg, handler, log)
		if err != nil {
			return err
		}
		adapter, nick = irc, ircNick(irc, cfg.Chat.IRC.Nick)
	case slk != nil:
		// Slack only: config requires sal.sink tcpircbot; notices go to
		// the Slack mirror alone.
	default:
		return fmt.Errorf("no chat network configured: set chat.irc and/or chat.slack, or use poolbot console")
	}

	var sink sal.Sink
	if adapter != nil {
		sink = sal.ChannelSink{Chat: adapter, Channel: cfg.SAL.Channel}
	}
	if cfg.SAL.Sink == "tcpircbot" {
		sink = sal.TCPIRCBotSink{Addr: cfg.SAL.TCPIRCBot.Addr, Attribution: cfg.SAL.TCPIRCBot.Attribution,
			AttributeOperator: cfg.SAL.TCPIRCBot.AttributeOperatorOrDefault(),
			Timeout:           cfg.SAL.TCPIRCBot.Timeout}
	}
	if sink == nil {
		return fmt.Errorf("sal.sink: channel needs chat.irc")
	}
	sender := sal.NewSender(st, sink, clock, log.With("component", "sal"))

	var channel poolbot.Announcer
	if adapter != nil {
		channel = channelAnnouncer{chat: adapter, channel: cfg.Chat.NoticeChannel, log: log}
	}
	// Notices about a request wait for the SAL lines about it queued
	// before them (sal.OrderedAnnouncer); each SAL line is copied to the
	// Slack mirror once delivered, before the notices that waited for it.
	ordered := sal.NewOrderedAnnouncer(st, slk.announcer(channel), log.With("component", "notices"))
	toMirror := slk.salDelivered()
	sender.Delivered = func(ctx context.Context, l store.OutboxLine) {
		if toMirror != nil {
			toMirror(ctx, l)
		}
		ordered.Delivered(ctx, l)
	}
	var announce poolbot.Announcer = ordered
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
	if err := metrics.attach(adapter, slk, proc); err != nil {
		return err
	}
	// Each person's commands are limited (chat.command_limit); refusals
	// over the limit are a counter, not rows in the audit trail. Not on
	// the console: its one operator is on the poolbot host, and scripts
	// feed it commands back to back.
	limiter := chat.NewCommandLimiter(cfg.Chat.CommandLimit, clock)
	if err := metrics.metrics.AddCommandLimiter(limiter.Limited); err != nil {
		return err
	}
	routerLimiter := limiter
	if opts.console {
		routerLimiter = nil
	}
	var observers []chat.Handler
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
		DryRun:            cfg.Procedure.DryRun,
		SALWritten:        sender.Wake,
		Limiter:           routerLimiter,
	}, operators, st, commands.Backends{
		Notifier: proc.engine, Reporter: proc.engine, Windows: proc.engine,
		Checker: proc.engine, Resumer: proc.engine, Watch: wat,
	}, clock, log.With("component", "commands"), observers...)

	// Shutdown goes in stages (shutdown.go): the procedure finishes or
	// parks its host step and releases the deploy block, the SAL outbox
	// is flushed, and only then do the chat adapters leave. The console
	// ends with its input; that ends poolbot the same way.
	//
	// The HTTP server (/metrics, /healthz) runs in the last stage, beside
	// the chat adapters, not among the workers: it keeps answering while
	// the host in progress finishes and the SAL outbox drains (the
	// outbox depth is what to watch then) and stops with chat, last. If it
	// fails, it ends poolbot like a chat adapter does.
	run := stages{flush: func(ctx context.Context) error {
		// Notices still held behind lines that could not be delivered
		// are said anyway, late rather than never.
		defer ordered.Release(ctx)
		return sender.Flush(ctx)
	}, flushTimeout: salFlushTimeout, log: log}
	if adapter != nil {
		run.chat = append(run.chat, adapter.Run)
	}
	run.chat = append(run.chat, slk.runners()...)
	if lead != nil {
		run.chat = append(run.chat, lead.httpRunner())
	} else {
		run.chat = append(run.chat, metrics.runners()...)
	}
	run.workers = append(run.workers, sender.Run, proc.engine.Run)
	run.workers = append(run.workers, proc.runners...)
	run.workers = append(run.workers, wat.Run)
	log.Info("poolbot started", "version", buildVersion(), "store", st.Path())
	err = run.run(ctx)
	log.Info("poolbot stopped")
	return lead.result(err)
}

func newIRC(cfg *config.Config, h chat.Handler, log *slog.Logger) (*bot.IRC, error) {
	// config.Load has read the password into the IRC section.
	return bot.NewIRC(*cfg.Chat.IRC, h, log.With("component", "irc")), nil
}

// newLogger builds the structured logger. Attributes whose key names a
// secret are redacted, whatever a caller passes; and every secret value
// given (configSecrets: what the config loads from files and the
// environment) is replaced by "[redacted]" wherever it appears: in the
// message and in the text of every attribute (strings, errors, anything
// else that prints it), so an error that quotes a password does not put it
// in the journal.
func newLogger(c config.Log, w io.Writer, secrets ...string) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	hopts := &slog.HandlerOptions{Level: level, ReplaceAttr: newRedactor(secrets).replace}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

// secretKeys are the words that make an attribute key a secret's.
var secretKeys = []string{"password", "passphrase", "token", "secret", "cookie", "authorization", "credential"}

// minSecretLen: shorter values are not scrubbed (no real secret is that
// short, and replacing every "ab" would make the log unreadable).
const minSecretLen = 4

// redactor is the logger's ReplaceAttr.
type redactor struct {
	values *strings.Replacer // nil: no secret values to scrub
}

func newRedactor(secrets []string) redactor {
	seen := map[string]bool{}
	var list []string
	for _, s := range secrets {
		// Each part trims a secret file its own way; scrub every form.
		for _, v := range []string{s, strings.TrimSpace(s), strings.TrimRight(s, "\r\n")} {
			if len(v) >= minSecretLen && !seen[v] {
				seen[v] = true
				list = append(list, v)
			}
		}
	}
	if len(list) == 0 {
		return redactor{}
	}
	// Longest first: where one secret contains another, the whole of it
	// goes (the Replacer tries its pairs in order at each position).
	slices.SortFunc(list, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	pairs := make([]string, 0, 2*len(list))
	for _, v := range list {
		pairs = append(pairs, v, "[redacted]")
	}
	return redactor{values: strings.NewReplacer(pairs...)}
}

func (r redactor) replace(_ []string, a slog.Attr) slog.Attr {
	k := strings.ToLower(a.Key)
	for _, s := range secretKeys {
		if strings.Contains(k, s) {
			return slog.String(a.Key, "REDACTED")
		}
	}
	if r.values == nil {
		return a
	}
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(r.values.Replace(a.Value.String()))
	case slog.KindAny:
		// An error, a Stringer, a struct or a slice: kept as it is unless
		// its text shows a secret; then it becomes that text, scrubbed.
		var text string
		switch v := a.Value.Any().(type) {
		case error:
			text = v.Error()
		case fmt.Stringer:
			text = v.String()
		default:
			text = fmt.Sprintf("%+v", v)
		}
		if scrubbed := r.values.Replace(text); scrubbed != text {
			a.Value = slog.StringValue(scrubbed)
		}
	}
	return a
}

// configSecrets returns the secret values the config names, read the way
// the parts that use them read them, for newLogger to scrub: the IRC SASL
// password and the Slack tokens (config.Load has read them), the SpiderPig
// cookie or token, the etcd password, and each service's registry
// password and SSH key passphrase. A secret that cannot be read is left
// out: the part that needs it reports that.
func configSecrets(cfg *config.Config) []string {
	var out []string
	if irc := cfg.Chat.IRC; irc != nil {
		out = append(out, irc.Password)
	}
	if sl := cfg.Chat.Slack; sl != nil {
		out = append(out, sl.AppToken, sl.BotToken)
	}
	if creds, err := cfg.Scap.SpiderPig.Credentials(); err == nil {
		out = append(out, creds.Cookie, creds.Token)
	}
	read := func(ref config.Secret) {
		if v, err := ref.Read(); err == nil {
			out = append(out, v)
		}
	}
	read(cfg.Conftool.Etcd.Password)
	for _, name := range slices.Sorted(maps.Keys(cfg.Services)) {
		svc := cfg.Services[name]
		read(svc.Registry.Auth.Password)
		read(svc.Restart.SSH.Passphrase)
	}
	return out
}
