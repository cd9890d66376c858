// Package procedure is the request lifecycle, in one place:
//
//	queued → waiting → blocking-deploys → switching → dns → restarting → done
//	                                                                ↘ failed, cancelled, expired
//
// For each service one worker takes the oldest unfinished request (FIFO,
// one operation at a time; a request held by the last-datacenter guard
// lets the ones behind it go first, see order.go) and:
//
//  1. evaluates the gates (calendar, scap, the last-datacenter guard) and,
//     while any is closed, waits: one notice with every blocker and the
//     estimated start, a new one only when the blockers change;
//  2. when the last gate opens, takes the deploy block (scap's global
//     lock); if a scap run slipped in first, goes back to waiting;
//  3. sets the discovery record's pooled state through conftool and reads
//     it back;
//  4. with a dns section, waits until the discovery record follows: every
//     authoritative server answers the new state, then the recursor caches
//     are flushed or their old TTL waited out (dns.go);
//  5. restarts the registry hosts in order: check the host resolves the
//     new address, restart the units, wait for every instance to be
//     healthy, probe it, pace; the first failure stops the sequence;
//  6. releases the deploy block, always, and logs the end.
//
// Every transition and every host step is stored, with the SAL lines that
// report it, before it is acted on, so a restart of poolbot continues
// from the stored step (or parks the request for an operator) and never
// repeats a completed one.
//
// Waiting is event-driven: gocron one-time jobs fire at the exact moment a
// blocking window ends, a short periodic job probes scap's locks while a
// request waits on them, and the chat side wakes the worker on a
// "Finished scap" line, a cancel or a force.
package procedure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/integrations/restart"
	"poolbot/integrations/scap"
	"poolbot/requests"
	"poolbot/store"
)

// Engine runs the lifecycle of every request.
type Engine struct {
	cfg      Config
	deps     Deps
	services map[string]*Service
	clock    clockwork.Clock
	log      *slog.Logger
	sched    gocron.Scheduler
	changes  *requests.Changes // the changes operators make, and the SAL rule

	wake map[string]chan struct{} // per service, buffered 1

	mu sync.Mutex
	// noticed is the blocker signature last announced per request (or
	// the "back to waiting" text after a scap run beat its deploy block),
	// keyed by service so that entries of finished requests can be
	// dropped.
	noticed map[string]map[poolbot.RequestID]string
	// scapWaiters are the services whose head request waits on scap.
	scapWaiters map[string]bool
	// slips counts, per request, the deploy block attempts in a row that
	// a scap run beat (see slipBackoff).
	slips map[poolbot.RequestID]int
	// broken watches each held deploy block for scap's break-glass.
	broken map[poolbot.RequestID]*breakGlass
}

// New returns an Engine for services.
func New(cfg Config, deps Deps, services []*Service) (*Engine, error) {
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.SALWritten == nil {
		deps.SALWritten = func() {}
	}
	if deps.Metrics == nil {
		deps.Metrics = noMetrics{}
	}
	if cfg.ScapPoll <= 0 {
		// A released scap lock is seen within this period: well under
		// the second the procedure aims for between the last gate
		// opening and its first action.
		cfg.ScapPoll = 250 * time.Millisecond
	}
	if cfg.PerHostEstimate <= 0 {
		cfg.PerHostEstimate = 2 * time.Minute
	}
	if cfg.ResumeAfterCrash == "" {
		cfg.ResumeAfterCrash = "auto"
	}
	sched, err := gocron.NewScheduler(gocron.WithClock(deps.Clock), gocron.WithLocation(time.UTC),
		gocron.WithLogger(gocronLogger{deps.Log}))
	if err != nil {
		return nil, fmt.Errorf("procedure: scheduler: %w", err)
	}
	e := &Engine{cfg: cfg, deps: deps, clock: deps.Clock, log: deps.Log, sched: sched,
		services: map[string]*Service{}, wake: map[string]chan struct{}{},
		noticed: map[string]map[poolbot.RequestID]string{}, scapWaiters: map[string]bool{},
		slips: map[poolbot.RequestID]int{}, broken: map[poolbot.RequestID]*breakGlass{},
		changes: requests.New(deps.Store, requests.Policy{DryRun: cfg.DryRun})}
	for _, s := range services {
		e.services[s.Name] = s
		e.wake[s.Name] = make(chan struct{}, 1)
		e.noticed[s.Name] = map[poolbot.RequestID]string{}
	}
	return e, nil
}

// Run starts the scheduler and one worker per service, and returns when
// ctx ends and every worker has stopped (each finishes or parks its
// current host step and releases the deploy block first).
func (e *Engine) Run(ctx context.Context) error {
	// While some request waits on scap, probe it every ScapPoll and wake
	// that service when scap is clear.
	e.sched.RemoveByTags("scap-poll")
	if _, err := e.sched.NewJob(gocron.DurationJob(e.cfg.ScapPoll),
		gocron.NewTask(e.pollScap, ctx), gocron.WithName("scap-poll"), gocron.WithTags("scap-poll"),
		gocron.WithSingletonMode(gocron.LimitModeReschedule)); err != nil {
		return fmt.Errorf("procedure: scap poll job: %w", err)
	}
	e.sched.Start()
	// Stopped, not shut down: the one-time wake-ups stay scheduled, and a
	// later Run (tests that stop and start poolbot) starts them again.
	defer func() { _ = e.sched.StopJobs() }()

	if err := e.recoverInterrupted(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for name, svc := range e.services {
		wg.Go(func() { e.worker(ctx, svc) })
		e.Notify(name)
	}
	wg.Wait()
	return nil
}

// Close releases the scheduler. The engine cannot run again after it.
func (e *Engine) Close() error { return e.sched.Shutdown() }

// worker advances the service's queue whenever it is woken.
func (e *Engine) worker(ctx context.Context, svc *Service) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.wake[svc.Name]:
		}
		e.advance(ctx, svc)
	}
}

