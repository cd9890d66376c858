package procedure

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"poolbot"
	"poolbot/integrations/alertmanager"
	"poolbot/integrations/conftool"
	"poolbot/store"
)

// One host's restart, the way the registry roll-restart cookbook does it
// (reference §6, §9):
//
//  0. with a dns section, check that the host resolves the new address
//     (nothing is changed for a host that does not);
//  1. silence the host's alerts in Alertmanager (stored with the step);
//  2. depool the host's load-balancer node objects that are pooled=yes
//     (the values to restore are stored before the write), then wait the
//     drain period;
//  3. restart, wait for health, probe;
//  4. on success only: restore the node objects (spicerack's
//     change_and_revert) and remove the silences. On failure the host stays
//     depooled, and the error says so; the silences are removed (or
//     reported with their expiry when Alertmanager cannot be reached).
//
// A crash mid-host leaves the step "restarting" with what it changed
// stored: the next run removes the old silences, restarts the host again
// and restores the stored values, not the "no" it would read now.

// NodePools reads and changes conftool node objects (the etcd backend).
type NodePools interface {
	Nodes(ctx context.Context, pools []conftool.Pool, host string) ([]conftool.Node, error)
	SetNodePooled(ctx context.Context, pool conftool.Pool, host, pooled string) (conftool.Node, error)
}

// Silencer silences a host in Alertmanager and removes silences.
type Silencer interface {
	SilenceHost(ctx context.Context, host string, perHostTimeout time.Duration, reason alertmanager.Reason) (alertmanager.Created, error)
	RemoveAll(ctx context.Context, silences []alertmanager.Created) ([]alertmanager.Created, error)
}

// DefaultDrainPeriod is the wait between depooling a host's nodes and
// restarting it, as the cookbook's 5 s sleep.
const DefaultDrainPeriod = 5 * time.Second

// Drain selects the load-balancer pools whose node objects a host is
// depooled from before its restart. No pools: no drain.
type Drain struct {
	Pools []conftool.Pool
	// Period is the wait after the depool; zero means DefaultDrainPeriod.
	Period time.Duration
}

func (d Drain) period() time.Duration {
	if d.Period > 0 {
		return d.Period
	}
	return DefaultDrainPeriod
}

// confctlLine is how confctl itself logs a change to SAL, so a SAL search
// for "conftool action" finds poolbot's changes beside the manual ones.
func confctlLine(action, selector string) string {
	return "conftool action : " + action + "; selector: " + selector
}

func poolOf(n poolbot.DrainedNode) conftool.Pool {
	return conftool.Pool{DC: n.DC, Cluster: n.Cluster, Service: n.Service}
}

// guardedRestart is one host step with its silence and drain around the
// restart (restartOneHost). step is the stored step, possibly left
// mid-way by a crash.
func (e *Engine) guardedRestart(ctx context.Context, svc *Service, r poolbot.Request, step poolbot.HostStep) (string, error) {
	host := step.Host
	// The host must resolve the new address first: restarted earlier, it
	// would reconnect to the old datacenter. Checked before anything is
	// changed on or around the host, so a host that fails it is left as
	// it was (pooled, not silenced).
	resolved, err := e.checkHostDNS(ctx, svc, host)
	if err != nil {
		return "", err
	}
	// Silences a crashed run left: remove them before making new ones.
	if len(step.Silences) > 0 {
		if left := e.removeSilences(ctx, r, step, "left by an interrupted run"); len(left) == 0 {
			step.Silences = nil
		}
	}
	silenceNote, err := e.silenceHost(ctx, svc, r, &step)
	if err != nil {
		return "", err
	}
	drained, err := e.drainHost(ctx, svc, r, step)
	if err != nil {
		// Whatever was depooled stays so (stored), like a failed restart.
		e.removeSilences(ctx, r, step, "the drain failed")
		return "", fmt.Errorf("drain: %w%s", err, stillDepooled(host, drained))
	}
	detail, herr := e.restartOneHost(ctx, svc, r, host, resolved)
	if herr != nil {
		e.removeSilences(ctx, r, step, "the restart failed")
		return "", fmt.Errorf("%w%s", herr, stillDepooled(host, drained))
	}
	if err := e.restoreHost(ctx, r, step, drained); err != nil {
		e.removeSilences(ctx, r, step, "the repool failed")
		return "", err
	}
	if left := e.removeSilences(ctx, r, step, "the host is back"); len(left) > 0 {
		detail += fmt.Sprintf("; silence %s NOT removed (expires %s)", left[0].ID, left[0].EndsAt.UTC().Format("15:04 UTC"))
	}
	if len(drained) > 0 {
		detail += fmt.Sprintf("; drained %s, repooled", poolbot.FormatDuration(svc.Drain.period()))
	}
	return detail + silenceNote, nil
}

