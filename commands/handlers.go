package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"poolbot"
	"poolbot/integrations/dns"
	"poolbot/requests"
	"poolbot/store"
)

// command is one row of the table that both dispatches and documents.
type command struct {
	name    string
	aliases []string
	// args is the usage after the command name, e.g. "<service> <dc> <reason>".
	args    string
	summary string
	// operator commands change state: only operators may run them.
	operator bool
	// unavailable, when it returns a non-empty reason, makes the command
	// say so instead of running (its backend is not configured).
	unavailable func() string
	run         func(c *call) error
}

func (r *Router) commands() []*command {
	return []*command{
		{name: "depool", args: "<service> <dc> <reason>", operator: true,
			summary: "queue a depool of <service> in <dc> plus its follow-up restarts",
			run:     func(c *call) error { return r.enqueue(c, poolbot.ActionDepool) }},
		{name: "pool", args: "<service> <dc> <reason>", operator: true,
			summary: "queue a pool of <service> in <dc> plus its follow-up restarts",
			run:     func(c *call) error { return r.enqueue(c, poolbot.ActionPool) }},
		{name: "restart", args: "<service> <reason>", operator: true,
			summary: "queue only the paced restarts of <service>'s registry hosts",
			run:     func(c *call) error { return r.enqueue(c, poolbot.ActionRestart) }},
		{name: "cancel", args: "<id> [reason]", operator: true,
			summary: "cancel a queued or waiting request; a running one stops at its next safe point (before conftool is changed, during the DNS wait, or before the next host)",
			run:     r.cancel},
		{name: "force", args: "<id> <reason>", operator: true,
			summary: "break-glass: skip the calendar and scap gates (never the last-datacenter guard)",
			run:     r.force},
		{name: "confirm", args: "<id>", operator: true,
			summary: "second operator's confirmation of a !force",
			run:     r.confirm},
		{name: "resume", args: "<id>", operator: true,
			summary:     "continue a request parked after a crash or a failed host, from its stored step",
			unavailable: func() string { return r.missing(r.backends.Resumer == nil, "the procedure is not running") },
			run:         r.resume},
		{name: "status", args: "[<id>]",
			summary: "pooled state, the active operation and its step, the queue with blockers",
			run:     r.status},
		{name: "windows",
			summary:     "current and next deployment windows, and the next clear slot",
			unavailable: func() string { return r.missing(r.backends.Windows == nil, "no deployment calendar is configured") },
			run:         r.windows},
		{name: "history", args: "[n]",
			summary: "recent operations with outcome and duration",
			run:     r.history},
		{name: "check", args: "<service>",
			summary:     "read-only: health and write-then-read probe of every registry instance now",
			unavailable: func() string { return r.missing(r.backends.Checker == nil, "no registry checks are configured") },
			run:         r.check},
		{name: "help", args: "[command]",
			summary: "usage",
			run:     r.help},
	}
}

func (r *Router) missing(isMissing bool, why string) string {
	if isMissing {
		return why
	}
	return ""
}

func (r *Router) usage(cmd *command) string {
	u := r.opts.Prefix + cmd.name
	if cmd.args != "" {
		u += " " + cmd.args
	}
	return u
}

// errUsage is a bad-argument error: the reply shows the usage with it.
type errUsage struct {
	cmd *command
	msg string
}

func (e errUsage) Error() string { return e.msg }

func (r *Router) usageError(name, format string, args ...any) error {
	return errUsage{cmd: r.lookup(name), msg: fmt.Sprintf(format, args...)}
}

// errAnswer is an answer the user can act on, not a fault of poolbot (no
// such request, the same operation already open): the reply is the
// message alone. "<command> failed: …" is kept for internal errors.
type errAnswer struct{ msg string }

func (e errAnswer) Error() string { return e.msg }

func answerf(format string, args ...any) error { return errAnswer{msg: fmt.Sprintf(format, args...)} }

// replyError turns a handler error into the one-line reply.
func (r *Router) replyError(c *call, err error) {
	var u errUsage
	if errors.As(err, &u) {
		c.say("%s (usage: %s)", u.msg, r.usage(u.cmd))
		return
	}
	var a errAnswer
	if errors.As(err, &a) {
		c.say("%s", a.msg)
		return
	}
	c.say("%s failed: %v", c.inv.Name, err)
}