// advance does everything that can be done for a service now: expire
// requests that waited too long, then either run the head of the queue
// or record why it waits.
func (e *Engine) advance(ctx context.Context, svc *Service) {
	for ctx.Err() == nil {
		queue, err := e.deps.Store.Unfinished(ctx, svc.Name)
		if err != nil {
			e.log.Error("reading the queue", "service", svc.Name, "err", err)
			e.wakeAt(svc.Name, "retry", e.clock.Now().Add(10*time.Second))
			return
		}
		queue = e.expire(ctx, queue)
		e.forgetNotices(svc.Name, queue)
		if len(queue) == 0 {
			e.setScapWaiter(svc.Name, false)
			e.deps.Metrics.Gates(svc.Name, nil, time.Time{})
			return
		}
		if a, ok := active(queue); ok {
			// One operation at a time: nothing else starts while a
			// request runs or is parked.
			e.deps.Metrics.Gates(svc.Name, nil, time.Time{})
			if a.Parked && a.CancelRequested {
				// Parked after a crash: poolbot holds no deploy block, so
				// the cancel ends the request here and now.
				e.endParked(ctx, a)
				continue
			}
			if a.Parked {
				return // waits for !resume or !cancel
			}
			// Interrupted by a restart of poolbot: continue from the
			// stored step.
			e.execute(ctx, svc, a)
			continue
		}
		next, ok := e.nextToRun(ctx, svc, queue)
		if !ok {
			return
		}
		e.setScapWaiter(svc.Name, false)
		if !e.proceed(ctx, next) {
			continue
		}
		next, err = e.deps.Store.Request(ctx, next.ID)
		if err != nil {
			e.log.Error("re-reading request", "request", next.ID, "err", err)
			return
		}
		e.execute(ctx, svc, next)
	}
}

// nextToRun evaluates the gates of the pending requests in queue order
// (see order.go) and returns the first one whose gates are open. Each
// request evaluated on the way waits: one held by the last-datacenter
// guard steps aside and the next is evaluated; any other blocker holds
// back every request behind it. ok is false when none can start now.
func (e *Engine) nextToRun(ctx context.Context, svc *Service, queue []poolbot.Request) (poolbot.Request, bool) {
	now := e.clock.Now()
	for i, r := range queue {
		v := e.evaluate(ctx, svc, r, now)
		if i == 0 {
			e.reportGates(svc.Name, r, v)
		}
		if v.clear() {
			e.markBehind(ctx, queue[i+1:], r)
			return r, true
		}
		if v.stepsAside() {
			e.wait(ctx, svc, r, v, stepAsideNote)
			continue
		}
		e.wait(ctx, svc, r, v, "")
		e.markBehind(ctx, queue[i+1:], r)
		return poolbot.Request{}, false
	}
	return poolbot.Request{}, false
}

// expire ends pending requests that waited longer than MaxWait and
// returns the rest of the queue.
func (e *Engine) expire(ctx context.Context, queue []poolbot.Request) []poolbot.Request {
	if e.cfg.MaxWait <= 0 {
		return queue
	}
	now := e.clock.Now()
	kept := queue[:0:0]
	for _, r := range queue {
		deadline := r.CreatedAt.Add(e.cfg.MaxWait)
		if !r.State.Pending() || now.Before(deadline) {
			kept = append(kept, r)
			e.wakeAt(r.Service, fmt.Sprintf("expire-%d", r.ID), deadline)
			continue
		}
		why := fmt.Sprintf("expired after waiting %s", poolbot.FormatDuration(now.Sub(r.CreatedAt)))
		if r.Step != "" {
			why += "; last blockers: " + r.Step
		}
		err := e.transition(ctx, r, r.State, poolbot.StateExpired, func(n *poolbot.Request) { n.Error = why }, "expired", why)
		if err != nil {
			e.log.Error("expiring request", "request", r.ID, "err", err)
			kept = append(kept, r)
			continue
		}
		e.announce(ctx, toOperator(r, poolbot.NoticeEnded, poolbot.StateExpired,
			fmt.Sprintf("%s %s (%s) %s", r.ID, r.Summary(), r.Operator, why)))
	}
	return kept
}

// markBehind records, once, that queued requests wait for the one ahead.
func (e *Engine) markBehind(ctx context.Context, rest []poolbot.Request, head poolbot.Request) {
	for _, r := range rest {
		if r.Parked || r.State.Running() {
			continue
		}
		step := fmt.Sprintf("behind %s in the %s queue", head.ID, r.Service)
		if r.Step == step {
			continue
		}
		err := e.transition(ctx, r, r.State, poolbot.StateWaiting, func(n *poolbot.Request) { n.Step = step }, "waiting", step)
		if err != nil {
			e.log.Error("recording queue position", "request", r.ID, "err", err)
		}
	}
}

