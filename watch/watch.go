package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"poolbot"
	"poolbot/chat"
	"poolbot/integrations/conftool"
	"poolbot/integrations/logmsgbot"
	"poolbot/integrations/registry"
	"poolbot/requests"
	"poolbot/store"
)

// Service is one service the watch follows.
type Service struct {
	Name string
	// Datacenters are the configured datacenters (bounding metric labels).
	Datacenters []string
	// Hosts are the registry hosts of the restart plan, in order.
	Hosts []string
	// Instances returns the registry instances on a host.
	Instances func(host string) []registry.Instance
	// Registry runs the probe; nil leaves the service out of the periodic
	// probe (its registry section turns the probe off).
	Registry RegistryProber
}

// Deps are what the watch uses.
type Deps struct {
	Store *store.Store
	// Conftool is read through conftool.WatcherFor: etcd's long-poll watch,
	// or a poll every drift.poll_interval with confctl. Required when the
	// drift watch is enabled, unless Watcher is given.
	Conftool conftool.Client
	// Watcher overrides the watcher derived from Conftool.
	Watcher conftool.Watcher
	// OwnWrites is the record the procedure feeds (Deps.OwnWrites there);
	// nil makes a new one (then nothing is recorded as poolbot's own).
	OwnWrites *OwnWrites
	// Relay says which channel lines are logmsgbot's, for naming who made
	// a change; the zero value trusts none (drifts are "by whom unknown").
	Relay    logmsgbot.Relay
	Announce poolbot.Announcer
	// Notify wakes the procedure's worker of a service after the watch
	// queued a request (procedure.Engine.Notify).
	Notify func(service string)
	// SALWritten is called after SAL lines were queued (sal.Sender.Wake).
	SALWritten func()
	// Metrics is where the watch's metrics are registered; nil leaves
	// them unregistered.
	Metrics prometheus.Registerer
	Clock   clockwork.Clock
	// Log carries no component: the watch's parts name theirs (watch,
	// drift, probe, conftool).
	Log *slog.Logger
}

// Options are settings from other sections of the config.
type Options struct {
	// CommandPrefix is chat.command_prefix, for the commands notices suggest.
	CommandPrefix string
	// DryRun (procedure.dry_run): drifts are announced and recorded, but no
	// request and no SAL line is queued.
	DryRun bool
}

// Watch is the drift watch and the periodic registry probe.
type Watch struct {
	cfg      Config
	store    *store.Store
	clock    clockwork.Clock
	log      *slog.Logger
	services []Service
	drift    *DriftWatcher // nil when disabled
	prober   *Prober       // nil when disabled
	attr     *Attributor
	own      *OwnWrites
	metrics  *Metrics
}

// New builds the watch for services.
func New(cfg Config, deps Deps, opts Options, services []Service) (*Watch, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("watch: a store is required")
	}
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Notify == nil {
		deps.Notify = func(string) {}
	}
	if deps.SALWritten == nil {
		deps.SALWritten = func() {}
	}
	if deps.OwnWrites == nil {
		deps.OwnWrites = NewOwnWrites(deps.Clock, cfg.Drift.OwnWriteWindow())
	}
	if opts.CommandPrefix == "" {
		opts.CommandPrefix = "!"
	}
	metrics, err := NewMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	if cfg.Drift.Enabled {
		// Series exist at 0 from the start: an alert on increase() sees the
		// first drift, not only the second.
		for _, s := range services {
			for _, dc := range s.Datacenters {
				metrics.drifts.WithLabelValues(s.Name, dc)
			}
		}
	}
	for _, s := range services {
		if err := conftool.ValidateName("service", s.Name); err != nil {
			return nil, fmt.Errorf("watch: %w", err)
		}
	}
	// Each part names its own component (deps.Log carries none): a nested
	// With would repeat the key in every line.
	w := &Watch{cfg: cfg, store: deps.Store, clock: deps.Clock, log: deps.Log.With("component", "watch"), services: slices.Clone(services),
		own: deps.OwnWrites, metrics: metrics,
		attr: NewAttributor(deps.Relay, cfg.Drift.AttributionWindow, deps.Clock)}

	if cfg.Drift.Enabled {
		watcher := deps.Watcher
		if watcher == nil {
			if deps.Conftool == nil {
				return nil, errors.New("watch: the drift watch needs conftool")
			}
			watcher = conftool.WatcherFor(deps.Conftool, cfg.Drift.PollInterval,
				conftool.Options{Clock: deps.Clock, Logger: deps.Log})
		}
		w.drift = &DriftWatcher{cfg: cfg.Drift, watcher: watcher, own: w.own, attr: w.attr, store: deps.Store,
			announce: deps.Announce, notify: deps.Notify, salWritten: deps.SALWritten, metrics: metrics,
			clock: deps.Clock, log: deps.Log.With("component", "drift"), prefix: opts.CommandPrefix,
			dryRun: opts.DryRun, changes: requests.New(deps.Store, requests.Policy{DryRun: opts.DryRun}),
			svc: map[string]*serviceDrift{}}
		for _, s := range services {
			w.drift.svc[s.Name] = &serviceDrift{name: s.Name, dcs: slices.Clone(s.Datacenters),
				known: map[string]conftool.State{}}
		}
	}
	if cfg.Probe.Enabled {
		w.prober = &Prober{cfg: cfg.Probe, services: w.services, store: deps.Store, announce: deps.Announce,
			metrics: metrics, clock: deps.Clock, log: deps.Log.With("component", "probe"), prefix: opts.CommandPrefix}
	}
	return w, nil
}

