package procedure

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"poolbot"
	"poolbot/integrations/conftool"
	"poolbot/integrations/dns"
	"poolbot/store"
)

// ServiceDNS is a service's DNS step: after the conftool change, wait
// until the discovery record follows it before any host is restarted.
//
// A conftool write moves no traffic by itself: confd rewrites gdnsd's
// state file, the authoritative servers answer the new address, and every
// recursor keeps the old answer for up to the record's TTL. A registry
// restarted inside that window reconnects to the old datacenter (the split
// of T422166).
type ServiceDNS struct {
	// Checker asks the authoritative servers, flushes the recursors and
	// asks the hosts.
	Checker *dns.Checker
	// Hosts runs `getent ahosts <record>` on a host before its restart;
	// nil turns the host check off.
	Hosts dns.Runner
}

// dnsConvergeEstimate is what the estimate counts for the authoritative
// servers to follow a conftool change (confd and gdnsd take seconds).
const dnsConvergeEstimate = 10 * time.Second

// afterBlock is the state a request enters once the deploy block is
// taken: switching for a pool or depool, else dns (a restart waits for
// DNS too, e.g. after a change the drift watch saw) or restarting.
func afterBlock(svc *Service, r poolbot.Request) poolbot.State {
	if _, switches := r.Action.Pooled(); switches {
		return poolbot.StateSwitching
	}
	return afterSwitch(svc)
}

// afterSwitch is the state after the conftool change.
func afterSwitch(svc *Service) poolbot.State {
	if svc.DNS != nil {
		return poolbot.StateDNS
	}
	return poolbot.StateRestarting
}

// dnsExpectation reads every datacenter's pooled state from conftool and
// returns what each datacenter's clients must be answered.
func (e *Engine) dnsExpectation(ctx context.Context, svc *Service) (dns.Expectation, map[string]int, error) {
	states, err := e.deps.Conftool.List(ctx, svc.Name)
	if err != nil {
		return dns.Expectation{}, nil, fmt.Errorf("reading conftool: %w", err)
	}
	pooled, ttls := map[string]bool{}, map[string]int{}
	for dc, st := range states {
		pooled[dc], ttls[dc] = st.Pooled, st.TTL
	}
	addrs, err := svc.DNS.Checker.Addresses(ctx)
	if err != nil {
		return dns.Expectation{}, nil, err
	}
	exp, err := svc.DNS.Checker.Expect(addrs, pooled)
	return exp, ttls, err
}

// maxTTL is the highest conftool ttl of the service's datacenters.
func maxTTL(ttls map[string]int) time.Duration {
	var m int
	for _, t := range ttls {
		m = max(m, t)
	}
	return time.Duration(m) * time.Second
}

// movedLine says what the authoritative servers answer, for the request's
// datacenter or, for a restart, every datacenter.
func movedLine(rep dns.Report, r poolbot.Request, dcs []string) string {
	if r.Datacenter != "" {
		return rep.Line(r.Datacenter)
	}
	var parts []string
	for _, dc := range dcs {
		parts = append(parts, rep.Line(dc))
	}
	return strings.Join(parts, "; ")
}

