package procedure

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"poolbot"
	"poolbot/integrations/conftool"
	"poolbot/integrations/registry"
	"poolbot/integrations/restart"
)

// Explanation is what a request would do if it were queued now, from the
// same gate evaluation and restart plan the procedure acts on (`poolbot
// dry-run`). Building it reads every system and changes none: the write
// steps (deploy block, conftool, restarts, probe) are described, not done.
type Explanation struct {
	Request poolbot.Request
	// Now is when the gates were evaluated.
	Now time.Time
	// Gates are queue, conftool, calendar and scap, in that order.
	Gates []GateStatus
	// Clear means the request would start at once.
	Clear bool
	// Start is the estimated start; zero when nobody can say (a scap run,
	// an unreadable source, requests ahead in the queue).
	Start time.Time
	// Estimate is how long the operation is expected to take.
	Estimate time.Duration
	// PoolState is the live pooled state of every datacenter, or why it
	// could not be read.
	PoolState string
	// Switch is the conftool change; empty for a restart.
	Switch string
	// Ahead are the service's unfinished requests, oldest first.
	Ahead []poolbot.Request
	// Hosts are the restart plan, in order.
	Hosts []HostPlan
	// Pace, PerHostTimeout and Probe are the plan's timing and checks.
	Pace, PerHostTimeout time.Duration
	Probe                bool
	// DNS describes the DNS step from the authoritative servers' answers
	// now; empty when the service has no dns section.
	DNS []string
}

// GateStatus is one gate as evaluated now.
type GateStatus struct {
	Gate   string
	Open   bool
	Detail string
}

// HostPlan is one host of the restart plan.
type HostPlan struct {
	Host string
	// Steps are the commands run on it, in order.
	Steps []restart.Step
	// Instances are the registry instances checked after its restart,
	// each with its health now (nil: healthy).
	Instances []InstanceHealth
}

// InstanceHealth is a registry instance and its health check result now.
type InstanceHealth struct {
	registry.Instance
	Health error
}

// Explain evaluates the gates for r (not stored: its ID is ignored) and
// lays out the plan it would follow.
func (e *Engine) Explain(ctx context.Context, r poolbot.Request) (Explanation, error) {
	svc, ok := e.services[r.Service]
	if !ok {
		return Explanation{}, fmt.Errorf("service %s is not managed (services: %s)", r.Service, strings.Join(e.serviceNames(), ", "))
	}
	if !r.Action.Valid() {
		return Explanation{}, fmt.Errorf("unknown action %q (depool, pool or restart)", r.Action)
	}
	if _, switches := r.Action.Pooled(); switches && !slices.Contains(svc.Datacenters, r.Datacenter) {
		return Explanation{}, fmt.Errorf("%s is not a datacenter of %s (%s)", r.Datacenter, r.Service, strings.Join(svc.Datacenters, ", "))
	}
	now := e.clock.Now()
	x := Explanation{Request: r, Now: now, Pace: svc.Plan.Pace, PerHostTimeout: svc.Plan.PerHostTimeout, Probe: svc.Probe}

	ahead, err := e.deps.Store.Unfinished(ctx, r.Service)
	if err != nil {
		return Explanation{}, err
	}
	if _, busy := active(ahead); !busy {
		// Requests held by the last-datacenter guard step aside (order.go).
		ahead = slices.DeleteFunc(ahead, func(a poolbot.Request) bool { return e.evaluate(ctx, svc, a, now).stepsAside() })
	}
	x.Ahead = ahead
	v := e.evaluate(ctx, svc, r, now)
	x.Estimate = v.estimate

	queue := GateStatus{Gate: "queue", Open: len(ahead) == 0, Detail: "no other " + r.Service + " request is queued or running"}
	if len(ahead) > 0 {
		ids := make([]string, len(ahead))
		for i, a := range ahead {
			ids[i] = fmt.Sprintf("%s %s (%s)", a.ID, a.Summary(), a.State)
		}
		queue.Detail = "behind " + strings.Join(ids, ", ")
	}
	x.Gates = append(x.Gates, queue)
	x.Gates = append(x.Gates, gateFrom(v, "conftool", func() string {
		if r.Action != poolbot.ActionDepool {
			return "not checked: only a depool can take the last pooled datacenter out"
		}
		return "depooling " + r.Datacenter + " leaves another datacenter serving"
	}))
	x.Gates = append(x.Gates, gateFrom(v, "calendar", func() string {
		if e.deps.Calendar == nil {
			return "disabled (calendar.source: none)"
		}
		s := fmt.Sprintf("no deployment window active or starting before the estimated end (margins %s/%s)",
			poolbot.FormatDuration(e.cfg.LeadMargin), poolbot.FormatDuration(e.cfg.TailMargin))
		if sched, _, err := e.deps.Calendar.Schedule(); err == nil {
			if w, ok := sched.Next(now); ok {
				s += "; next: " + describeWindow(w, now)
			}
		}
		return s
	}))
	x.Gates = append(x.Gates, gateFrom(v, "scap", func() string {
		if e.deps.Scap == nil {
			return "not watched"
		}
		return "no scap run"
	}))
	if r.Forced {
		x.Gates = append(x.Gates, gateFrom(v, "force", func() string { return "forced" }))
	}
	x.Clear = v.clear() && len(ahead) == 0
	switch {
	case x.Clear:
		x.Start = now
	case len(ahead) == 0:
		x.Start = v.eta
	}

	states, err := e.deps.Conftool.List(ctx, r.Service)
	if err != nil {
		x.PoolState = "unreadable (" + err.Error() + ")"
	} else {
		x.PoolState = describePoolState(states)
	}
	if want, switches := r.Action.Pooled(); switches {
		cur := "unknown"
		if st, ok := states[r.Datacenter]; ok {
			cur = fmt.Sprintf("%t", st.Pooled)
		}
		x.Switch = fmt.Sprintf("set %s/%s pooled=%t through conftool and read it back (now pooled=%s)", r.Service, r.Datacenter, want, cur)
	}

	if svc.DNS != nil {
		x.DNS = e.explainDNS(ctx, svc, r, states)
	}

	steps := svc.Plan.Steps()
	for _, host := range svc.Plan.Hosts {
		hp := HostPlan{Host: host, Steps: steps}
		if svc.Instances != nil {
			for _, inst := range svc.Instances(host) {
				hp.Instances = append(hp.Instances, InstanceHealth{Instance: inst, Health: svc.Registry.Health(ctx, inst)})
			}
		}
		x.Hosts = append(x.Hosts, hp)
	}
	return x, nil
}