// wait records that the head request waits, announces its blockers when
// they changed, and arranges to be woken when they may have cleared.
func (e *Engine) wait(ctx context.Context, svc *Service, r poolbot.Request, v verdict, note string) {
	summary := v.summary()
	if note != "" {
		summary += "; " + note
	}
	if r.State != poolbot.StateWaiting || r.Step != summary {
		err := e.transition(ctx, r, r.State, poolbot.StateWaiting, func(n *poolbot.Request) { n.Step = summary }, "waiting", summary)
		if err != nil {
			e.log.Error("recording wait", "request", r.ID, "err", err)
		}
	}
	if e.noteChanged(r, v.signature()) {
		n := about(r, poolbot.NoticeWaiting, poolbot.StateWaiting, fmt.Sprintf("%s %s (%s) waiting: %s", r.ID, r.Summary(), r.Operator, summary))
		n.Blockers, n.ETA = v.blockerTexts(), v.eta
		e.announce(ctx, n)
	}
	// The gates see what holds it up now: its next proceed is news again,
	// and no longer a retry after a slip-in.
	e.mu.Lock()
	delete(e.slips, r.ID)
	e.mu.Unlock()
	if !v.nextCheck.IsZero() {
		e.wakeAt(svc.Name, "calendar", v.nextCheck)
	}
	e.setScapWaiter(svc.Name, v.scapBlocked)
}

// proceed moves a request whose gates are open into blocking-deploys.
// It returns false if someone changed the request first.
func (e *Engine) proceed(ctx context.Context, r poolbot.Request) bool {
	how := "all gates open"
	if e.forceEffective(r) {
		how = "FORCED by " + r.ForcedBy + ", calendar and scap gates skipped"
	}
	err := e.transition(ctx, r, r.State, poolbot.StateBlockingDeploys,
		func(n *poolbot.Request) { n.Step = "taking the deploy block" }, "proceed", how)
	if err != nil {
		if !errors.Is(err, store.ErrConflict) {
			e.log.Error("proceeding", "request", r.ID, "err", err)
		}
		return false
	}
	e.mu.Lock()
	retry := e.slips[r.ID] > 0
	if !retry {
		delete(e.noticed[r.Service], r.ID)
	}
	e.mu.Unlock()
	if !retry { // a retry after a scap run beat the block was announced already
		e.announce(ctx, about(r, poolbot.NoticeProceeding, poolbot.StateBlockingDeploys,
			fmt.Sprintf("%s %s (%s) proceeding: %s", r.ID, r.Summary(), r.Operator, how)))
	}
	return true
}

// execute runs a request from its stored state to the end. It is entered
// in blocking-deploys (fresh, or after a crash), switching or restarting
// (after a crash).
func (e *Engine) execute(ctx context.Context, svc *Service, r poolbot.Request) {
	log := e.log.With("request", int64(r.ID), "service", r.Service)
	started := e.clock.Now()
	if !r.StartedAt.IsZero() {
		started = r.StartedAt
	}

	// 1. Block deploys. A request resumed after a crash takes the block
	// again: the kernel dropped poolbot's lock when it died.
	release, ok := e.takeDeployBlock(ctx, svc, r)
	if !ok {
		return
	}
	release, glass := e.watchBreakGlass(ctx, r, release)
	defer e.forgetBreakGlass(r.ID)
	parkedByDeployer := func() bool {
		req, fired := glass.firedRequest()
		if fired {
			e.parkAfterBreakGlass(ctx, r, req)
		}
		return fired
	}
	end := func(state poolbot.State, outcome, detail string) {
		e.finish(ctx, r.ID, release, started, state, outcome, detail)
	}
	r, err := e.deps.Store.Request(ctx, r.ID)
	if err != nil {
		log.Error("re-reading request", "err", err)
		e.releaseOnly(ctx, r, release)
		return
	}

	// 2. Switch the discovery record.
	if r.State == poolbot.StateSwitching {
		if r.CancelRequested {
			// Cancelled while the block was being taken: nothing changed
			// yet, so end here rather than leave a switched record
			// without its restarts (the incident's state).
			end(poolbot.StateCancelled, "CANCELLED", fmt.Sprintf("cancelled by %s before the conftool change; %s",
				r.CancelledBy, e.describePooled(ctx, r)))
			return
		}
		if parkedByDeployer() {
			return
		}
		if ctx.Err() != nil {
			e.releaseOnly(ctx, r, release)
			return
		}
		// Like a host step, a conftool write once begun is finished even
		// if poolbot is asked to stop: a shutdown must not turn it into a
		// failed request (the backends bound it with their own timeouts).
		if err := e.withServiceRoute(context.WithoutCancel(ctx), r, func() error {
			return e.switchPooled(context.WithoutCancel(ctx), svc, r)
		}); err != nil {
			// The conftool client names itself in its errors; the lock
			// and read-back errors do not.
			msg := err.Error()
			if !strings.HasPrefix(msg, "conftool: ") {
				msg = "conftool: " + msg
			}
			end(poolbot.StateFailed, "FAIL", msg)
			return
		}
		if r, err = e.deps.Store.Request(ctx, r.ID); err != nil {
			log.Error("re-reading request", "err", err)
			e.releaseOnly(ctx, r, release)
			return
		}
	}

	// 3. Wait until DNS follows the change: no host is restarted while it
	// may still resolve the old datacenter.
	if r.State == poolbot.StateDNS {
		state, outcome, detail := e.dnsStep(ctx, svc, r)
		switch state {
		case "":
			e.releaseOnly(ctx, r, release)
			return
		case poolbot.StateRestarting:
		default:
			end(state, outcome, detail)
			return
		}
		if r, err = e.deps.Store.Request(ctx, r.ID); err != nil {
			log.Error("re-reading request", "err", err)
			e.releaseOnly(ctx, r, release)
			return
		}
	}

	// 4. Restart the hosts, one at a time.
	state, outcome, detail := e.restartHosts(ctx, svc, r)
	if state == "" {
		if parkedByDeployer() {
			return
		}
		// Shutting down between hosts: the request stays where it is and
		// continues after the restart.
		e.releaseOnly(ctx, r, release)
		return
	}
	end(state, outcome, detail)
}

