// Package commands turns chat lines into poolbot actions: the grammar
// (prefix, address by nick, private message), the command table that both
// dispatches and generates !help, authorization (operators by verified
// account, never by nick), and the handlers, which validate and store
// requests. Executing requests is the procedure's job; the command layer
// only records what operators asked for and wakes the procedure.
package commands

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/chat"
	"poolbot/requests"
	"poolbot/store"
)

// Notifier is told when the queue of a service changed (a request was
// queued, cancelled, forced or confirmed) so it can re-evaluate at once.
type Notifier interface {
	Notify(service string)
}

// Reporter explains the world for !status: the pooled state of a service,
// why a pending request waits, where a running one is (host n/N, estimated
// end), and the failed requests an operator still has to act on.
type Reporter interface {
	PoolState(ctx context.Context, service string) (string, error)
	Blockers(ctx context.Context, r poolbot.Request) (string, error)
	Progress(ctx context.Context, r poolbot.Request) (string, error)
	Attention(ctx context.Context, service string) ([]string, error)
}

// WindowLister answers !windows.
type WindowLister interface {
	Windows(ctx context.Context, service string) ([]string, error)
}

// Checker answers !check: read-only health and probe of every registry
// instance of a service.
type Checker interface {
	Check(ctx context.Context, service string) ([]string, error)
}

// Resumer continues a parked request (!resume).
type Resumer interface {
	Resume(ctx context.Context, id poolbot.RequestID, operator string, origin poolbot.Origin) (string, error)
}

// WatchReporter adds the watch's view to !status: the latest registry
// probe per instance and recent drifts (watch.Watch implements it).
type WatchReporter interface {
	StatusLines(ctx context.Context, service string) ([]string, error)
}

// Backends are the parts of poolbot the command layer reports on or hands
// work to. Any may be nil; the commands that need a missing one say they
// are not available instead of pretending.
type Backends struct {
	Notifier Notifier
	Reporter Reporter
	Windows  WindowLister
	Checker  Checker
	Resumer  Resumer
	Watch    WatchReporter
}

// Options configure the command layer.
type Options struct {
	// Prefix starts a command in a channel, "!" by default.
	Prefix string
	// Nick returns the bot's current nick, for "poolbot: status".
	Nick func() string
	// Services maps each service poolbot manages to its datacenters, in
	// the order they are shown.
	Services map[string][]string
	// ForceNeedsConfirm makes !force wait for a second operator's !confirm.
	ForceNeedsConfirm bool
	// ConfirmWindow is how long a !force waits for its !confirm.
	ConfirmWindow time.Duration
	// DryRun (procedure.dry_run): commands still record their decisions,
	// but queue no SAL lines, like the procedure in that mode.
	DryRun bool
	// SALWritten is called after a command queued SAL lines (!force,
	// !confirm), so the sender delivers them at once rather than at its
	// next poll.
	SALWritten func()
	// Limiter, when set, limits the commands of each identity (chat.Identity);
	// commands over the limit are answered once, then ignored: not run,
	// not answered, not recorded (chat.CommandLimiter counts them).
	Limiter *chat.CommandLimiter
}

// Router implements chat.Handler for every chat adapter.
type Router struct {
	opts      Options
	operators *Operators
	store     *store.Store
	changes   *requests.Changes
	backends  Backends
	observers []chat.Handler
	clock     clockwork.Clock
	log       *slog.Logger
	table     []*command
}