// stillDepooled is the part of a failure that says the host stays out of
// its load-balancer pools and how to put it back.
func stillDepooled(host string, drained []poolbot.DrainedNode) string {
	if len(drained) == 0 {
		return ""
	}
	sels := make([]string, len(drained))
	for i, n := range drained {
		sels[i] = poolOf(n).Selector(host)
	}
	return fmt.Sprintf("; %s STAYS DEPOOLED (%s): repool by hand after fixing it (confctl --object-type node select '<selector>' set/pooled=%s)",
		host, strings.Join(sels, " | "), drained[0].Pooled)
}

// silenceHost creates the host's silence and stores it with the step.
// With Alertmanager unreachable it fails closed (nothing done yet), or
// goes on with a loud notice when configured so. note is what the host's
// detail says about it.
func (e *Engine) silenceHost(ctx context.Context, svc *Service, r poolbot.Request, step *poolbot.HostStep) (note string, err error) {
	if e.deps.Silencer == nil {
		return "", nil
	}
	if e.cfg.DryRun {
		e.announce(ctx, about(r, poolbot.NoticeInfo, "", fmt.Sprintf("DRY-RUN %s: would silence %s in Alertmanager", r.ID, step.Host)))
		return "", nil
	}
	reason := alertmanager.Reason{Text: r.Summary() + ": " + sanitizeReason(r.Reason), RequestID: int64(r.ID),
		Operator: r.Operator, Task: r.Task}
	c, err := e.deps.Silencer.SilenceHost(ctx, step.Host, svc.Plan.PerHostTimeout, reason)
	switch {
	case err == nil:
	case errors.Is(err, alertmanager.ErrUnavailable) && !e.cfg.SilenceFailClosed:
		e.announce(ctx, toOperator(r, poolbot.NoticeInfo, "", fmt.Sprintf("WARNING %s restarts %s WITHOUT an Alertmanager silence (alertmanager.fail_closed is false): %v",
			r.ID, step.Host, err)))
		return "; NOT silenced (Alertmanager unreachable)", nil
	default:
		return "", fmt.Errorf("not restarted: %w (alertmanager.fail_closed)", err)
	}
	step.Silences = append(step.Silences, poolbot.HostSilence{ID: c.ID, EndsAt: c.EndsAt})
	if err := e.deps.Store.Tx(ctx, func(tx *store.Tx) error {
		return tx.SetHostSilences(r.ID, step.Position, step.Silences)
	}); err != nil {
		return "", fmt.Errorf("storing silence %s: %w", c.ID, err)
	}
	return fmt.Sprintf("; silenced until %s", c.EndsAt.UTC().Format("15:04 UTC")), nil
}

// sanitizeReason drops what Alertmanager comments and spicerack reasons
// must not contain (double quotes).
func sanitizeReason(s string) string { return strings.ReplaceAll(s, `"`, "'") }

// removeSilences removes the step's stored silences; those it could not
// remove are announced with their expiry and kept in the store. It
// returns what is left.
func (e *Engine) removeSilences(ctx context.Context, r poolbot.Request, step poolbot.HostStep, why string) []poolbot.HostSilence {
	if e.deps.Silencer == nil || len(step.Silences) == 0 {
		return nil
	}
	// Re-read: the step's silences may have been added since step was read.
	if steps, err := e.deps.Store.HostSteps(ctx, r.ID); err == nil && step.Position-1 < len(steps) {
		step.Silences = steps[step.Position-1].Silences
	}
	created := make([]alertmanager.Created, len(step.Silences))
	for i, s := range step.Silences {
		created[i] = alertmanager.Created{ID: s.ID, Host: step.Host, EndsAt: s.EndsAt}
	}
	leftC, err := e.deps.Silencer.RemoveAll(ctx, created)
	var left []poolbot.HostSilence
	for _, c := range leftC {
		left = append(left, poolbot.HostSilence{ID: c.ID, EndsAt: c.EndsAt})
	}
	if err != nil {
		e.announce(ctx, about(r, poolbot.NoticeInfo, "", fmt.Sprintf("%s %s: could not remove the Alertmanager silence of %s (%s): %v; it expires by itself",
			r.ID, r.Summary(), step.Host, why, err)))
	}
	if serr := e.deps.Store.Tx(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		return tx.SetHostSilences(r.ID, step.Position, left)
	}); serr != nil {
		e.log.Error("storing removed silences", "request", r.ID, "host", step.Host, "err", serr)
	}
	return left
}

