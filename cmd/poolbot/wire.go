package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/chat"
	"poolbot/config"
	"poolbot/integrations/calendar"
	"poolbot/integrations/conftool"
	"poolbot/integrations/dns"
	"poolbot/integrations/logmsgbot"
	"poolbot/integrations/registry"
	"poolbot/integrations/restart"
	"poolbot/integrations/scap"
	"poolbot/procedure"
	"poolbot/store"
)

// procedureParts is the procedure engine with what must run beside it.
type procedureParts struct {
	engine *procedure.Engine
	// runners run until ctx ends (calendar refresh, change fan-out).
	runners []func(ctx context.Context) error
	// observer sees every chat message (scap's lines from logmsgbot).
	observer chat.Handler
	// calendar is the cached deployment calendar; nil with source none.
	calendar *calendar.Cached
	// services and conftool are what the watch follows (wire_watch.go).
	services []*procedure.Service
	conftool conftool.Client
}

// channelAnnouncer says notices in one channel through a chat adapter.
type channelAnnouncer struct {
	chat    chat.Sayer
	channel string
	log     *slog.Logger
}

// Announce says n as one line (IRC splits a long one). Notices are about
// operators' requests: they go out in the operators' class
// (chat.PriorityOperator), after SAL lines, ahead of other replies.
func (a channelAnnouncer) Announce(ctx context.Context, n poolbot.Notice) {
	ctx = chat.WithPriority(ctx, chat.PriorityOperator)
	if err := a.chat.Say(ctx, a.channel, n.String()); err != nil {
		a.log.Warn("notice not delivered", "channel", a.channel, "err", err)
	}
}