// NewRouter returns the command layer. observers see every message (the
// scap channel watcher reads logmsgbot's lines through one).
func NewRouter(opts Options, ops *Operators, st *store.Store, backends Backends, clock clockwork.Clock, log *slog.Logger, observers ...chat.Handler) *Router {
	if opts.Prefix == "" {
		opts.Prefix = "!"
	}
	if opts.Nick == nil {
		opts.Nick = func() string { return "poolbot" }
	}
	if opts.SALWritten == nil {
		opts.SALWritten = func() {}
	}
	if opts.ConfirmWindow <= 0 {
		opts.ConfirmWindow = 10 * time.Minute
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Router{opts: opts, operators: ops, store: st, backends: backends,
		observers: observers, clock: clock, log: log,
		changes: requests.New(st, requests.Policy{DryRun: opts.DryRun, ForceNeedsConfirm: opts.ForceNeedsConfirm,
			ConfirmWindow: opts.ConfirmWindow, Prefix: opts.Prefix})}
	r.table = r.commands()
	return r
}

// SetBackends plugs in the procedure and integrations once they exist.
// It must be called before the adapters start.
func (r *Router) SetBackends(b Backends) { r.backends = b }

// call is one command being handled.
type call struct {
	ctx      context.Context
	msg      chat.Message
	reply    chat.Replier
	inv      Invocation
	operator string // set for operator commands after authorization
	// reasonNote says how the reason was cleaned ("" when it was stored
	// as typed); said after the command succeeded.
	reasonNote string
}

// actor is who made the call, for the audit trail.
func (c *call) actor() requests.Actor {
	return requests.Actor{Name: c.operator, Origin: c.origin()}
}

func (c *call) origin() poolbot.Origin {
	return poolbot.Origin{Network: c.msg.Network, Account: c.msg.Account, Nick: c.msg.Nick, Channel: c.msg.Channel}
}

func (c *call) say(format string, args ...any) {
	if err := c.reply.Reply(c.ctx, fmt.Sprintf(format, args...)); err != nil {
		// Nothing more to do: the adapter logs its own failures, and a
		// reply is not durable state.
		_ = err
	}
}

// HandleMessage implements chat.Handler.
func (r *Router) HandleMessage(ctx context.Context, m chat.Message, rep chat.Replier) {
	for _, o := range r.observers {
		o.HandleMessage(ctx, m, rep)
	}
	inv, ok := Parse(m.Text, r.opts.Prefix, r.opts.Nick(), m.Private())
	if !ok {
		return
	}
	if r.opts.Limiter != nil {
		if ok, tell := r.opts.Limiter.Allow(chat.Identity(m)); !ok {
			if tell {
				r.log.Warn("commands rate-limited", "network", m.Network, "account", m.Account, "nick", m.Nick)
				_ = rep.Reply(ctx, r.opts.Limiter.RateLimitedReply())
			}
			return
		}
	}
	// An operator's answers go ahead of everyone else's in the output
	// queue (SAL lines still go first): chat.PriorityOperator.
	if _, refusal := r.operators.Identify(m); refusal == "" {
		ctx = chat.WithPriority(ctx, chat.PriorityOperator)
	}
	cmd := r.lookup(inv.Name)
	if cmd == nil {
		if inv.Addressed {
			_ = rep.Reply(ctx, fmt.Sprintf("unknown command %q; try %shelp", inv.Name, r.opts.Prefix))
		}
		return
	}
	c := &call{ctx: ctx, msg: m, reply: rep, inv: inv}
	if cmd.operator {
		op, refusal := r.operators.Identify(m)
		if refusal != "" {
			r.log.Warn("command refused", "command", cmd.name, "network", m.Network,
				"account", m.Account, "nick", m.Nick, "reason", refusal)
			r.audit(c, "refused", cmd.name+": "+refusal)
			c.say("%s", refusal)
			return
		}
		c.operator = op
	}
	if cmd.unavailable != nil {
		if why := cmd.unavailable(); why != "" {
			c.say("%s%s is not available: %s", r.opts.Prefix, cmd.name, why)
			return
		}
	}
	r.log.Info("command", "command", cmd.name, "network", m.Network, "account", m.Account,
		"nick", m.Nick, "channel", m.Channel, "operator", c.operator)
	if err := cmd.run(c); err != nil {
		r.log.Warn("command failed", "command", cmd.name, "err", err)
		r.replyError(c, err)
	} else if c.reasonNote != "" {
		c.say("%s", c.reasonNote)
	}
}

// audit records something that is not about one request (a refusal) in
// the audit trail. A failure to record it is logged, not fatal.
func (r *Router) audit(c *call, kind, detail string) {
	actor := c.operator
	if actor == "" {
		actor = "unknown"
	}
	err := r.store.Tx(c.ctx, func(tx *store.Tx) error {
		return tx.AddEvent(poolbot.Event{Actor: actor, Origin: c.origin(), Kind: kind, Detail: detail})
	})
	if err != nil {
		r.log.Error("audit event not stored", "kind", kind, "err", err)
	}
}

func (r *Router) lookup(name string) *command {
	for _, c := range r.table {
		if c.name == name || slices.Contains(c.aliases, name) {
			return c
		}
	}
	return nil
}

// serviceNames returns the configured services, sorted.
func (r *Router) serviceNames() []string {
	names := make([]string, 0, len(r.opts.Services))
	for s := range r.opts.Services {
		names = append(names, s)
	}
	slices.Sort(names)
	return names
}

func (r *Router) checkService(svc string) error {
	if _, ok := r.opts.Services[svc]; !ok {
		return fmt.Errorf("unknown service %q (known: %s)", svc, strings.Join(r.serviceNames(), ", "))
	}
	return nil
}

func (r *Router) checkDatacenter(svc, dc string) error {
	dcs := r.opts.Services[svc]
	if !slices.Contains(dcs, dc) {
		return fmt.Errorf("unknown datacenter %q for %s (known: %s)", dc, svc, strings.Join(dcs, ", "))
	}
	return nil
}

func (r *Router) notify(service string) {
	if r.backends.Notifier != nil {
		r.backends.Notifier.Notify(service)
	}
}