// dnsStep runs the DNS step of a request in state dns: wait for the
// authoritative servers, then flush the recursor caches or wait out the
// old TTL counted from the moment the servers converged. What it has seen
// is stored, so a restarted poolbot resumes the wait with the time left.
// It returns restarting to go on, a terminal state with its END outcome
// and detail, or "" when ctx ended (the request stays in dns).
func (e *Engine) dnsStep(ctx context.Context, svc *Service, r poolbot.Request) (poolbot.State, string, string) {
	d := svc.DNS
	record := strings.TrimSuffix(d.Checker.Config().Record, ".")
	_, switches := r.Action.Pooled()
	// conftoolNow names the conftool state as it is, for END lines.
	conftoolNow := func() string {
		if !switches {
			return "conftool unchanged by this request"
		}
		return "conftool was changed (" + e.describePooled(ctx, r) + ")"
	}
	fail := func(why string) (poolbot.State, string, string) {
		return poolbot.StateFailed, "FAIL", conftoolNow() + " but " + why + "; no host was restarted"
	}
	cancelled := func(by string) (poolbot.State, string, string) {
		return poolbot.StateCancelled, "CANCELLED", fmt.Sprintf("cancelled by %s during the DNS wait, before any host was restarted; %s",
			by, conftoolNow())
	}

	step, _, err := e.deps.Store.DNSStep(ctx, r.ID)
	if err != nil {
		if ctx.Err() != nil {
			return "", "", ""
		}
		return poolbot.StateFailed, "FAIL", "reading the DNS step: " + err.Error()
	}
	exp, ttls, err := e.dnsExpectation(ctx, svc)
	if err != nil {
		if ctx.Err() != nil {
			return "", "", ""
		}
		return fail("the DNS step could not start: " + err.Error())
	}
	if step.OldTTL == 0 {
		// A restart request, or one stored before the switch wrote it.
		step.OldTTL = maxTTL(ttls)
	}

	if e.cfg.DryRun {
		e.dnsDryRun(ctx, svc, r, exp, step.OldTTL)
		return e.dnsDone(ctx, r, poolbot.DNSStep{}, "")
	}

	resumed := !step.ConvergedAt.IsZero()
	if !resumed {
		if cur, err := e.deps.Store.Request(ctx, r.ID); err == nil && cur.CancelRequested {
			return cancelled(cur.CancelledBy)
		}
		e.setStep(ctx, r, fmt.Sprintf("DNS: asking the authoritative servers until they answer the new state of %s", record))
		rep, err := d.Checker.WaitConverged(ctx, exp)
		if ctx.Err() != nil {
			return "", "", ""
		}
		if err != nil {
			var nc *dns.NotConvergedError
			if errors.As(err, &nc) && !nc.Unexpected {
				return fail(fmt.Sprintf("DNS did not follow: %v", err))
			}
			return fail(err.Error())
		}
		step.ConvergedAt = e.clock.Now()
		step.OldTTL = max(step.OldTTL, rep.MaxTTL())
		step.Moved = movedLine(rep, r, svc.dnsDatacenters())
		// A restart the operator asked for follows no change of poolbot's
		// own: when the servers already agree, only the host check
		// remains. The drift watch's restart follows a change made
		// moments ago, so it waits for the caches like a switch.
		if !switches && r.Origin.Network != poolbot.NetworkPoolbot {
			step.OldTTL = 0
		}
		if len(d.Checker.FlushArgv()) > 0 && step.OldTTL > 0 {
			if _, ferr := d.Checker.FlushAndVerify(ctx, exp); ferr != nil {
				if ctx.Err() != nil {
					return "", "", ""
				}
				e.dnsNotice(ctx, r, fmt.Sprintf("%v; waiting out the old TTL instead", ferr))
			} else {
				step.Flushed = true
			}
		}
		if err := e.deps.Store.Tx(ctx, func(tx *store.Tx) error { return tx.PutDNSStep(step) }); err != nil {
			if ctx.Err() != nil {
				return "", "", ""
			}
			return poolbot.StateFailed, "FAIL", "storing the DNS step: " + err.Error()
		}
	}
	if step.Flushed || step.OldTTL == 0 {
		return e.dnsDone(ctx, r, step, "")
	}

	w := dns.CacheWait{ConvergedAt: step.ConvergedAt, TTL: step.OldTTL}
	line := w.Line(e.clock.Now())
	e.setStep(ctx, r, line)
	if resumed {
		line = "resumed after a poolbot restart: " + line
	}
	e.dnsNotice(ctx, r, line)
	for {
		cur, err := e.deps.Store.Request(ctx, r.ID)
		if err != nil {
			if ctx.Err() != nil {
				return "", "", ""
			}
			return poolbot.StateFailed, "FAIL", "reading the request: " + err.Error()
		}
		if cur.CancelRequested {
			return cancelled(cur.CancelledBy)
		}
		left := w.Remaining(e.clock.Now())
		if left <= 0 {
			break
		}
		if !e.waitOrWake(ctx, svc.Name, left) {
			return "", "", ""
		}
	}
	return e.dnsDone(ctx, r, step, "; waited "+poolbot.FormatDuration(step.OldTTL)+" for caches")
}

