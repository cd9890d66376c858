package main

import (
	"log/slog"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"poolbot"
	"poolbot/config"
	"poolbot/integrations/logmsgbot"
	"poolbot/procedure"
	"poolbot/store"
	"poolbot/watch"
)

// ownWritesHook makes the procedure record its own conftool writes for the
// drift watch (a buildProcedure option).
func ownWritesHook(own *watch.OwnWrites) func(*procedure.Deps) {
	return func(d *procedure.Deps) { d.OwnWrites = own }
}

// buildWatch builds the drift watch and the periodic registry probe over
// the services, hosts, registry clients and conftool client the procedure
// uses. own must be the record passed to buildProcedure.
func buildWatch(cfg *config.Config, st *store.Store, clock clockwork.Clock, log *slog.Logger, proc *procedureParts,
	own *watch.OwnWrites, announce poolbot.Announcer, salWritten func(), reg prometheus.Registerer) (*watch.Watch, error) {
	services := make([]watch.Service, 0, len(proc.services))
	for _, s := range proc.services {
		ws := watch.Service{Name: s.Name, Datacenters: s.Datacenters, Hosts: s.Plan.Hosts}
		if cp, ok := s.Registry.(watch.RegistryProber); ok && s.Probe {
			// registry.probe.enabled covers the periodic probe too.
			ws.Instances, ws.Registry = s.Instances, cp
		}
		services = append(services, ws)
	}
	var ann poolbot.Announcer
	if announce != nil {
		ann = announce
	}
	return watch.New(cfg.Watch, watch.Deps{Store: st, Conftool: proc.conftool, OwnWrites: own, Announce: ann,
		Relay:  logmsgbot.New(cfg.LogMsgBot),
		Notify: proc.engine.Notify, SALWritten: salWritten, Metrics: reg, Clock: clock,
		Log: log},
		watch.Options{CommandPrefix: cfg.Chat.CommandPrefix, DryRun: cfg.Procedure.DryRun}, services)
}

// registry is where other parts register their metrics.
func (p *monitoringParts) registry() prometheus.Registerer { return p.metrics.Registry() }
