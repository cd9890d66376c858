package procedure

import (
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/integrations/calendar"
	"poolbot/integrations/conftool"
	"poolbot/integrations/registry"
	"poolbot/integrations/restart"
	"poolbot/integrations/scap"
	"poolbot/store"
)

// Calendar is the deployment calendar as last fetched. An error means the
// calendar cannot be read (not fetched yet, or stale): the gate is closed.
type Calendar interface {
	Schedule() (calendar.Schedule, time.Time, error)
}

// Service is one service the procedure manages.
type Service struct {
	Name        string
	Datacenters []string
	// Plan is the restart plan: hosts in order, units, pace, timeouts.
	Plan restart.Plan
	// Executor runs the restart commands on the hosts.
	Executor restart.Executor
	// Registry checks the instances after each host.
	Registry registry.Checker
	// Instances returns the registry instances that run on a host and must
	// be healthy after it is restarted.
	Instances func(host string) []registry.Instance
	// Probe runs the write-then-read blob probe on each instance after its
	// host is restarted.
	Probe bool
	// HostsQuery is the cumin query the plan's hosts came from (empty for
	// a static list); Lister resolves it again for !check, which says when
	// it now selects nothing or other hosts. Restarts use Plan.Hosts, the
	// hosts resolved at start-up.
	HostsQuery string
	Lister     restart.HostLister
	// DNS, when set, waits for the discovery record to follow the
	// conftool change before the restarts, and checks each host before
	// its restart (dns.go).
	DNS *ServiceDNS
	// Drain selects the load-balancer pools a host is depooled from around
	// its restart (hoststep.go); none: no drain.
	Drain Drain
}

// Config tunes the procedure.
type Config struct {
	// DryRun runs every read-only step for real and announces each
	// mutating step as DRY-RUN instead of doing it. No SAL lines are sent.
	DryRun bool
	// MaxWait is how long a request may wait for its gates before it
	// expires.
	MaxWait time.Duration
	// LeadMargin and TailMargin widen the operation's estimated span when
	// it is compared with deployment windows: no window may start within
	// TailMargin after the estimated end, nor have ended less than
	// LeadMargin before the start.
	LeadMargin, TailMargin time.Duration
	// PerHostEstimate is the time one host is expected to take (restart,
	// health, probe) until history says otherwise.
	PerHostEstimate time.Duration
	// ScapPoll is how often a request blocked only by scap re-probes it.
	// F_GETLK costs microseconds, so this can be short; it bounds how late
	// a lock release is noticed.
	ScapPoll time.Duration
	// ResumeAfterCrash is "auto" (an interrupted request continues from
	// its stored step) or "ask" (it is parked until !resume or !cancel).
	ResumeAfterCrash string
	// Health tunes the wait for registry health after each host; zero
	// values take the registry section's health settings.
	Health registry.WaitOptions
	// ForceNeedsConfirm: a !force counts only after !confirm.
	ForceNeedsConfirm bool
	// SilenceFailClosed: with Alertmanager unreachable a host is not
	// restarted (true, the default in config) rather than restarted with
	// a loud notice.
	SilenceFailClosed bool
	// Locks are the spicerack locks honoured (locks.go).
	Locks LockSpecs
}

// Deps are the outside systems and local parts the procedure uses.
type Deps struct {
	Store *store.Store
	// Calendar may be nil only when the config says so explicitly
	// (calendar.source: none); the gate is then reported as disabled.
	Calendar Calendar
	Scap     scap.ActivityChecker
	Blocker  scap.Blocker
	Conftool conftool.Client
	// OwnWrites, when set, is told of each conftool write before it is
	// made (Intend), and of what it left once known (Record, with the
	// modifiedIndex written; Forget when it did not land), so the drift
	// watch does not take poolbot's own change for one made outside
	// poolbot, whatever happened to the write's answer.
	OwnWrites interface {
		Intend(service, datacenter string, pooled bool)
		Record(service, datacenter string, st conftool.State)
		Forget(service, datacenter string, pooled bool)
	}
	// Announce says notices in the operations channel (and mirrors them
	// to Slack).
	Announce poolbot.Announcer
	// SALWritten is called after SAL lines were queued, so the sender
	// delivers them at once.
	SALWritten func()
	Clock      clockwork.Clock
	Log        *slog.Logger

	// Nodes reads and changes conftool node objects for the per-host
	// drain (either conftool backend); needed only with Service.Drain.
	Nodes NodePools
	// Silencer silences each host in Alertmanager around its restart;
	// nil when no Alertmanager is configured.
	Silencer Silencer
	// Locks takes and checks spicerack's locks; nil when disabled.
	Locks Locks
	// Unlocks notices `scap lock --unlock-all` while the deploy block is
	// held (breakglass.go); nil: not watched.
	Unlocks UnlockWatcher

	// Metrics, when set, receives gate states and host restart durations
	// for /metrics (see metrics.go).
	Metrics Metrics
}