// takeDeployBlock takes scap's global lock for r and records it (with the
// SAL START line for a fresh request) in the same transaction that moves
// the request on. ok is false when the request went back to waiting or
// failed.
func (e *Engine) takeDeployBlock(ctx context.Context, svc *Service, r poolbot.Request) (release scap.Release, ok bool) {
	reason := fmt.Sprintf("poolbot %s: %s (%s): %s", r.ID, r.Summary(), r.Operator, r.Reason)
	said := "" // the last problem announced, so a retry loop is not a flood
	sayOnce := func(text string) {
		if text != said {
			said = text
			e.announce(ctx, about(r, poolbot.NoticeInfo, "", text))
		}
	}
	for {
		if e.cfg.DryRun {
			e.announce(ctx, about(r, poolbot.NoticeInfo, "", fmt.Sprintf("DRY-RUN %s: would take the deploy block (%s)", r.ID, reason)))
			release = func(context.Context) error { return nil }
			break
		}
		var err error
		release, err = e.deps.Blocker.Block(ctx, reason)
		if err == nil {
			break
		}
		var held *scap.HeldError
		heldErr := errors.Is(err, scap.ErrLockHeld) || errors.As(err, &held)
		switch {
		case heldErr && r.State == poolbot.StateBlockingDeploys && e.forceEffective(r):
			// !force skips the scap gate but cannot break a lock held by a
			// running scap process: take it the moment that run ends,
			// without going back through the gates (which a forced request
			// would pass at once, round and round).
			cur, rerr := e.deps.Store.Request(ctx, r.ID)
			if rerr == nil && cur.CancelRequested {
				e.cancelBeforeStart(ctx, cur)
				return nil, false
			}
			e.setScapWaiter(svc.Name, true)
			sayOnce(fmt.Sprintf("%s %s is FORCED but cannot break a running scap command's lock; it takes the deploy block as soon as that ends: %v",
				r.ID, r.Summary(), err))
			if !e.sleep(ctx, svc.Name, e.cfg.ScapPoll) {
				return nil, false
			}
			continue
		case heldErr && r.State == poolbot.StateBlockingDeploys:
			// A scap run slipped in between the gate check and the lock:
			// back to waiting, nothing was done. The gates normally see
			// that run at once; where they cannot (no lock probe on this
			// host, a lock command backend), the next attempts back off so
			// that a long scap run does not make a flood of attempts.
			why := "a scap run started first (" + err.Error() + ")"
			if terr := e.transition(ctx, r, r.State, poolbot.StateWaiting,
				func(n *poolbot.Request) { n.Step = why }, "waiting", why); terr != nil {
				e.log.Error("back to waiting", "request", r.ID, "err", terr)
			}
			if e.noteChanged(r, "slipped-in: "+why) {
				n := about(r, poolbot.NoticeInfo, poolbot.StateWaiting, fmt.Sprintf("%s %s back to waiting: %s", r.ID, r.Summary(), why))
				n.Blockers = []string{why}
				e.announce(ctx, n)
			}
			e.sleep(ctx, svc.Name, e.slipBackoff(r))
			return nil, false
		case heldErr:
			// Resuming mid-operation (conftool may already be changed):
			// wait for the scap run to finish, then take the block.
			sayOnce(fmt.Sprintf("%s %s is interrupted mid-operation and waits for a scap run to end before it continues: %v",
				r.ID, r.Summary(), err))
			if !e.sleep(ctx, svc.Name, e.cfg.ScapPoll) {
				return nil, false
			}
			continue
		case ctx.Err() != nil:
			return nil, false
		default:
			why := "could not take the deploy block: " + err.Error()
			if r.State == poolbot.StateBlockingDeploys {
				if terr := e.transition(ctx, r, r.State, poolbot.StateFailed,
					func(n *poolbot.Request) { n.Error = why }, "failed", why); terr != nil {
					e.log.Error("failing request", "request", r.ID, "err", terr)
				}
				e.announce(ctx, toOperator(r, poolbot.NoticeEnded, poolbot.StateFailed, fmt.Sprintf("%s %s FAILED: %s", r.ID, r.Summary(), why)))
				return nil, false
			}
			sayOnce(fmt.Sprintf("%s %s cannot continue: %s; retrying", r.ID, r.Summary(), why))
			if !e.sleep(ctx, svc.Name, 10*e.cfg.ScapPoll) {
				return nil, false
			}
			continue
		}
	}

	e.setScapWaiter(svc.Name, false)
	e.mu.Lock()
	delete(e.slips, r.ID)
	e.mu.Unlock()
	// Record the block; a fresh request moves on and logs its START.
	next := r.State
	var lines []poolbot.Notice
	if r.State == poolbot.StateBlockingDeploys {
		next = afterBlock(svc, r)
		start := about(r, poolbot.NoticeStarted, next, "START - "+r.Summary()+": "+r.Reason)
		start.Title = r.Summary() + ": " + r.Reason
		lines = append(lines, start, about(r, poolbot.NoticeStarted, next, "deploy block taken (scap locked for all deployments)"))
	} else {
		lines = append(lines, about(r, poolbot.NoticeStarted, next,
			"deploy block re-taken, continuing at "+string(r.State)+" (after a poolbot restart or !resume)"))
	}
	err := e.transitionSAL(ctx, r, r.State, next, func(n *poolbot.Request) { n.Step = "" }, "deploy-block", "taken", lines...)
	if err != nil {
		e.log.Error("recording deploy block", "request", r.ID, "err", err)
		e.releaseOnly(ctx, r, release)
		return nil, false
	}
	e.announce(ctx, about(r, poolbot.NoticeStarted, next,
		fmt.Sprintf("%s deploys are blocked while %s runs (estimated %s)", r.ID, r.Summary(), poolbot.FormatDuration(e.estimate(ctx, svc)))))
	e.watchWindowsWhileBlocked(ctx, svc, r)
	return release, true
}

