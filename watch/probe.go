package watch

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/integrations/registry"
	"poolbot/store"
)

// maxProbeErrorBytes bounds the failure text kept per instance: room for
// the failing request, both hosts and the registry's answer quoted.
const maxProbeErrorBytes = 600

// RegistryProber runs the write-then-read probe across hosts
// (registry.Client does).
type RegistryProber interface {
	ProbeAcross(ctx context.Context, inst registry.Instance, opts registry.ProbeOptions) registry.ProbeResult
}

// Prober runs the periodic write-then-read probe of every registry
// instance of every service across its hosts: each round writes one blob
// per instance name on one host, continues an upload on the same instance
// of every other host and reads the blob there and through the balancer
// (registry.ProbeAcross), so that hosts whose registries use different
// apus sites fail it (T422166; a probe of each host alone passes on both).
// It keeps each instance's latest result in the store (the balancer's
// under its host[:port]), exports metrics, and says one notice when an
// instance has failed FailuresBeforeNotice probes in a row, quoting the
// failure, and one when it passes again.
type Prober struct {
	cfg      ProbeConfig
	services []Service
	store    *store.Store
	announce poolbot.Announcer
	metrics  *Metrics
	clock    clockwork.Clock
	log      *slog.Logger
	prefix   string
}

// Run probes every Interval (the first round at once) until ctx ends. A
// round still running when the next is due delays it rather than
// overlapping it.
func (p *Prober) Run(ctx context.Context) error {
	sched, err := gocron.NewScheduler(gocron.WithClock(p.clock), gocron.WithLocation(time.UTC),
		gocron.WithLogger(gocronLogger{p.log}))
	if err != nil {
		return fmt.Errorf("watch: probe scheduler: %w", err)
	}
	_, err = sched.NewJob(gocron.DurationJob(p.cfg.Interval), gocron.NewTask(p.Round, ctx),
		gocron.WithName("registry-probe"), gocron.WithSingletonMode(gocron.LimitModeReschedule),
		gocron.WithStartAt(gocron.WithStartImmediately()))
	if err != nil {
		return fmt.Errorf("watch: probe job: %w", err)
	}
	sched.Start()
	<-ctx.Done()
	if err := sched.Shutdown(); err != nil {
		p.log.Warn("stopping the probe scheduler", "err", err)
	}
	return nil
}

// noticeKind is what a probe result says to the channel.
type noticeKind int

const (
	noticeNone noticeKind = iota
	noticeFailing
	noticeRecovered
)

// advanceProbe is the next stored state of an instance after a probe
// result, and the notice it calls for: the failure notice exactly when the
// streak reaches threshold with none out yet, the recovery notice exactly
// when a probe passes while a failure notice is out.
func advanceProbe(prev store.ProbeState, res registry.ProbeResult, now time.Time, threshold int) (store.ProbeState, noticeKind) {
	next := prev
	next.At, next.OK, next.Code, next.Step, next.Status = now, res.OK, metricCode(res.Code), res.Step, res.Status
	next.Duration = res.Duration
	next.Error = ""
	if res.OK {
		next.ConsecutiveFailures, next.FailingSince, next.LastOK = 0, time.Time{}, now
		if prev.Notified {
			next.Notified = false
			return next, noticeRecovered
		}
		return next, noticeNone
	}
	if res.Err != nil {
		next.Error = truncate(res.Err.Error(), maxProbeErrorBytes)
	}
	next.ConsecutiveFailures = prev.ConsecutiveFailures + 1
	if prev.ConsecutiveFailures == 0 || prev.FailingSince.IsZero() {
		next.FailingSince = now
	}
	if next.ConsecutiveFailures >= threshold && !prev.Notified {
		next.Notified = true
		return next, noticeFailing
	}
	return next, noticeNone
}

// Round probes every instance once. It is what the schedule runs.
func (p *Prober) Round(ctx context.Context) {
	for _, svc := range p.services {
		if ctx.Err() != nil {
			return
		}
		if !svc.probed() {
			continue
		}
		p.probeService(ctx, svc)
	}
}

// member is one host's instance of a given name.
type member struct {
	host string
	inst registry.Instance
}

// roundNotices collects what one service's round has to say.
type roundNotices struct {
	failing, recovered []string
}