// dnsDone moves the request on to restarting with the SAL line that says
// DNS has moved.
func (e *Engine) dnsDone(ctx context.Context, r poolbot.Request, step poolbot.DNSStep, waited string) (poolbot.State, string, string) {
	var lines []poolbot.Notice
	if step.Moved != "" {
		how := waited
		switch {
		case step.Flushed:
			how = "; caches flushed"
		case how == "" && step.OldTTL == 0:
			how = "; no cache wait (no change by poolbot)"
		}
		lines = append(lines, about(r, poolbot.NoticeDNS, poolbot.StateRestarting, "DNS: "+step.Moved+how))
	}
	detail := "DNS followed"
	if e.cfg.DryRun {
		detail = poolbot.DryRunMark + ": DNS not waited for"
	}
	if len(lines) > 0 {
		detail = lines[0].Text
	}
	if err := e.transitionSAL(ctx, r, poolbot.StateDNS, poolbot.StateRestarting, func(n *poolbot.Request) { n.Step = "" },
		"dns", detail, lines...); err != nil {
		if ctx.Err() != nil {
			return "", "", ""
		}
		return poolbot.StateFailed, "FAIL", "recording the DNS step: " + err.Error()
	}
	return poolbot.StateRestarting, "", ""
}

// dnsDryRun asks the authoritative servers once, for real, and says what
// the step would wait for and how the caches would be cleared.
func (e *Engine) dnsDryRun(ctx context.Context, svc *Service, r poolbot.Request, exp dns.Expectation, oldTTL time.Duration) {
	d := svc.DNS
	rep := d.Checker.Check(ctx, exp)
	now := "answers as conftool says now"
	if probs := rep.Problems(); len(probs) > 0 {
		now = "now: " + strings.Join(probs, "; ")
	}
	text := fmt.Sprintf("DNS: %s; would wait until %s", now, movedLine(rep, r, svc.dnsDatacenters()))
	if want, switches := r.Action.Pooled(); switches {
		text = fmt.Sprintf("DNS (conftool unchanged, so the servers answer the current state): %s; after pooled=%t would wait for the authoritative servers to follow", now, want)
	}
	if flush := d.Checker.FlushArgv(); len(flush) > 0 {
		var cmds []string
		for _, argv := range flush {
			cmds = append(cmds, strings.Join(argv, " "))
		}
		text += "; then would flush the caches: " + strings.Join(cmds, " && ")
	} else {
		text += fmt.Sprintf("; then would wait %s (the old TTL) for cached answers", poolbot.FormatDuration(oldTTL))
	}
	e.dnsNotice(ctx, r, text)
}

// dnsDatacenters are the datacenters of the service's dns section.
func (s *Service) dnsDatacenters() []string {
	var out []string
	for _, dc := range s.DNS.Checker.Config().Datacenters {
		out = append(out, dc.Name)
	}
	return out
}

// checkHostDNS waits, bounded, until host resolves the discovery record to
// the address its datacenter's clients must get; the error names the host
// and what it resolved. It returns "" when the service has no host check.
func (e *Engine) checkHostDNS(ctx context.Context, svc *Service, host string) (string, error) {
	if svc.DNS == nil || svc.DNS.Hosts == nil {
		return "", nil
	}
	cfg := svc.DNS.Checker.Config()
	dc, ok := cfg.HostDatacenter(host)
	if !ok {
		return "", fmt.Errorf("DNS: the datacenter of host %s is unknown (its name has none of %s; set dns.host_datacenters); not restarted",
			host, strings.Join(slices.Sorted(maps.Keys(dcSet(cfg))), ", "))
	}
	exp, _, err := e.dnsExpectation(ctx, svc)
	if err != nil {
		return "", fmt.Errorf("DNS: host check of %s: %w; not restarted", host, err)
	}
	want := exp.Want(dc)
	if e.cfg.DryRun {
		h := svc.DNS.Checker.ResolveOnHost(ctx, svc.DNS.Hosts, host, want)
		if p := h.Problem(strings.TrimSuffix(cfg.Record, ".")); p != "" {
			return "DNS " + p + " (dry-run: a run would wait for it)", nil
		}
		return fmt.Sprintf("resolves %s to %s", strings.TrimSuffix(cfg.Record, "."), want), nil
	}
	if _, err := svc.DNS.Checker.WaitHost(ctx, svc.DNS.Hosts, host, want); err != nil {
		return "", fmt.Errorf("%w; not restarted", err)
	}
	return fmt.Sprintf("resolves %s to %s", strings.TrimSuffix(cfg.Record, "."), want), nil
}

func dcSet(cfg dns.Config) map[string]bool {
	m := map[string]bool{}
	for _, d := range cfg.Datacenters {
		m[d.Name] = true
	}
	return m
}