// switchPooled sets pooled through conftool, reads it back, and records
// the change with its SAL line as the request moves to restarting.
func (e *Engine) switchPooled(ctx context.Context, svc *Service, r poolbot.Request) error {
	want, _ := r.Action.Pooled()
	before, err := e.deps.Conftool.Get(ctx, r.Service, r.Datacenter)
	if err != nil {
		return err
	}
	var line string
	switch {
	case e.cfg.DryRun:
		e.announce(ctx, about(r, poolbot.NoticeInfo, "",
			fmt.Sprintf("DRY-RUN %s: would set %s/%s pooled=%t (now %t)", r.ID, r.Service, r.Datacenter, want, before.Pooled)))
		line = fmt.Sprintf("DRY-RUN conftool %s/%s pooled=%t", r.Service, r.Datacenter, want)
	default:
		after, how, err := e.setPooled(ctx, r, want)
		if err != nil {
			return err
		}
		if after.Pooled != want {
			return fmt.Errorf("read back pooled=%t after setting %t", after.Pooled, want)
		}
		if svc.DNS != nil {
			// The TTL the recursors may hold the old answer for, read
			// before the write (a crash before this is stored redoes the
			// switch, which reads the same TTL).
			step := poolbot.DNSStep{RequestID: r.ID, OldTTL: time.Duration(before.TTL) * time.Second}
			if err := e.deps.Store.Tx(ctx, func(tx *store.Tx) error { return tx.PutDNSStep(step) }); err != nil {
				// Not fatal: the DNS step then reads the TTL now, the
				// same unless someone changed it meanwhile.
				e.log.Error("storing the old TTL", "request", r.ID, "err", err)
			}
		}
		// confctl's own SAL wording, so a search for "conftool action"
		// finds poolbot's changes beside the manual ones.
		line = confctlLine(fmt.Sprintf("set/pooled=%t", want), fmt.Sprintf("dnsdisc=%s,name=%s", r.Service, r.Datacenter))
		if before.Pooled == want {
			line += fmt.Sprintf(" (no change: already pooled=%t, restarting anyway)", want)
		}
		if how != "" {
			line += "; " + how
		}
	}
	return e.transitionSAL(ctx, r, poolbot.StateSwitching, afterSwitch(svc), nil, "conftool", line,
		about(r, poolbot.NoticeSwitched, afterSwitch(svc), line))
}

