package procedure

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"poolbot"
	"poolbot/integrations/restart"
	"poolbot/requests"
)

// The Engine is the command layer's Notifier, Reporter, WindowLister,
// Checker and Resumer: it answers !status, !windows, !check and !resume
// from the same gate evaluation it acts on, so what operators are told is
// what the procedure sees.

// PoolState is the live pooled state of every datacenter of a service.
func (e *Engine) PoolState(ctx context.Context, service string) (string, error) {
	states, err := e.deps.Conftool.List(ctx, service)
	if err != nil {
		return "", err
	}
	return describePoolState(states), nil
}

// Blockers says why a pending request waits, evaluated now.
func (e *Engine) Blockers(ctx context.Context, r poolbot.Request) (string, error) {
	svc, ok := e.services[r.Service]
	if !ok {
		return "", fmt.Errorf("service %s is not managed", r.Service)
	}
	queue, err := e.deps.Store.Unfinished(ctx, r.Service)
	if err != nil {
		return "", err
	}
	if a, ok := e.aheadOf(ctx, svc, queue, r); ok {
		return fmt.Sprintf("behind %s in the queue (one operation at a time)", a.ID), nil
	}
	v := e.evaluate(ctx, svc, r, e.clock.Now())
	if v.clear() {
		return "no blockers: starting now", nil
	}
	why := "blocked by " + v.summary()
	if v.stepsAside() {
		why += "; " + stepAsideNote
	}
	return why, nil
}

// Windows answers !windows for a service: the active and next windows,
// and the next slot long enough for its operation.
func (e *Engine) Windows(ctx context.Context, service string) ([]string, error) {
	svc, ok := e.services[service]
	if !ok {
		return nil, fmt.Errorf("service %s is not managed", service)
	}
	if e.deps.Calendar == nil {
		return []string{"the calendar gate is disabled in this poolbot (calendar.source: none)"}, nil
	}
	sched, fetched, err := e.deps.Calendar.Schedule()
	if err != nil {
		// An outage of the calendar is the answer, not a fault of poolbot.
		return []string{"deployment calendar unreadable (" + err.Error() + "): the calendar gate stays closed until it can be read"}, nil
	}
	now := e.clock.Now()
	var lines []string
	active := sched.Active(now)
	for _, w := range active {
		lines = append(lines, "now: "+describeWindow(w, now))
	}
	if len(active) == 0 {
		lines = append(lines, "no deployment window is active")
	}
	if w, ok := sched.Next(now); ok {
		lines = append(lines, "next: "+describeWindow(w, now))
	}
	est := e.estimate(ctx, svc)
	if gap, ok := sched.FirstGap(now, est, e.cfg.LeadMargin, e.cfg.TailMargin); ok {
		when := "now"
		if gap.After(now) {
			when = poolbot.FormatClock(gap, now)
		}
		lines = append(lines, fmt.Sprintf("next clear slot for %s (%s, margins %s/%s): %s; calendar fetched %s",
			service, poolbot.FormatDuration(est), poolbot.FormatDuration(e.cfg.LeadMargin), poolbot.FormatDuration(e.cfg.TailMargin), when, poolbot.FormatSince(fetched, now)))
	} else {
		lines = append(lines, fmt.Sprintf("no clear slot of %s for %s within the calendar's horizon", poolbot.FormatDuration(est), service))
	}
	return lines, nil
}

// Check answers !check: health and write-then-read probe of every
// registry instance of the service, now, each across the other hosts and
// the balancer (hosts on different storage fail it, quoting the
// registry's answer). It changes nothing but the probe repository.
func (e *Engine) Check(ctx context.Context, service string) ([]string, error) {
	svc, ok := e.services[service]
	if !ok {
		return nil, fmt.Errorf("service %s is not managed", service)
	}
	var lines []string
	if svc.HostsQuery != "" && svc.Lister != nil {
		lines = append(lines, hostsQueryCheck(ctx, svc)...)
	}
	for _, host := range svc.Plan.Hosts {
		var parts []string
		for _, inst := range svc.Instances(host) {
			status := inst.Name + ": "
			if err := svc.Registry.Health(ctx, inst); err != nil {
				status += "UNHEALTHY (" + err.Error() + ")"
			} else {
				status += "healthy"
				if svc.Probe {
					res := probeAcross(ctx, svc, host, inst, svc.Plan.Hosts, true)
					if res.OK {
						status += ", probe ok"
					} else {
						status += ", probe FAILED " + res.Code + " at " + res.Step
						if res.Err != nil {
							status += ": " + res.Err.Error()
						}
					}
				}
			}
			parts = append(parts, status)
		}
		lines = append(lines, host+": "+strings.Join(parts, "; "))
	}
	return lines, nil
}

// hostsQueryCheck resolves the service's hosts_query again: nothing when
// it still selects the plan's hosts, else one line saying what changed.
func hostsQueryCheck(ctx context.Context, svc *Service) []string {
	hosts, err := restart.ResolveHosts(ctx, svc.HostsQuery, svc.Lister)
	switch {
	case err != nil:
		return []string{fmt.Sprintf("ERROR: %v; restarts use the %d hosts it selected at start-up (%s)",
			err, len(svc.Plan.Hosts), strings.Join(svc.Plan.Hosts, ", "))}
	case !slices.Equal(hosts, svc.Plan.Hosts):
		return []string{fmt.Sprintf("hosts_query %q now selects %d hosts (%s); restarts use the %d it selected at start-up (%s) until poolbot restarts",
			svc.HostsQuery, len(hosts), strings.Join(hosts, ", "), len(svc.Plan.Hosts), strings.Join(svc.Plan.Hosts, ", "))}
	}
	return nil
}

// Resume continues a request parked after a crash, or a request that
// failed on a host, from its stored step (see requests.Changes.Resume),
// and wakes its worker.
func (e *Engine) Resume(ctx context.Context, id poolbot.RequestID, operator string, origin poolbot.Origin) (string, error) {
	reply, service, err := e.changes.Resume(ctx, requests.Actor{Name: operator, Origin: origin}, id)
	if err != nil {
		return "", err
	}
	e.deps.SALWritten()
	e.Notify(service)
	return reply, nil
}