// buildProcedure builds every integration from the config and the engine
// that uses them.
func buildProcedure(ctx context.Context, cfg *config.Config, st *store.Store, clock clockwork.Clock,
	log *slog.Logger, announce poolbot.Announcer, salWritten func(), hooks ...func(*procedure.Deps)) (*procedureParts, error) {
	parts := &procedureParts{}
	deps := procedure.Deps{Store: st, Announce: announce, SALWritten: salWritten, Clock: clock,
		Log: log.With("component", "procedure")}

	var cached *calendar.Cached
	if cfg.Calendar.Source != config.CalendarNone {
		opts := calendar.Options{Clock: clock, Logger: log.With("component", "calendar")}
		src, err := calendar.NewSource(cfg.Calendar, opts)
		if err != nil {
			return nil, err
		}
		cached, err = calendar.NewCached(src, cfg.Calendar.RefreshInterval, cfg.Calendar.MaxAge, opts)
		if err != nil {
			return nil, err
		}
		deps.Calendar, parts.calendar = cached, cached
		parts.runners = append(parts.runners, cached.Run)
	} else {
		log.Warn("calendar gate disabled by configuration (calendar.source: none)")
	}

	relay := logmsgbot.New(cfg.LogMsgBot)
	if relay.NickOnly() && (cfg.Scap.Channel.ChannelEnabled() || cfg.Watch.Drift.Enabled) {
		// Anyone can take a nick: a forged "Finished scap" line would open
		// the scap gate early, a forged conftool line would blame someone.
		log.Warn("logmsgbot.accounts is empty: relayed lines are trusted by the relay's nick alone; set the relay's services account",
			"nicks", cfg.LogMsgBot.Nicks)
	}
	sc, err := scap.New(cfg.Scap, scap.Options{Clock: clock, Logger: log, Relay: relay})
	if err != nil {
		return nil, err
	}
	deps.Scap, deps.Blocker = sc.Monitor, sc.Blocker

	deps.Conftool, err = conftool.New(cfg.Conftool, conftool.Options{Clock: clock, Logger: log}) // conftool names its component
	if err != nil {
		return nil, err
	}

	var services []*procedure.Service
	for _, name := range slices.Sorted(maps.Keys(cfg.Services)) {
		sc := cfg.Services[name]
		ropts := restart.Options{Clock: clock, Logger: log.With("component", "restart", "service", name)}
		exec, err := restart.NewExecutor(sc.Restart, ropts)
		if err != nil {
			return nil, fmt.Errorf("services.%s.restart: %w", name, err)
		}
		lister, err := restart.NewHostLister(sc.Restart, ropts)
		if err != nil {
			return nil, fmt.Errorf("services.%s.restart: %w", name, err)
		}
		plan, err := restart.NewPlan(ctx, sc.Restart, lister)
		if err != nil {
			return nil, fmt.Errorf("services.%s.restart: %w", name, err)
		}
		reg, err := registry.New(sc.Registry, registry.Options{Clock: clock, Logger: log.With("component", "registry", "service", name)})
		if err != nil {
			return nil, fmt.Errorf("services.%s.registry: %w", name, err)
		}
		svc := &procedure.Service{Name: name, Datacenters: sc.Datacenters, Plan: plan,
			Executor: exec, Registry: reg, Instances: sc.Registry.InstancesOn, Probe: sc.Registry.Probe.Enabled,
			HostsQuery: sc.Restart.HostsQuery, Lister: lister,
			Drain: procedure.Drain{Pools: sc.Drain.Pools, Period: sc.Drain.Period}}
		if sc.DNS != nil {
			checker, err := dns.New(*sc.DNS, clock)
			if err != nil {
				return nil, fmt.Errorf("services.%s.dns: %w", name, err)
			}
			svc.DNS = &procedure.ServiceDNS{Checker: checker}
			if sc.DNS.HostCheckOrDefault() {
				// Every executor runs commands: the host is asked the way
				// it is restarted.
				svc.DNS.Hosts = dns.ExecutorRunner{Executor: exec}
			}
		}
		services = append(services, svc)
	}
	guards, err := buildGuards(cfg, deps.Conftool, clock, log)
	if err != nil {
		return nil, err
	}
	deps.Nodes, deps.Silencer, deps.Locks, deps.Unlocks = guards.nodes, guards.silencer, guards.locks, guards.unlocks

	// Hooks add optional dependencies (the metrics of /metrics).
	for _, hook := range hooks {
		hook(&deps)
	}
	engine, err := procedure.New(procedure.Config{
		DryRun:            cfg.Procedure.DryRun,
		MaxWait:           cfg.Procedure.MaxWait,
		LeadMargin:        cfg.Calendar.LeadMargin,
		TailMargin:        cfg.Calendar.TailMargin,
		PerHostEstimate:   cfg.Procedure.PerHostEstimate,
		ScapPoll:          cfg.Procedure.ScapPoll,
		ResumeAfterCrash:  cfg.Procedure.ResumeAfterCrash,
		ForceNeedsConfirm: cfg.Force.NeedsConfirm(),
		SilenceFailClosed: cfg.Alertmanager.FailClosedOrDefault(),
		Locks:             guards.specs,
	}, deps, services)
	if err != nil {
		return nil, err
	}
	parts.engine = engine
	parts.services, parts.conftool = services, deps.Conftool

	// A changed calendar can open or close a gate: re-evaluate.
	if cached != nil {
		parts.runners = append(parts.runners, func(ctx context.Context) error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-cached.Changed():
					engine.NotifyAll()
				}
			}
		})
	}
	// A "Finished scap …" line relayed by logmsgbot clears the scap gate
	// at once, without waiting for the next probe.
	if sc.Tracker != nil {
		parts.observer = chat.HandlerFunc(func(_ context.Context, m chat.Message, _ chat.Replier) {
			if m.Private() {
				return
			}
			from := logmsgbot.Sender{Network: m.Network, Nick: m.Nick, Account: m.Account}
			if ev, ok := sc.Tracker.Observe(from, m.Text); ok && ev.Ends() {
				engine.NotifyAll()
			}
		})
	}
	return parts, nil
}
