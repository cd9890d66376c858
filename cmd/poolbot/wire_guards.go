package main

import (
	"log/slog"

	"github.com/jonboulle/clockwork"

	"poolbot/config"
	"poolbot/integrations/alertmanager"
	"poolbot/integrations/conftool"
	"poolbot/integrations/scap"
	"poolbot/integrations/spicerack"
	"poolbot/procedure"
)

// guardParts are what each host step and conftool change is guarded by
// (issue 15): node objects for the drain, Alertmanager silences,
// spicerack's locks, and the break-glass watch on the deploy block.
type guardParts struct {
	nodes    procedure.NodePools
	silencer procedure.Silencer
	locks    procedure.Locks
	specs    procedure.LockSpecs
	unlocks  procedure.UnlockWatcher
}

func buildGuards(cfg *config.Config, ct conftool.Client, clock clockwork.Clock, log *slog.Logger) (guardParts, error) {
	var g guardParts
	kv, _ := ct.(*conftool.Etcd) // config requires the etcd backend for locks
	switch b := ct.(type) {
	case *conftool.Etcd:
		g.nodes = b
	case *conftool.Confctl:
		g.nodes = b
	}
	if cfg.Alertmanager.Enabled() {
		am, err := alertmanager.New(cfg.Alertmanager, alertmanager.Options{Clock: clock, Logger: log})
		if err != nil {
			return g, err
		}
		g.silencer = am
		if !cfg.Alertmanager.FailClosedOrDefault() {
			log.Warn("alertmanager.fail_closed is false: with Alertmanager unreachable, hosts are restarted without a silence")
		}
	}
	if cfg.SpicerackLocks.Enabled && kv != nil {
		l, err := spicerack.New(kv, spicerack.Options{Owner: cfg.SpicerackLocks.Owner, Clock: clock, Logger: log})
		if err != nil {
			return g, err
		}
		g.locks = l
		g.specs = procedure.LockSpecs{ServiceRoute: cfg.SpicerackLocks.ServiceRoute(), RegistryRestart: cfg.SpicerackLocks.RegistryRestart()}
	}
	if cfg.Scap.DeployBlock.Backend == scap.BackendLockfile {
		g.unlocks = scap.NewUnlockWatcher(scap.UnlockWatchOptions{Dir: cfg.Scap.DeployBlock.UnlockSignalDir,
			Clock: clock, Logger: log.With("component", "scap-unlock")})
	}
	return g, nil
}