// restartHosts walks the stored restart plan. It returns the final state
// with the SAL outcome and detail, or state "" when ctx ended between
// hosts (the request stays in restarting).
func (e *Engine) restartHosts(ctx context.Context, svc *Service, r poolbot.Request) (poolbot.State, string, string) {
	steps, err := e.hostSteps(ctx, svc, r)
	if err != nil {
		if ctx.Err() != nil {
			return "", "", "" // shutting down before the first host
		}
		return poolbot.StateFailed, "FAIL", "storing the restart plan: " + err.Error()
	}
	n := len(steps)
	var done []string
	for _, s := range steps {
		if s.State == poolbot.HostDone {
			done = append(done, s.Host)
		}
	}
	left := func(from int) []string {
		var hs []string
		for _, t := range steps[from:] {
			hs = append(hs, t.Host)
		}
		return hs
	}
	// failed is the END detail for the host at index i failing with cause.
	failed := func(i int, cause string) string {
		s := steps[i]
		return fmt.Sprintf("host %d/%d %s: %s; %s", s.Position, n, s.Host, cause, progress(done, left(i+1)))
	}
	// stopped is the outcome when the request stops before the host at
	// index i: cancelled, or poolbot shutting down (state "").
	stopped := func(i int, stop hostStop) (poolbot.State, string, string) {
		if stop.shutdown {
			return "", "", ""
		}
		return poolbot.StateCancelled, "CANCELLED", fmt.Sprintf("cancelled by %s after %d/%d hosts; %s",
			stop.cancelledBy, len(done), n, progress(done, left(i)))
	}
	// begun is the index of the host whose step the previous host's
	// transaction already began (stored as restarting), or -1.
	begun := -1
	for i, s := range steps {
		if s.State == poolbot.HostDone {
			continue
		}
		if s.State == poolbot.HostFailed {
			// A host failed and poolbot stopped before it recorded the
			// end (a crash, or the deploy block release hung): the failure
			// stands. Only an operator's !resume retries the host.
			return poolbot.StateFailed, "FAIL", failed(i, s.Detail)
		}
		if e.brokenGlass(r.ID) {
			// A deployer broke the deploy block: park. A host the previous
			// host's commit began was not touched: it is pending again.
			if begun == i {
				if err := e.deps.Store.Tx(context.WithoutCancel(ctx), func(tx *store.Tx) error {
					return tx.UpdateHostStep(r.ID, s.Position, poolbot.HostPending, "")
				}); err != nil {
					e.log.Error("putting an untouched host back to pending", "request", r.ID, "err", err)
				}
			}
			return "", "", ""
		}
		if ok, err := e.waitRestartLock(ctx, r); err != nil {
			return poolbot.StateFailed, "FAIL", failed(i, "not restarted: "+err.Error())
		} else if !ok {
			return "", "", ""
		}
		if begun != i {
			// Store the step before touching the host, in the transaction
			// that checks for a cancel.
			var stop *hostStop
			if err := e.deps.Store.Tx(ctx, func(tx *store.Tx) error {
				var err error
				stop, err = e.beginHost(ctx, tx, r, s)
				return err
			}); err != nil {
				if ctx.Err() != nil {
					return "", "", "" // the host was not touched
				}
				return poolbot.StateFailed, "FAIL", "storing host step: " + err.Error()
			}
			if stop != nil {
				return stopped(i, *stop)
			}
		}
		// A host in progress is finished even if poolbot is asked to stop:
		// leaving units half-restarted is worse than a slower shutdown.
		hostCtx := context.WithoutCancel(ctx)
		hostStart := e.clock.Now()
		detail, herr := e.guardedRestart(hostCtx, svc, r, s)
		e.deps.Metrics.HostRestarted(svc.Name, s.Host, e.clock.Since(hostStart), herr)
		// Its outcome is recorded with hostCtx too: a shutdown asked for
		// meanwhile must not turn a finished host into a failed request.
		if herr != nil {
			if err := e.deps.Store.Tx(hostCtx, func(tx *store.Tx) error {
				return tx.UpdateHostStep(r.ID, s.Position, poolbot.HostFailed, herr.Error())
			}); err != nil {
				e.log.Error("storing host failure", "request", r.ID, "err", err)
			}
			return poolbot.StateFailed, "FAIL", failed(i, herr.Error())
		}
		done = append(done, s.Host)
		line := fmt.Sprintf("restarted %s on %s (%d/%d): %s", strings.Join(svc.Plan.Units, " "), s.Host, s.Position, n, detail)
		// With no pace to wait between hosts, the transaction that records
		// this host done also begins the next one (the cancel check and its
		// restarting record): one commit, one fsync, per host. Not when the
		// next host may have to wait for the registry roll-restart lock: it
		// is stored as restarting only once it may start.
		next := -1
		if i+1 < n && svc.Plan.Pace <= 0 && !e.restartLockChecked() &&
			steps[i+1].State != poolbot.HostDone && steps[i+1].State != poolbot.HostFailed {
			next = i + 1
		}
		var stop *hostStop
		if err := e.deps.Store.Tx(hostCtx, func(tx *store.Tx) error {
			if err := tx.UpdateHostStep(r.ID, s.Position, poolbot.HostDone, detail); err != nil {
				return err
			}
			if err := tx.AddEvent(poolbot.Event{RequestID: r.ID, Actor: poolbot.ActorPoolbot, Kind: "host",
				FromState: poolbot.StateRestarting, ToState: poolbot.StateRestarting, Detail: line}); err != nil {
				return err
			}
			host := about(r, poolbot.NoticeHost, poolbot.StateRestarting, line)
			host.Host, host.Hosts = s.Position, n
			if err := e.queueSAL(tx, r, host); err != nil {
				return err
			}
			if next >= 0 {
				// Should beginning the next host fail, this host is still
				// recorded done: the next host's own transaction begins it
				// and reports the error.
				if st, err := e.beginHost(ctx, tx, r, steps[next]); err == nil {
					stop, begun = st, next
				}
			}
			return nil
		}); err != nil {
			return poolbot.StateFailed, "FAIL", "storing host step: " + err.Error()
		}
		e.deps.SALWritten()
		if stop != nil {
			return stopped(next, *stop)
		}
		if i < n-1 && svc.Plan.Pace > 0 {
			e.sleep(ctx, svc.Name, svc.Plan.Pace)
		}
	}
	return poolbot.StateDone, "PASS", fmt.Sprintf("%d/%d hosts restarted", n, n)
}

// hostStop is why a request stops before a host: a cancel, or poolbot
// shutting down.
type hostStop struct {
	cancelledBy string
	shutdown    bool
}