func (r *Router) enqueue(c *call, action poolbot.Action) error {
	name := string(action)
	svc, rest := nextField(c.inv.Rest)
	if svc == "" {
		return r.usageError(name, "missing service")
	}
	if err := r.checkService(svc); err != nil {
		return r.usageError(name, "%v", err)
	}
	var dc string
	if action != poolbot.ActionRestart {
		dc, rest = nextField(rest)
		if dc == "" {
			return r.usageError(name, "missing datacenter")
		}
		if err := r.checkDatacenter(svc, dc); err != nil {
			return r.usageError(name, "%v", err)
		}
	}
	reason, err := r.reasonArg(c, name, rest, true)
	if err != nil {
		return err
	}
	req, position, err := r.changes.Queue(c.ctx, c.actor(), poolbot.Request{
		Action: action, Service: svc, Datacenter: dc, Reason: reason,
		Task: poolbot.TaskFromReason(reason), Operator: c.operator, Origin: c.origin(),
	})
	var refused requests.Refusal
	if errors.As(err, &refused) {
		return answerf("%s", refused)
	}
	if err != nil {
		return err
	}
	task := ""
	if req.Task != "" {
		task = " (" + req.Task + ")"
	}
	c.say("%s queued: %s%s, position %d in the %s queue", req.ID, req.Summary(), task, position, svc)
	r.notify(svc)
	return nil
}

// requestArg parses the <id> argument and loads the request.
func (r *Router) requestArg(c *call, name string) (poolbot.Request, string, error) {
	idStr, rest := nextField(c.inv.Rest)
	if idStr == "" {
		return poolbot.Request{}, "", r.usageError(name, "missing request id")
	}
	id, ok := ParseID(idStr)
	if !ok {
		return poolbot.Request{}, "", r.usageError(name, "%q is not a request id", idStr)
	}
	req, err := r.store.Request(c.ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return req, "", answerf("no request %s", id)
	}
	return req, rest, err
}

// change replies with the outcome of a request change and wakes the
// service's worker; the change itself (request, event, SAL line in one
// transaction) is made in package requests.
func (r *Router) change(c *call, req poolbot.Request, reply string, err error) error {
	if err != nil {
		return err
	}
	r.opts.SALWritten()
	c.say("%s", reply)
	r.notify(req.Service)
	return nil
}

// reasonArg cleans and checks a reason; required says whether it may be
// empty.
func (r *Router) reasonArg(c *call, name, rest string, required bool) (string, error) {
	reason, changes := CleanReasonChanges(rest)
	if required && reason == "" {
		return "", r.usageError(name, "a reason is required")
	}
	if len(reason) > MaxReasonBytes {
		return "", r.usageError(name, "reason too long (%d bytes, at most %d)", len(reason), MaxReasonBytes)
	}
	if note := changes.String(); note != "" {
		c.reasonNote = "reason: " + note + "; stored as: " + reason
		if reason == "" {
			c.reasonNote = "reason: " + note + "; nothing was left, so none was stored"
		}
	}
	return reason, nil
}

func (r *Router) cancel(c *call) error {
	req, rest, err := r.requestArg(c, "cancel")
	if err != nil {
		return err
	}
	reason, err := r.reasonArg(c, "cancel", rest, false)
	if err != nil {
		return err
	}
	reply, err := r.changes.Cancel(c.ctx, c.actor(), req.ID, reason)
	return r.change(c, req, reply, err)
}

func (r *Router) force(c *call) error {
	req, rest, err := r.requestArg(c, "force")
	if err != nil {
		return err
	}
	reason, err := r.reasonArg(c, "force", rest, true)
	if err != nil {
		return err
	}
	reply, err := r.changes.Force(c.ctx, c.actor(), req.ID, reason)
	return r.change(c, req, reply, err)
}

func (r *Router) confirm(c *call) error {
	req, _, err := r.requestArg(c, "confirm")
	if err != nil {
		return err
	}
	reply, err := r.changes.Confirm(c.ctx, c.actor(), req.ID)
	return r.change(c, req, reply, err)
}

func (r *Router) resume(c *call) error {
	req, _, err := r.requestArg(c, "resume")
	if err != nil {
		return err
	}
	msg, err := r.backends.Resumer.Resume(c.ctx, req.ID, c.operator, c.origin())
	if err != nil {
		return err
	}
	c.say("%s", msg)
	return nil
}

// maxStatusQueue bounds how many queued requests !status lists.
const maxStatusQueue = 5