// gateFrom is one gate's status from the verdict: closed with every
// blocker's text, or open with what open means for it.
func gateFrom(v verdict, gate string, open func() string) GateStatus {
	var texts []string
	for _, b := range v.blockers {
		if b.gate == gate {
			texts = append(texts, b.text)
		}
	}
	if len(texts) > 0 {
		return GateStatus{Gate: gate, Detail: strings.Join(texts, "; ")}
	}
	return GateStatus{Gate: gate, Open: true, Detail: open()}
}

func describePoolState(states map[string]conftool.State) string {
	dcs := make([]string, 0, len(states))
	for dc := range states {
		dcs = append(dcs, dc)
	}
	slices.Sort(dcs)
	parts := make([]string, len(dcs))
	for i, dc := range dcs {
		word := "depooled"
		if states[dc].Pooled {
			word = "pooled"
		}
		parts[i] = dc + " " + word
	}
	return strings.Join(parts, ", ") + " (" + strings.Join(conftool.PooledDatacenters(states), ",") + " serving)"
}

func (e *Engine) serviceNames() []string {
	names := make([]string, 0, len(e.services))
	for n := range e.services {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Lines is the explanation as text, one line each, for a terminal.
func (x Explanation) Lines() []string {
	r := x.Request
	at := func(t time.Time) string { return t.UTC().Format("15:04:05 UTC") }
	lines := []string{
		fmt.Sprintf("DRY RUN: %s. Nothing is changed: the checks below ran now (%s), the steps are what poolbot would do.", r.Summary(), at(x.Now)),
		"pooled now: " + x.PoolState,
		"gates:",
	}
	for _, g := range x.Gates {
		word := "open  "
		if !g.Open {
			word = "CLOSED"
		}
		lines = append(lines, fmt.Sprintf("  %-8s %s %s", g.Gate, word, g.Detail))
	}
	n := len(x.Hosts)
	eta := fmt.Sprintf("takes about %s (%d hosts, pace %s)", poolbot.FormatDuration(x.Estimate), n, poolbot.FormatDuration(x.Pace))
	switch {
	case x.Clear:
		lines = append(lines, fmt.Sprintf("would start: now; %s; ends about %s", eta, at(x.Now.Add(x.Estimate))))
	case !x.Start.IsZero():
		lines = append(lines, fmt.Sprintf("would start: about %s, when the closed gates open; %s; ends about %s", at(x.Start), eta, at(x.Start.Add(x.Estimate))))
	default:
		lines = append(lines, "would start: unknown (a closed gate has no known end, or requests are ahead); "+eta)
	}
	lines = append(lines, "steps:", "  1. take the deploy block (scap's global lock, exclusively: deploys wait); SAL: START, deploy block taken")
	step := 2
	if x.Switch != "" {
		lines = append(lines, fmt.Sprintf("  %d. %s; SAL: the conftool change", step, x.Switch))
		step++
	}
	if len(x.DNS) > 0 {
		lines = append(lines, fmt.Sprintf("  %d. %s", step, x.DNS[0]))
		for _, l := range x.DNS[1:] {
			lines = append(lines, "     "+l)
		}
		step++
	}
	lines = append(lines, fmt.Sprintf("  %d. restart %d host(s) one at a time, stopping at the first failure (per-host timeout %s, pace %s):",
		step, n, poolbot.FormatDuration(x.PerHostTimeout), poolbot.FormatDuration(x.Pace)))
	for i, h := range x.Hosts {
		var cmds []string
		for _, s := range h.Steps {
			cmds = append(cmds, strings.Join(s.Argv, " "))
		}
		lines = append(lines, fmt.Sprintf("     %d/%d %s: %s", i+1, n, h.Host, strings.Join(cmds, "; ")))
		for _, inst := range h.Instances {
			health := "healthy now"
			if inst.Health != nil {
				health = "UNHEALTHY now (" + inst.Health.Error() + ")"
			}
			check := fmt.Sprintf("         then wait for %s: %s and %s (%s)",
				inst.Name, inst.BaseURL().JoinPath("v2/"), inst.DebugURL().JoinPath("debug/health"), health)
			if x.Probe {
				check += "; then the write-then-read blob probe"
			}
			lines = append(lines, check)
		}
		if len(h.Instances) == 0 {
			lines = append(lines, "         no registry instances to check")
		}
	}
	lines = append(lines, fmt.Sprintf("     SAL: one line per host (1/%d … %d/%d)", n, n, n),
		fmt.Sprintf("  %d. release the deploy block; SAL: deploy block released, END (PASS|FAIL|CANCELLED)", step+1))
	return lines
}