// beginHost, in tx, checks that the request may go on to host step s and
// stores s as restarting; it returns why not instead when the request was
// cancelled or poolbot is shutting down (ctx ended), and then stores
// nothing.
func (e *Engine) beginHost(ctx context.Context, tx *store.Tx, r poolbot.Request, s poolbot.HostStep) (*hostStop, error) {
	cur, err := tx.Request(r.ID)
	if err != nil {
		return nil, err
	}
	if cur.CancelRequested {
		return &hostStop{cancelledBy: cur.CancelledBy}, nil
	}
	if ctx.Err() != nil {
		return &hostStop{shutdown: true}, nil
	}
	return nil, tx.UpdateHostStep(r.ID, s.Position, poolbot.HostRestarting, "")
}

// hostSteps returns the stored restart plan, writing it from the
// service's plan the first time.
func (e *Engine) hostSteps(ctx context.Context, svc *Service, r poolbot.Request) ([]poolbot.HostStep, error) {
	var steps []poolbot.HostStep
	err := e.deps.Store.Tx(ctx, func(tx *store.Tx) error {
		var err error
		if steps, err = tx.HostSteps(r.ID); err != nil || len(steps) > 0 {
			return err
		}
		if err := tx.InsertHostSteps(r.ID, svc.Plan.Hosts); err != nil {
			return err
		}
		steps, err = tx.HostSteps(r.ID)
		return err
	})
	return steps, err
}

// restartOneHost restarts the units on host, then waits until every
// registry instance on it is healthy and, if configured, passes the
// write-then-read probe.
//
// resolved is what the host's DNS check found (checkHostDNS), which
// guardedRestart runs before it silences or drains the host.
func (e *Engine) restartOneHost(ctx context.Context, svc *Service, r poolbot.Request, host, resolved string) (string, error) {
	if e.cfg.DryRun {
		e.announce(ctx, about(r, poolbot.NoticeInfo, "", fmt.Sprintf("DRY-RUN %s: would restart %s on %s", r.ID, strings.Join(svc.Plan.Units, " "), host)))
	} else {
		// The step error names the failing step and, when the command ran,
		// its exit code and output tail.
		if _, err := restart.RestartHost(ctx, svc.Executor, svc.Plan, host); err != nil {
			return "", err
		}
	}
	var checks []string
	for _, inst := range svc.Instances(host) {
		if err := svc.Registry.WaitHealthy(ctx, inst, e.cfg.Health); err != nil {
			return "", fmt.Errorf("%s not healthy: %w", inst.Name, err)
		}
		c := inst.Name + " healthy"
		if svc.Probe && !e.cfg.DryRun {
			res, err := e.probeAfterRestart(ctx, svc, r, host, inst)
			if err != nil {
				return "", err
			}
			if !res.OK {
				return "", fmt.Errorf("%s write-then-read probe failed: %s", inst.Name, res)
			}
			c += ", probe ok"
		}
		checks = append(checks, c)
	}
	detail := strings.Join(checks, "; ")
	if len(checks) == 0 {
		detail = "no registry instances to check"
	}
	if resolved != "" {
		detail = resolved + "; " + detail
	}
	if e.cfg.DryRun {
		// Marked so that the time estimate does not learn from a host
		// that was not restarted.
		detail = poolbot.DryRunMark + " (not restarted): " + detail
	}
	return detail, nil
}

// finish releases the deploy block and records the end of a request with
// its SAL lines: the release, then END (PASS|FAIL|CANCELLED).
func (e *Engine) finish(ctx context.Context, id poolbot.RequestID, release scap.Release, started time.Time,
	state poolbot.State, outcome, detail string) {
	// Recording the end must happen even while poolbot shuts down.
	ctx = context.WithoutCancel(ctx)
	r, err := e.deps.Store.Request(ctx, id)
	if err != nil {
		e.log.Error("finishing request", "request", id, "err", err)
		_ = release(ctx)
		return
	}
	releaseLine := "deploy block released"
	if err := release(ctx); err != nil {
		releaseLine = "deploy block release FAILED (" + err.Error() + "): unlock scap by hand (scap lock --unlock-all)"
		e.announce(ctx, toOperator(r, poolbot.NoticeInfo, "",
			fmt.Sprintf("%s could not release the deploy block: %v — deploys stay blocked until it is released by hand", r.ID, err)))
	}
	end := endLine(outcome, r, detail, e.clock.Now().Sub(started))
	endID, err := e.transitionSALFollowed(ctx, r, r.State, state, func(n *poolbot.Request) {
		n.Step = ""
		if state != poolbot.StateDone {
			n.Error = detail
		}
	}, "end", outcome+": "+detail, about(r, poolbot.NoticeInfo, "", releaseLine), about(r, poolbot.NoticeEnded, state, end))
	if err != nil {
		e.log.Error("recording end", "request", id, "err", err)
	}
	// The operator's notice follows the END line, not what an operator
	// queued after reading it (a !resume, whose line would hold it back).
	ended := toOperator(r, poolbot.NoticeEnded, state,
		fmt.Sprintf("%s %s %s: %s", r.ID, r.Summary(), strings.ToUpper(string(state)), detail))
	ended.FollowsSAL = endID
	e.announce(ctx, ended)
	e.stopWindowWatch(r.ID)
	e.mu.Lock()
	delete(e.noticed[r.Service], r.ID)
	e.mu.Unlock()
}