// OwnWrites is the record of poolbot's own conftool writes, for
// procedure.Deps.OwnWrites.
func (w *Watch) OwnWrites() *OwnWrites { return w.own }

// Observer is the chat observer that reads conftool's and the discovery
// cookbook's !log lines to name who made a drift.
func (w *Watch) Observer() chat.Handler { return w.attr }

// Run runs the enabled parts until ctx ends.
func (w *Watch) Run(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	run := func(f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	if w.drift != nil {
		run(w.drift.Run)
	}
	if w.prober != nil {
		run(w.prober.Run)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// probed reports whether the periodic probe covers service.
func (w *Watch) probed(service string) bool {
	return slices.ContainsFunc(w.services, func(s Service) bool { return s.Name == service && s.probed() })
}

func (s Service) probed() bool { return s.Registry != nil && s.Instances != nil }

// Status lines for !status.
const (
	statusDriftLookback = 24 * time.Hour
	statusDriftMax      = 3
)

// StatusLines is what !status shows for service: the latest probe of each
// registry instance, in one line, and drifts of the last day:
//
//	probes: registry1/restricted ok 02m 00s ago; registry2/ml FAILING BLOB_UPLOAD_UNKNOWN at handoff x3 since 14:02 UTC (last 00m 00s ago)
//	drift: 14:03 UTC apus/codfw pooled=false changed outside poolbot (by jdoe@cumin1003) → #13
func (w *Watch) StatusLines(ctx context.Context, service string) ([]string, error) {
	if !slices.ContainsFunc(w.services, func(s Service) bool { return s.Name == service }) {
		return nil, nil
	}
	now := w.clock.Now()
	var lines []string
	if w.prober != nil && w.probed(service) {
		states, err := w.store.ProbeStates(ctx, service)
		if err != nil {
			return nil, err
		}
		if len(states) == 0 {
			lines = append(lines, fmt.Sprintf("probes: none yet (every %s)", poolbot.FormatDuration(w.cfg.Probe.Interval)))
		} else {
			parts := make([]string, 0, len(states))
			for _, s := range states {
				parts = append(parts, probeSummary(s, now, w.cfg.Probe.FailuresBeforeNotice))
			}
			lines = append(lines, "probes: "+strings.Join(parts, "; "))
		}
	}
	if w.drift != nil {
		drifts, err := w.store.RecentDrifts(ctx, service, now.Add(-statusDriftLookback), statusDriftMax)
		if err != nil {
			return nil, err
		}
		if len(drifts) > 0 {
			parts := make([]string, 0, len(drifts))
			for _, d := range drifts {
				p := d.At.UTC().Format("15:04 UTC") + " " + d.Detail
				switch {
				case d.RequestID != 0:
					p += " → " + d.RequestID.String()
				case d.Mode == ModePropose:
					p += " → restart proposed"
				}
				parts = append(parts, p)
			}
			lines = append(lines, "drift (last 24h): "+strings.Join(parts, "; "))
		}
		if line, ok := w.drift.pendingLine(service, now); ok {
			lines = append(lines, line)
		}
		if err, at := w.drift.watchError(service); err != nil {
			lines = append(lines, fmt.Sprintf("drift watch: conftool error %s ago (%s); it retries, and reports a change it missed when it resyncs",
				ago(now.Sub(at)), truncate(err.Error(), 160)))
		}
	}
	return lines, nil
}

// probeSummary is "registry1/restricted ok 02m 00s ago" or "registry2/ml
// FAILING BLOB_UPLOAD_UNKNOWN at handoff x3 since 14:02 UTC (last 00m 00s
// ago)": the step says whether the host failed its own write (start_upload
// … fetch_blob) or could not see what another host wrote (handoff,
// read_peer; read_balancer for the balancer).
func probeSummary(s store.ProbeState, now time.Time, threshold int) string {
	label := instanceLabel(s.Host, s.Instance)
	if s.OK {
		return fmt.Sprintf("%s ok %s ago", label, ago(now.Sub(s.At)))
	}
	word := "FAILING"
	if s.ConsecutiveFailures < threshold {
		word = "failed"
	}
	return fmt.Sprintf("%s %s %s at %s x%d since %s (last %s ago)", label, word, s.Code, s.Step, s.ConsecutiveFailures,
		s.FailingSince.UTC().Format("15:04 UTC"), ago(now.Sub(s.At)))
}

// ago is how long ago, in the one duration style (poolbot.FormatDuration):
// "00m 45s", "1h 02m 00s"; never negative.
func ago(d time.Duration) string { return poolbot.FormatDuration(max(d, 0).Round(time.Second)) }