func (r *Router) status(c *call) error {
	if c.inv.Rest != "" {
		return r.statusOne(c)
	}
	for _, svc := range r.serviceNames() {
		line := svc + ":"
		if r.backends.Reporter != nil {
			ps, err := r.backends.Reporter.PoolState(c.ctx, svc)
			if err != nil {
				ps = "pooled state unknown (" + err.Error() + ")"
			}
			line += " " + ps
		}
		open, err := r.store.Unfinished(c.ctx, svc)
		if err != nil {
			return err
		}
		dnsFailed := r.dnsNotFollowed(c.ctx, svc)
		if dnsFailed != "" {
			c.say("%s %s", svc, dnsFailed)
		}
		if len(open) == 0 {
			c.say("%s no active or queued requests", line)
		} else {
			c.say("%s %d open request(s)", line, len(open))
		}
		for i, req := range open {
			if i == maxStatusQueue {
				c.say("…and %d more; %sstatus <id> for one", len(open)-i, r.opts.Prefix)
				break
			}
			c.say("%s", r.describe(c, req))
		}
		// A failed request stays in view until an operator acts on it
		// (said once: a failed DNS step is named above).
		if r.backends.Reporter != nil && dnsFailed == "" {
			lines, err := r.backends.Reporter.Attention(c.ctx, svc)
			if err != nil {
				c.say("%s: failed requests unknown (%v)", svc, err)
			}
			for _, l := range lines {
				c.say("%s", l)
			}
		}
		r.watchStatus(c, svc)
	}
	return nil
}

// watchStatus adds the watch's lines (registry probes, drifts) for svc.
func (r *Router) watchStatus(c *call, svc string) {
	if r.backends.Watch == nil {
		return
	}
	lines, err := r.backends.Watch.StatusLines(c.ctx, svc)
	if err != nil {
		c.say("%s: watch status unknown (%v)", svc, err)
		return
	}
	for _, l := range lines {
		c.say("%s %s", svc, l)
	}
}

// describe is a request's status line: what, who, state, and why it waits.
func (r *Router) describe(c *call, req poolbot.Request) string {
	s := fmt.Sprintf("%s %s by %s: %s", req.ID, req.Summary(), req.Operator, req.State)
	// The stored step of a pending or running request is its blockers as
	// last announced, or its last step; they are said once, evaluated
	// now, below.
	live := r.backends.Reporter != nil && !req.Parked && (req.State.Pending() ||
		req.State == poolbot.StateBlockingDeploys || req.State == poolbot.StateSwitching || req.State == poolbot.StateRestarting)
	if line := r.dnsWaitLine(c.ctx, req); line != "" {
		s += " (" + line + ")"
	} else if req.Step != "" && !live {
		s += " (" + req.Step + ")"
	}
	if req.Forced {
		if req.ConfirmedBy != "" || !r.opts.ForceNeedsConfirm {
			s += ", FORCED by " + req.ForcedBy
		} else {
			s += ", force by " + req.ForcedBy + " awaiting confirmation"
		}
	}
	if req.CancelRequested {
		s += ", cancel requested by " + req.CancelledBy
	}
	switch {
	case req.Parked:
	case req.State.Pending() && r.backends.Reporter == nil:
		s += "; not evaluated: the procedure is not running"
	case req.State.Pending():
		if why, err := r.backends.Reporter.Blockers(c.ctx, req); err != nil {
			s += "; blockers unknown: " + err.Error()
		} else if why != "" {
			s += "; " + why
		}
	case req.State.Running() && r.backends.Reporter != nil:
		if where, err := r.backends.Reporter.Progress(c.ctx, req); err != nil {
			s += "; progress unknown: " + err.Error()
		} else if where != "" {
			s += "; " + where
		}
	}
	return s
}

func (r *Router) statusOne(c *call) error {
	req, _, err := r.requestArg(c, "status")
	if err != nil {
		return err
	}
	c.say("%s", r.describe(c, req))
	extra := fmt.Sprintf("%s requested %s via %s", req.ID, req.CreatedAt.UTC().Format("2006-01-02 15:04 UTC"), req.Origin.Network)
	if req.Task != "" {
		extra += ", task " + req.Task
	}
	extra += ", reason: " + req.Reason
	if req.Error != "" {
		extra += "; " + req.Error
	}
	c.say("%s", extra)
	return nil
}

func (r *Router) windows(c *call) error {
	var lines []string
	for _, svc := range r.serviceNames() {
		l, err := r.backends.Windows.Windows(c.ctx, svc)
		if err != nil {
			return err
		}
		lines = append(lines, l...)
	}
	for _, l := range lines {
		c.say("%s", l)
	}
	return nil
}

// Bounds for !history.
const (
	defaultHistory = 5
	maxHistory     = 20
)