// endParked ends a request that was parked after a crash and then
// cancelled. poolbot holds no deploy block for it; what was already done
// (a conftool change, some hosts) is named in the END line so that the
// operator knows what is left to do by hand.
func (e *Engine) endParked(ctx context.Context, r poolbot.Request) {
	started := r.StartedAt
	if started.IsZero() {
		started = r.CreatedAt
	}
	detail := fmt.Sprintf("cancelled by %s while parked at %s", r.CancelledBy, r.State)
	if steps, err := e.deps.Store.HostSteps(ctx, r.ID); err == nil && len(steps) > 0 {
		var done, left []string
		for _, s := range steps {
			if s.State == poolbot.HostDone {
				done = append(done, s.Host)
			} else {
				left = append(left, s.Host)
			}
		}
		detail += "; " + progress(done, left)
	}
	if _, switches := r.Action.Pooled(); switches {
		detail += "; " + e.describePooled(ctx, r)
	}
	if steps, err := e.deps.Store.HostSteps(ctx, r.ID); err == nil {
		if left := e.guardsLeft(ctx, r, steps); left != "" {
			detail += "; " + left
		}
	}
	end := endLine("CANCELLED", r, detail, e.clock.Now().Sub(started))
	err := e.transitionSAL(ctx, r, r.State, poolbot.StateCancelled, func(n *poolbot.Request) {
		n.Step, n.Parked, n.Error = "", false, detail
	}, "end", "CANCELLED: "+detail, about(r, poolbot.NoticeEnded, poolbot.StateCancelled, end))
	if err != nil {
		e.log.Error("ending parked request", "request", r.ID, "err", err)
		return
	}
	e.announce(ctx, toOperator(r, poolbot.NoticeEnded, poolbot.StateCancelled, fmt.Sprintf("%s %s CANCELLED: %s", r.ID, r.Summary(), detail)))
}

// cancelBeforeStart ends a request cancelled while it was still trying
// to take the deploy block: nothing was done and no START was logged.
func (e *Engine) cancelBeforeStart(ctx context.Context, r poolbot.Request) {
	detail := fmt.Sprintf("cancelled by %s before it started", r.CancelledBy)
	err := e.transition(ctx, r, r.State, poolbot.StateCancelled, func(n *poolbot.Request) {
		n.Step, n.Error = "", detail
	}, "cancel", detail)
	if err != nil {
		e.log.Error("cancelling request", "request", r.ID, "err", err)
		return
	}
	e.announce(ctx, toOperator(r, poolbot.NoticeEnded, poolbot.StateCancelled, fmt.Sprintf("%s %s CANCELLED: %s", r.ID, r.Summary(), detail)))
}

// describePooled reads the request's discovery record for an END line:
// "apus/codfw pooled=true now".
func (e *Engine) describePooled(ctx context.Context, r poolbot.Request) string {
	st, err := e.deps.Conftool.Get(context.WithoutCancel(ctx), r.Service, r.Datacenter)
	if err != nil {
		return fmt.Sprintf("%s/%s pooled state unreadable (%v): check it by hand", r.Service, r.Datacenter, err)
	}
	return fmt.Sprintf("%s/%s pooled=%t now", r.Service, r.Datacenter, st.Pooled)
}

// releaseOnly releases the deploy block without ending the request
// (shutdown between steps). The request continues after the restart.
func (e *Engine) releaseOnly(ctx context.Context, r poolbot.Request, release scap.Release) {
	ctx = context.WithoutCancel(ctx)
	if err := release(ctx); err != nil {
		e.log.Error("releasing deploy block at shutdown", "request", r.ID, "err", err)
		return
	}
	line := "deploy block released: poolbot is stopping; the request continues after it restarts"
	if err := e.deps.Store.Tx(ctx, func(tx *store.Tx) error { return e.queueSAL(tx, r, about(r, poolbot.NoticeInfo, "", line)) }); err != nil {
		e.log.Error("recording release", "request", r.ID, "err", err)
	}
	e.deps.SALWritten()
	e.stopWindowWatch(r.ID)
}

// recoverInterrupted deals with requests a previous run left mid-way: with
// ResumeAfterCrash "auto" the workers simply continue them; with "ask"
// they are parked and announced.
func (e *Engine) recoverInterrupted(ctx context.Context) error {
	for name := range e.services {
		open, err := e.deps.Store.Unfinished(ctx, name)
		if err != nil {
			return fmt.Errorf("procedure: recovery: %w", err)
		}
		for _, r := range open {
			if !r.State.Running() {
				continue
			}
			if e.cfg.ResumeAfterCrash == "auto" {
				e.announce(ctx, about(r, poolbot.NoticeInfo, "",
					fmt.Sprintf("%s %s was interrupted at %s by a poolbot restart; continuing", r.ID, r.Summary(), r.State)))
				continue
			}
			if r.Parked {
				continue
			}
			why := fmt.Sprintf("interrupted at %s by a poolbot restart; deploys are NOT blocked; %sresume %d to continue or %scancel %d",
				r.State, "!", int64(r.ID), "!", int64(r.ID))
			err := e.transition(ctx, r, r.State, r.State, func(n *poolbot.Request) { n.Parked = true; n.Step = why }, "parked", why)
			if err != nil {
				return fmt.Errorf("procedure: parking %s: %w", r.ID, err)
			}
			e.announce(ctx, toOperator(r, poolbot.NoticeInfo, "", fmt.Sprintf("%s %s %s", r.ID, r.Summary(), why)))
		}
	}
	return nil
}