// drainHost depools the host's pooled=yes node objects in the service's
// pools and waits the drain period. What is depooled is stored before the
// write. A step left mid-way by a crash depools its stored nodes again
// (idempotent) and keeps their stored values.
func (e *Engine) drainHost(ctx context.Context, svc *Service, r poolbot.Request, step poolbot.HostStep) ([]poolbot.DrainedNode, error) {
	if len(svc.Drain.Pools) == 0 {
		return nil, nil
	}
	if e.deps.Nodes == nil {
		return nil, errors.New("node pools are configured but no conftool client for node objects was given")
	}
	drained := step.Drained
	if len(drained) == 0 {
		nodes, err := e.deps.Nodes.Nodes(ctx, svc.Drain.Pools, step.Host)
		if err != nil {
			return nil, err
		}
		for _, n := range nodes {
			// change_and_revert("pooled", "yes", "no"): only nodes that
			// are pooled=yes are depooled, and only they are restored.
			if n.Pooled == conftool.NodePooledYes {
				drained = append(drained, poolbot.DrainedNode{DC: n.Pool.DC, Cluster: n.Pool.Cluster, Service: n.Pool.Service, Pooled: n.Pooled})
			}
		}
		if len(drained) == 0 {
			return nil, nil // nothing takes traffic: nothing to drain
		}
		if !e.cfg.DryRun {
			if err := e.deps.Store.Tx(ctx, func(tx *store.Tx) error {
				return tx.SetHostDrained(r.ID, step.Position, drained)
			}); err != nil {
				return nil, fmt.Errorf("storing the nodes to drain: %w", err)
			}
		}
	}
	var lines []string
	err := e.withServiceRoute(ctx, r, func() error {
		for _, n := range drained {
			sel := poolOf(n).Selector(step.Host)
			if e.cfg.DryRun {
				e.announce(ctx, about(r, poolbot.NoticeInfo, "", fmt.Sprintf("DRY-RUN %s: would %s", r.ID, confctlLine("set/pooled=no", sel))))
				continue
			}
			if _, err := e.deps.Nodes.SetNodePooled(ctx, poolOf(n), step.Host, conftool.NodePooledNo); err != nil {
				return err
			}
			lines = append(lines, confctlLine("set/pooled=no", sel))
		}
		return nil
	})
	e.logSAL(ctx, r, lines...)
	if err != nil {
		return drained, err
	}
	if e.cfg.DryRun {
		return drained, nil // nothing was depooled: nothing to drain
	}
	if !e.sleepFor(ctx, svc.Drain.period()) {
		return drained, errors.New("stopped during the drain wait")
	}
	return drained, nil
}

// restoreHost sets the drained node objects back to their stored values
// and clears them from the step.
func (e *Engine) restoreHost(ctx context.Context, r poolbot.Request, step poolbot.HostStep, drained []poolbot.DrainedNode) error {
	if len(drained) == 0 {
		return nil
	}
	var lines []string
	err := e.withServiceRoute(ctx, r, func() error {
		for _, n := range drained {
			action := "set/pooled=" + n.Pooled
			sel := poolOf(n).Selector(step.Host)
			if e.cfg.DryRun {
				e.announce(ctx, about(r, poolbot.NoticeInfo, "", fmt.Sprintf("DRY-RUN %s: would %s", r.ID, confctlLine(action, sel))))
				continue
			}
			if _, err := e.deps.Nodes.SetNodePooled(ctx, poolOf(n), step.Host, n.Pooled); err != nil {
				return err
			}
			lines = append(lines, confctlLine(action, sel))
		}
		return nil
	})
	e.logSAL(ctx, r, lines...)
	if err != nil {
		return fmt.Errorf("repool: %w%s", err, stillDepooled(step.Host, drained))
	}
	if e.cfg.DryRun {
		return nil
	}
	return e.deps.Store.Tx(ctx, func(tx *store.Tx) error { return tx.SetHostDrained(r.ID, step.Position, nil) })
}

// logSAL queues SAL lines about r outside a state transition.
func (e *Engine) logSAL(ctx context.Context, r poolbot.Request, lines ...string) {
	if len(lines) == 0 {
		return
	}
	err := e.deps.Store.Tx(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		for _, l := range lines {
			if err := tx.AddEvent(poolbot.Event{RequestID: r.ID, Actor: poolbot.ActorPoolbot, Kind: "conftool",
				FromState: r.State, ToState: r.State, Detail: l}); err != nil {
				return err
			}
			if err := e.queueSAL(tx, r, about(r, poolbot.NoticeInfo, "", l)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.log.Error("recording SAL lines", "request", r.ID, "err", err)
		return
	}
	e.deps.SALWritten()
}

// guardsLeft describes, for the END line of a request stopped while
// parked, the silences and depooled nodes its host steps left, after
// trying to remove the silences.
func (e *Engine) guardsLeft(ctx context.Context, r poolbot.Request, steps []poolbot.HostStep) string {
	var parts []string
	for _, s := range steps {
		if len(s.Silences) > 0 {
			for _, l := range e.removeSilences(ctx, r, s, "the request ended") {
				parts = append(parts, fmt.Sprintf("silence %s of %s NOT removed (expires %s)", l.ID, s.Host, l.EndsAt.UTC().Format("15:04 UTC")))
			}
		}
		if len(s.Drained) > 0 {
			parts = append(parts, strings.TrimPrefix(stillDepooled(s.Host, s.Drained), "; "))
		}
	}
	return strings.Join(parts, "; ")
}