func (r *Router) history(c *call) error {
	n := defaultHistory
	if c.inv.Rest != "" {
		v, err := strconv.Atoi(c.inv.Rest)
		if err != nil || v < 1 || v > maxHistory {
			return r.usageError("history", "n must be a number from 1 to %d", maxHistory)
		}
		n = v
	}
	reqs, err := r.store.List(c.ctx, store.Filter{Newest: true, Limit: n})
	if err != nil {
		return err
	}
	if len(reqs) == 0 {
		c.say("no requests yet")
		return nil
	}
	for _, req := range reqs {
		line := fmt.Sprintf("%s %s by %s: %s", req.ID, req.Summary(), req.Operator, req.State)
		switch {
		case req.State.Terminal() && !req.StartedAt.IsZero():
			line += fmt.Sprintf(" after %s, %s", poolbot.FormatDuration(req.FinishedAt.Sub(req.StartedAt)), req.FinishedAt.UTC().Format("2006-01-02 15:04 UTC"))
		case req.State.Terminal():
			line += ", " + req.FinishedAt.UTC().Format("2006-01-02 15:04 UTC")
		default:
			line += ", requested " + req.CreatedAt.UTC().Format("2006-01-02 15:04 UTC")
		}
		if req.Error != "" {
			line += " (" + req.Error + ")"
		}
		c.say("%s", line)
	}
	return nil
}

func (r *Router) check(c *call) error {
	svc, _ := nextField(c.inv.Rest)
	if svc == "" {
		return r.usageError("check", "missing service")
	}
	if err := r.checkService(svc); err != nil {
		return r.usageError("check", "%v", err)
	}
	lines, err := r.backends.Checker.Check(c.ctx, svc)
	if err != nil {
		return err
	}
	for _, l := range lines {
		c.say("%s", l)
	}
	return nil
}

func (r *Router) help(c *call) error {
	if c.inv.Rest != "" {
		name := strings.TrimPrefix(strings.ToLower(c.inv.Rest), r.opts.Prefix)
		cmd := r.lookup(name)
		if cmd == nil {
			return r.usageError("help", "unknown command %q", name)
		}
		line := r.usage(cmd) + " — " + cmd.summary
		if cmd.operator {
			line += " (operators only)"
		}
		if cmd.unavailable != nil {
			if why := cmd.unavailable(); why != "" {
				line += " [not available: " + why + "]"
			}
		}
		c.say("%s", line)
		return nil
	}
	names := make([]string, 0, len(r.table))
	for _, cmd := range r.table {
		n := r.opts.Prefix + cmd.name
		if cmd.unavailable != nil && cmd.unavailable() != "" {
			n += "*"
		}
		names = append(names, n)
	}
	c.say("commands: %s — %shelp <command> for usage; * = not available in this poolbot. Services: %s",
		strings.Join(names, " "), r.opts.Prefix, strings.Join(r.serviceNames(), ", "))
	return nil
}

// dnsWaitLine is the live countdown of a request waiting for cached DNS
// answers to expire ("DNS: waiting 04m 12s for cached answers to expire;
// restarts start at 14:03:10 UTC"), "" when it is not waiting for them.
func (r *Router) dnsWaitLine(ctx context.Context, req poolbot.Request) string {
	if req.State != poolbot.StateDNS {
		return ""
	}
	step, ok, err := r.store.DNSStep(ctx, req.ID)
	if err != nil || !ok || step.ConvergedAt.IsZero() || step.Flushed || step.OldTTL == 0 {
		return ""
	}
	return dns.CacheWait{ConvergedAt: step.ConvergedAt, TTL: step.OldTTL}.Line(r.clock.Now())
}

// dnsNotFollowed says when the service's last finished request failed in
// its DNS step before the authoritative servers converged: conftool was
// changed and DNS did not follow, a state an operator must resolve.
func (r *Router) dnsNotFollowed(ctx context.Context, svc string) string {
	last, err := r.store.List(ctx, store.Filter{Service: svc, Newest: true, Limit: 1,
		States: []poolbot.State{poolbot.StateDone, poolbot.StateFailed, poolbot.StateCancelled, poolbot.StateExpired}})
	if err != nil || len(last) == 0 || last[0].State != poolbot.StateFailed {
		return ""
	}
	step, ok, err := r.store.DNSStep(ctx, last[0].ID)
	if err != nil || !ok || !step.ConvergedAt.IsZero() {
		return ""
	}
	return fmt.Sprintf("last request %s %s FAILED in its DNS step: %s", last[0].ID, last[0].Summary(), last[0].Error)
}