// dnsEstimate is what the DNS step adds to a request's estimated time:
// the servers following, and the old TTL unless the caches are flushed.
func (e *Engine) dnsEstimate(ctx context.Context, svc *Service) time.Duration {
	if svc.DNS == nil {
		return 0
	}
	if len(svc.DNS.Checker.FlushArgv()) > 0 {
		return dnsConvergeEstimate
	}
	ttl := 300 * time.Second // conftool's default
	if states, err := e.deps.Conftool.List(ctx, svc.Name); err == nil && len(states) > 0 {
		ttls := map[string]int{}
		for dc, st := range states {
			ttls[dc] = st.TTL
		}
		ttl = maxTTL(ttls)
	}
	return dnsConvergeEstimate + ttl
}

// setStep records where within its state a request is (for !status).
func (e *Engine) setStep(ctx context.Context, r poolbot.Request, step string) {
	if err := e.deps.Store.Tx(ctx, func(tx *store.Tx) error {
		cur, err := tx.Request(r.ID)
		if err != nil {
			return err
		}
		cur.Step = step
		_, err = tx.UpdateRequest(cur, cur.State)
		return err
	}); err != nil && ctx.Err() == nil {
		e.log.Error("recording step", "request", r.ID, "err", err)
	}
}

// dnsNotice says a DNS step notice in the channel: "#12 DNS: …".
func (e *Engine) dnsNotice(ctx context.Context, r poolbot.Request, text string) {
	e.announce(ctx, about(r, poolbot.NoticeDNS, poolbot.StateDNS, fmt.Sprintf("%s %s", r.ID, text)))
}

// explainDNS describes the DNS step for `poolbot dry-run`: the state the
// authoritative servers must answer after the change, what they answer
// now (asked for real), and the cache flush or wait that would follow.
func (e *Engine) explainDNS(ctx context.Context, svc *Service, r poolbot.Request, states map[string]conftool.State) []string {
	d := svc.DNS
	cfg := d.Checker.Config()
	record := strings.TrimSuffix(cfg.Record, ".")
	pooled, ttls := map[string]bool{}, map[string]int{}
	for dc, st := range states {
		pooled[dc], ttls[dc] = st.Pooled, st.TTL
	}
	after := maps.Clone(pooled)
	if want, switches := r.Action.Pooled(); switches {
		after[r.Datacenter] = want
	}
	addrs, err := d.Checker.Addresses(ctx)
	if err != nil {
		return []string{"wait for DNS: cannot say what it would wait for: " + err.Error()}
	}
	exp, err := d.Checker.Expect(addrs, after)
	if err != nil {
		return []string{"wait for DNS: " + err.Error()}
	}
	var want []string
	for _, dc := range svc.dnsDatacenters() {
		want = append(want, fmt.Sprintf("%s clients get %s (%s)", dc, exp.Serving[dc], exp.Want(dc)))
	}
	lines := []string{fmt.Sprintf("wait until all %d authoritative servers (%s) answer %s as conftool says after the change: %s (timeout %s, else FAIL before any restart)",
		len(d.Checker.Servers()), strings.Join(d.Checker.Servers(), ", "), record, strings.Join(want, "; "), poolbot.FormatDuration(cfg.ConvergeTimeout))}
	rep := d.Checker.Check(ctx, exp)
	if probs := rep.Problems(); len(probs) > 0 {
		lines = append(lines, "now: "+strings.Join(probs, "; "))
	} else {
		lines = append(lines, "now: every server already answers that state")
	}
	if flush := d.Checker.FlushArgv(); len(flush) > 0 {
		for _, argv := range flush {
			lines = append(lines, "then flush the recursor caches: "+strings.Join(argv, " "))
		}
	} else {
		lines = append(lines, fmt.Sprintf("then wait %s (the record's TTL now) from that moment for cached answers to expire", poolbot.FormatDuration(maxTTL(ttls))))
	}
	if d.Hosts != nil {
		lines = append(lines, fmt.Sprintf("before each host's restart: %s until it resolves its datacenter's answer (timeout %s, else FAIL before that host)",
			strings.Join(d.Checker.HostArgv(), " "), poolbot.FormatDuration(cfg.HostTimeout)))
	}
	lines = append(lines, "SAL: DNS: <record> answers <dc> for <dc> clients on N/N authoritative servers; waited <ttl> for caches (or: caches flushed)")
	return lines
}