func (p *Prober) probeService(ctx context.Context, svc Service) {
	busy, restart := p.busyHosts(ctx, svc)
	var names []string
	byName := map[string][]member{}
	for _, host := range svc.Hosts {
		if id, ok := busy[host]; ok {
			p.log.Debug("probe skipped: host is being restarted", "service", svc.Name, "host", host, "request", int64(id))
			p.metrics.probeSkipped.WithLabelValues(svc.Name, host).Inc()
			continue
		}
		for _, inst := range svc.Instances(host) {
			if _, ok := byName[inst.Name]; !ok {
				names = append(names, inst.Name)
			}
			byName[inst.Name] = append(byName[inst.Name], member{host, inst})
		}
	}
	var out roundNotices
	for _, name := range names {
		// The balancer also sends requests to hosts being restarted, which
		// may be on another site until their turn: asked only when none is.
		if !p.probeAcross(ctx, svc, byName[name], len(busy) == 0, &out) {
			return
		}
	}
	if len(out.failing) > 0 {
		text := fmt.Sprintf("registry probe FAILING for %s: %s", svc.Name, strings.Join(out.failing, "; "))
		if restart.ID != 0 {
			text += fmt.Sprintf(" — %s %s is already %s", restart.ID, restart.Summary(), restart.State)
		} else {
			text += fmt.Sprintf(" — if %s's pooled state changed since the registries last restarted, run: %srestart %s <reason>",
				svc.Name, p.prefix, svc.Name)
		}
		p.say(ctx, poolbot.Notice{Kind: poolbot.NoticeProbe, Text: text})
	}
	if len(out.recovered) > 0 {
		p.say(ctx, poolbot.Notice{Kind: poolbot.NoticeProbe,
			Text: fmt.Sprintf("registry probe OK again for %s: %s", svc.Name, strings.Join(out.recovered, "; "))})
	}
}

// probeAcross probes one instance name across its hosts: the first host
// writes the blob, every other host and (with viaBalancer) the balancer
// read it, each getting its own result. A writer whose own write or read
// fails gets that result and the next host writes. It reports false when
// ctx ended (shutting down mid-probe: not a result).
func (p *Prober) probeAcross(ctx context.Context, svc Service, members []member, viaBalancer bool, out *roundNotices) bool {
	for len(members) > 0 {
		writer, peers := members[0], members[1:]
		opts := registry.ProbeOptions{ViaBalancer: viaBalancer, EveryTarget: true}
		for _, m := range peers {
			opts.Peers = append(opts.Peers, m.inst)
		}
		started := p.clock.Now()
		res := svc.Registry.ProbeAcross(ctx, writer.inst, opts)
		if ctx.Err() != nil {
			return false
		}
		if !res.OK && !slices.ContainsFunc(res.Targets, func(t registry.TargetResult) bool { return t.Err != nil && error(t.Err) == res.Err }) {
			// The writer's own write or read failed: the others are asked
			// with the next host writing.
			p.result(ctx, svc, writer.host, []string{writer.host}, writer.inst, res, started, out)
			members = peers
			continue
		}
		own := res
		own.OK, own.Code, own.Step, own.Status, own.Err = true, registry.CodeOK, "", 0, nil
		p.result(ctx, svc, writer.host, []string{writer.host}, writer.inst, own, started, out)
		for _, t := range res.Targets {
			tr := registry.ProbeResult{Instance: t.Peer, Repository: res.Repository, Digest: res.Digest, OK: t.Err == nil,
				Code: registry.CodeOK, Duration: res.Duration}
			if t.Err != nil {
				tr.Code, tr.Step, tr.Status, tr.Err = t.Err.Code, t.Err.Step, t.Err.Status, t.Err
			}
			if t.Balancer != "" {
				// Any host restarted meanwhile may have made it fail.
				tr.Instance = registry.Instance{Name: writer.inst.Name}
				p.result(ctx, svc, t.Balancer, svc.Hosts, tr.Instance, tr, started, out)
				continue
			}
			host := writer.host
			for _, m := range peers {
				if m.inst == t.Peer {
					host = m.host
				}
			}
			p.result(ctx, svc, host, []string{writer.host, host}, t.Peer, tr, started, out)
		}
		return true
	}
	return true
}

// result records res as host's result for inst, and what it has to say,
// unless it is a failure and one of involved was restarted by poolbot
// since started: busy was read before the round, and a request that
// started restarting one of the hosts meanwhile made the probe fail.
func (p *Prober) result(ctx context.Context, svc Service, host string, involved []string, inst registry.Instance,
	res registry.ProbeResult, started time.Time, out *roundNotices) {
	if !res.OK {
		for _, h := range involved {
			if p.restartedDuring(ctx, svc, h, started) {
				p.log.Debug("probe result dropped: a host was restarted during the probe", "service", svc.Name,
					"host", host, "restarted", h, "instance", inst.Name, "result", res.String())
				p.metrics.probeSkipped.WithLabelValues(svc.Name, host).Inc()
				return
			}
		}
	}
	st, kind, err := p.record(ctx, svc.Name, host, inst, res)
	if err != nil {
		p.log.Error("storing probe result", "service", svc.Name, "host", host, "instance", inst.Name, "err", err)
		return
	}
	switch kind {
	case noticeFailing:
		out.failing = append(out.failing, fmt.Sprintf("%s %s at %s x%d since %s (%s)", instanceLabel(host, inst.Name),
			st.Code, st.Step, st.ConsecutiveFailures, st.FailingSince.UTC().Format("15:04 UTC"), st.Error))
	case noticeRecovered:
		out.recovered = append(out.recovered, instanceLabel(host, inst.Name))
	}
}

