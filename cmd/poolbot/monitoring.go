package main

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"poolbot/config"
	"poolbot/internal/monitoring"
	"poolbot/procedure"
	"poolbot/store"
)

// monitoringParts are /metrics and /healthz: the metrics (in a private registry
// other parts register into too) and, when http.listen asks for it, the
// listener. Nil methods are safe on a nil *monitoringParts.
type monitoringParts struct {
	metrics *monitoring.Monitor
	ln      net.Listener // nil: no HTTP server
	log     *slog.Logger
}

// newMonitoring creates the metrics and opens the HTTP listener at once, so a
// taken or bad http.listen stops poolbot before it connects anywhere.
func newMonitoring(ctx context.Context, cfg *config.Config, console bool, st *store.Store, log *slog.Logger) (*monitoringParts, error) {
	m, err := monitoring.New(monitoring.Options{Registry: prometheus.NewRegistry(), Store: st,
		Services: slices.Sorted(maps.Keys(cfg.Services)), Version: buildVersion(),
		Logger: log.With("component", "http")})
	if err != nil {
		return nil, err
	}
	p := &monitoringParts{metrics: m, log: log.With("component", "http")}
	if addr := cfg.HTTP.ListenAddr(console); addr != "" {
		if p.ln, err = monitoring.Listen(ctx, addr); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// procedureHook passes the metrics to the procedure (a buildProcedure
// option).
func (p *monitoringParts) procedureHook(d *procedure.Deps) { d.Metrics = p.metrics }

// attach adds each chat connection's state (IRC or the console, and
// Slack) and the calendar's last fetch, and creates every host's restart
// series at zero.
func (p *monitoringParts) attach(chat chatAdapter, slk *slackParts, proc *procedureParts) error {
	for _, svc := range proc.services {
		p.metrics.SeedHosts(svc.Name, svc.Plan.Hosts)
	}
	if chat != nil {
		network, connected := "console", func() bool { return true }
		if c, ok := chat.(interface{ Connected() bool }); ok {
			network, connected = "irc", c.Connected
		}
		if err := p.metrics.AddChat(network, connected); err != nil {
			return err
		}
	}
	if slk != nil {
		if err := p.metrics.AddChat("slack", slk.adapter.Connected); err != nil {
			return err
		}
	}
	if proc.calendar != nil {
		cal := proc.calendar
		return p.metrics.AddCalendar(func() time.Time {
			// The fetch time comes back with a stale schedule too; only
			// before the first success is it zero.
			_, fetched, _ := cal.Schedule()
			return fetched
		})
	}
	return nil
}

// runners serve HTTP until ctx ends. runDaemon runs them in the last
// shutdown stage, with the chat adapters, so /healthz and /metrics answer
// until after the SAL flush.
func (p *monitoringParts) runners() []func(context.Context) error {
	if p.ln == nil {
		return nil
	}
	return []func(context.Context) error{func(ctx context.Context) error {
		return monitoring.Serve(ctx, p.ln, p.metrics.Handler(), p.log)
	}}
}

// close releases the listener if the server never ran.
func (p *monitoringParts) close() {
	if p.ln != nil {
		_ = p.ln.Close()
	}
}