// restartedDuring reports whether host is being restarted now, or a
// request started or finished restarting it since started. An error
// reading the store counts as no: the failure is then reported.
func (p *Prober) restartedDuring(ctx context.Context, svc Service, host string, started time.Time) bool {
	if busy, _ := p.busyHosts(ctx, svc); busy[host] != 0 {
		return true
	}
	touched, err := p.store.HostRestartedSince(ctx, svc.Name, host, started)
	if err != nil {
		p.log.Warn("reading host restarts after a failed probe", "service", svc.Name, "host", host, "err", err)
		return false
	}
	return touched
}

// busyHosts are the hosts of svc a running request has not finished
// restarting (all of them before its restart plan is stored): the probe
// would fail there for reasons the request is fixing. restart is the
// oldest open request of the service (any action restarts the registries),
// named in failure notices instead of suggesting a new one.
func (p *Prober) busyHosts(ctx context.Context, svc Service) (busy map[string]poolbot.RequestID, restart poolbot.Request) {
	busy = map[string]poolbot.RequestID{}
	open, err := p.store.Unfinished(ctx, svc.Name)
	if err != nil {
		p.log.Warn("reading the queue before probing", "service", svc.Name, "err", err)
		return busy, restart
	}
	for _, r := range open {
		if restart.ID == 0 && !r.CancelRequested {
			restart = r
		}
		if !r.State.Running() {
			continue
		}
		steps, err := p.store.HostSteps(ctx, r.ID)
		if err != nil {
			p.log.Warn("reading restart plan before probing", "request", int64(r.ID), "err", err)
		}
		if err != nil || len(steps) == 0 {
			for _, h := range svc.Hosts {
				busy[h] = r.ID
			}
			continue
		}
		for _, s := range steps {
			if s.State != poolbot.HostDone {
				busy[s.Host] = r.ID
			}
		}
	}
	return busy, restart
}

// record stores a probe result, updates the metrics, and returns the new
// state and the notice it calls for.
func (p *Prober) record(ctx context.Context, service, host string, inst registry.Instance, res registry.ProbeResult) (store.ProbeState, noticeKind, error) {
	var (
		next store.ProbeState
		kind noticeKind
	)
	now := p.clock.Now()
	err := p.store.Tx(ctx, func(tx *store.Tx) error {
		prev, _, err := tx.ProbeState(service, host, inst.Name)
		if err != nil {
			return err
		}
		prev.Service, prev.Host, prev.Instance = service, host, inst.Name
		next, kind = advanceProbe(prev, res, now, p.cfg.FailuresBeforeNotice)
		return tx.PutProbeState(next)
	})
	if err != nil {
		return next, noticeNone, err
	}
	ok := 0.0
	if res.OK {
		ok = 1
	} else {
		p.metrics.probeFailures.WithLabelValues(service, inst.Name, host, metricCode(res.Code)).Inc()
	}
	p.metrics.probeOK.WithLabelValues(service, inst.Name, host).Set(ok)
	p.metrics.probeDuration.WithLabelValues(service, inst.Name, host).Observe(res.Duration.Seconds())
	return next, kind, nil
}

func (p *Prober) say(ctx context.Context, n poolbot.Notice) {
	p.log.Info("notice", "text", n.String())
	if p.announce != nil {
		p.announce.Announce(ctx, n)
	}
}

// instanceLabel is "registry1003/restricted": the host's first DNS label
// (the whole host when it is an address) and the instance name.
func instanceLabel(host, instance string) string {
	short := host
	if i := strings.IndexByte(host, '.'); i > 0 && !isNumeric(host[:i]) {
		short = host[:i]
	}
	return short + "/" + instance
}

func isNumeric(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// gocronLogger adapts slog to gocron's logger.
type gocronLogger struct{ l *slog.Logger }

func (g gocronLogger) Debug(msg string, args ...any) { g.l.Debug("scheduler: "+msg, args...) }
func (g gocronLogger) Info(msg string, args ...any)  { g.l.Debug("scheduler: "+msg, args...) }
func (g gocronLogger) Warn(msg string, args ...any)  { g.l.Warn("scheduler: "+msg, args...) }
func (g gocronLogger) Error(msg string, args ...any) { g.l.Error("scheduler: "+msg, args...) }
