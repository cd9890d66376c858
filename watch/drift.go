package watch

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/integrations/conftool"
	"poolbot/requests"
	"poolbot/store"
)

// maxPendingChanges bounds the changes of one service collected in one
// debounce window (a flapping object); beyond it the oldest are dropped,
// the drift still says how many there were.
const maxPendingChanges = 64

// maxReasonBytes is the command layer's bound on a request reason, so a
// drift request reads like one an operator typed.
const maxReasonBytes = 250

// watchErrorShown is how long a conftool watch error stays in !status:
// the watch reports the start of a failure streak, never its end.
const watchErrorShown = 15 * time.Minute

// originPoolbot is where requests queued by the watch come from.
var originPoolbot = poolbot.Origin{Network: poolbot.NetworkPoolbot, Nick: "poolbot"}

// poolbotActor is the audit actor of what the drift watch records.
var poolbotActor = requests.Actor{Name: poolbot.ActorPoolbot, Origin: originPoolbot}

// observed is one pooled change the watch has not yet ruled on.
type observed struct {
	dc        string
	oldPooled bool
	newPooled bool
	deleted   bool
	resync    bool
	raw       conftool.Change
	seen      time.Time
}

// serviceDrift is the drift watch's view of one service.
type serviceDrift struct {
	name string
	dcs  []string
	// known is the last state seen per datacenter.
	known map[string]conftool.State
	// pending are pooled changes not made by poolbot (as far as known when
	// they arrived), waiting for the debounce window to close.
	pending    []observed
	dropped    int
	batchStart time.Time
	timer      clockwork.Timer

	watchErr   error
	watchErrAt time.Time

	flushMu sync.Mutex // one flush at a time
}

// DriftWatcher follows the pooled state of every service and acts on
// changes poolbot did not make.
type DriftWatcher struct {
	cfg        DriftConfig
	watcher    conftool.Watcher
	own        *OwnWrites
	attr       *Attributor
	store      *store.Store
	announce   poolbot.Announcer
	notify     func(service string)
	salWritten func()
	metrics    *Metrics
	clock      clockwork.Clock
	log        *slog.Logger
	prefix     string
	dryRun     bool
	changes    *requests.Changes

	mu     sync.Mutex
	runCtx context.Context
	svc    map[string]*serviceDrift

	// onFlush, for tests, learns how each flush ended: "own" (nothing
	// left), "held" (waiting for a request's own write) or "drift".
	onFlush func(service, outcome string)
}

// verdict is what one change means.
type verdict int

const (
	// verdictIgnore: nothing to learn (an error, an undecodable value).
	verdictIgnore verdict = iota
	// verdictTrack: remember the new state; not a pooled change (first
	// sight, TTL or references only, same pooled value).
	verdictTrack
	// verdictOwn: poolbot's own write.
	verdictOwn
	// verdictDrift: pooled changed and poolbot is not known to have done it.
	verdictDrift
)

func (v verdict) String() string {
	return [...]string{"ignore", "track", "own", "drift"}[v]
}

// decide rules on one change given the last known state of its object.
// SourceInitial and first sight of an object are never drift; a resync is
// compared with what was last known, like an event.
func decide(known map[string]conftool.State, c conftool.Change, own *OwnWrites, seen time.Time) verdict {
	if c.Source == conftool.SourceError || c.Datacenter == "" {
		return verdictIgnore
	}
	if c.New == nil && !c.Deleted {
		return verdictIgnore // undecodable: keep what was known
	}
	if c.Source == conftool.SourceInitial {
		return verdictTrack
	}
	old, had := known[c.Datacenter]
	switch {
	case !had:
		return verdictTrack
	case c.Deleted:
		if old.Pooled {
			return verdictDrift
		}
		return verdictTrack
	case c.New.Pooled == old.Pooled:
		return verdictTrack
	case own.Owns(c, seen):
		return verdictOwn
	}
	return verdictDrift
}

// observe applies one change from the watch.
func (w *DriftWatcher) observe(c conftool.Change) verdict {
	now := w.clock.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	sd := w.svc[c.Service]
	if sd == nil {
		return verdictIgnore
	}
	if c.Source == conftool.SourceError {
		sd.watchErr, sd.watchErrAt = c.Err, now
		return verdictIgnore
	}
	v := decide(sd.known, c, w.own, now)
	old := sd.known[c.Datacenter]
	switch v {
	case verdictIgnore:
		return v
	case verdictTrack, verdictOwn, verdictDrift:
		if c.Deleted {
			delete(sd.known, c.Datacenter)
		} else {
			sd.known[c.Datacenter] = *c.New
		}
	}
	if v == verdictOwn {
		w.log.Info("own conftool write seen", "service", c.Service, "datacenter", c.Datacenter, "index", c.ModifiedIndex)
	}
	if v != verdictDrift {
		return v
	}
	o := observed{dc: c.Datacenter, oldPooled: old.Pooled, deleted: c.Deleted,
		resync: c.Source == conftool.SourceResync, raw: c, seen: now}
	if c.New != nil {
		o.newPooled = c.New.Pooled
	}
	sd.pending = append(sd.pending, o)
	if len(sd.pending) > maxPendingChanges {
		sd.pending = slices.Delete(sd.pending, 0, 1)
		sd.dropped++
	}
	w.log.Info("pooled state changed; not poolbot's write so far", "service", c.Service, "datacenter", c.Datacenter,
		"pooled", o.newPooled, "deleted", o.deleted, "source", c.Source.String(), "index", c.ModifiedIndex)
	if sd.timer == nil {
		sd.batchStart = now
		sd.timer = w.clock.AfterFunc(w.cfg.Debounce, func() { w.flush(w.runContext(), sd, false) })
	}
	return v
}

// runContext is Run's context (timers fire outside it).
func (w *DriftWatcher) runContext() context.Context {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.runCtx == nil {
		return context.Background()
	}
	return w.runCtx
}

// maxHold bounds how long a drift waits for poolbot's own write to be
// recorded while a request of the service is switching.
func (w *DriftWatcher) maxHold() time.Duration { return max(5*w.cfg.Debounce, 5*time.Minute) }

// flush rules on the changes collected in a debounce window: poolbot's own
// writes (recorded meanwhile) are dropped, and the rest is one drift. final
// (shutting down) acts without waiting any longer.
func (w *DriftWatcher) flush(ctx context.Context, sd *serviceDrift, final bool) {
	sd.flushMu.Lock()
	defer sd.flushMu.Unlock()
	w.mu.Lock()
	batch, start, dropped := sd.pending, sd.batchStart, sd.dropped
	sd.pending, sd.timer, sd.dropped = nil, nil, 0
	w.mu.Unlock()

	var drifts []observed
	for _, o := range batch {
		if w.own.Owns(o.raw, o.seen) {
			w.log.Info("pooled change turned out to be poolbot's own write", "service", sd.name, "datacenter", o.dc)
			continue
		}
		drifts = append(drifts, o)
	}
	if len(drifts) == 0 {
		w.flushed(sd.name, "own")
		return
	}
	// SetPooled returns (and the procedure records its write) only after
	// its read-back, so the watch can see the write first. While a request
	// of this service is switching to what was seen, wait for the record.
	if !final && ctx.Err() == nil && w.clock.Since(start) < w.maxHold() {
		if id, ok := w.switchingTo(ctx, sd.name, drifts); ok {
			w.log.Info("pooled change may be a request's own write in flight; waiting", "service", sd.name, "request", int64(id))
			w.mu.Lock()
			sd.pending = append(drifts, sd.pending...)
			sd.dropped += dropped
			if sd.timer != nil {
				sd.timer.Stop()
			}
			sd.batchStart = start
			sd.timer = w.clock.AfterFunc(w.cfg.Debounce, func() { w.flush(w.runContext(), sd, false) })
			w.mu.Unlock()
			w.flushed(sd.name, "held")
			return
		}
	}
	w.act(context.WithoutCancel(ctx), sd, drifts, dropped)
	w.flushed(sd.name, "drift")
}

func (w *DriftWatcher) flushed(service, outcome string) {
	if w.onFlush != nil {
		w.onFlush(service, outcome)
	}
}

// knownState is the last state seen of service's object in datacenter.
func (w *DriftWatcher) knownState(service, datacenter string) (conftool.State, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sd := w.svc[service]
	if sd == nil {
		return conftool.State{}, false
	}
	st, ok := sd.known[datacenter]
	return st, ok
}

// switchingTo reports a request of service that is setting the pooled
// state one of the drifts shows.
func (w *DriftWatcher) switchingTo(ctx context.Context, service string, drifts []observed) (poolbot.RequestID, bool) {
	open, err := w.store.Unfinished(ctx, service)
	if err != nil {
		w.log.Warn("reading the queue to rule on a pooled change", "service", service, "err", err)
		return 0, false
	}
	for _, r := range open {
		want, switches := r.Action.Pooled()
		if r.State != poolbot.StateSwitching || !switches {
			continue
		}
		for _, d := range drifts {
			if d.dc == r.Datacenter && !d.deleted && d.newPooled == want {
				return r.ID, true
			}
		}
	}
	return 0, false
}

// dcDrift is the drift of one datacenter: every change in the window.
type dcDrift struct {
	dc        string
	from, to  bool
	deleted   bool
	resync    bool
	changes   int
	firstSeen time.Time
	who       string
}

// describe is "apus/codfw pooled=false changed outside poolbot (by jdoe@cumin1003)".
func (d dcDrift) describe(service string) string {
	var s string
	switch {
	case d.deleted:
		s = fmt.Sprintf("%s/%s discovery object deleted outside poolbot (was pooled=%t)", service, d.dc, d.from)
	case d.changes > 1:
		s = fmt.Sprintf("%s/%s pooled=%t changed outside poolbot (%d changes, was %t)", service, d.dc, d.to, d.changes, d.from)
	default:
		s = fmt.Sprintf("%s/%s pooled=%t changed outside poolbot", service, d.dc, d.to)
	}
	if d.who != "" {
		s += " (by " + d.who + ")"
	} else {
		s += " (by whom unknown)"
	}
	if d.resync {
		s += " [seen on resync]"
	}
	return s
}

// group folds the changes into one drift per datacenter, in the order
// they were first seen.
func group(drifts []observed) []dcDrift {
	var out []dcDrift
	idx := map[string]int{}
	for _, o := range drifts {
		i, ok := idx[o.dc]
		if !ok {
			idx[o.dc] = len(out)
			out = append(out, dcDrift{dc: o.dc, from: o.oldPooled, firstSeen: o.seen})
			i = len(out) - 1
		}
		d := &out[i]
		d.to, d.deleted = o.newPooled, o.deleted
		d.resync = d.resync || o.resync
		d.changes++
	}
	return out
}

// act records a drift, queues its SAL lines and the restart request (or
// joins a pending one, or proposes it), and announces it.
func (w *DriftWatcher) act(ctx context.Context, sd *serviceDrift, drifts []observed, dropped int) {
	now := w.clock.Now()
	dds := group(drifts)
	var sentences []string
	if len(dds) > 0 {
		// Changes dropped from a flapping batch still count.
		dds[0].changes += dropped
	}
	for i := range dds {
		d := &dds[i]
		if !d.deleted {
			d.who = w.attr.Who(sd.name, d.dc, d.to, d.firstSeen.Add(-w.cfg.AttributionWindow), now)
		}
		sentences = append(sentences, d.describe(sd.name))
	}
	reason := truncate("drift: "+strings.Join(sentences, "; "), maxReasonBytes)
	mode := w.cfg.Mode
	if w.dryRun {
		mode = "dry-run"
	}

	var (
		created, joined, running poolbot.Request
	)
	err := w.store.Tx(ctx, func(tx *store.Tx) error {
		created, joined, running = poolbot.Request{}, poolbot.Request{}, poolbot.Request{}
		open, err := tx.OpenRequests(sd.name)
		if err != nil {
			return err
		}
		for _, r := range open {
			if r.Action != poolbot.ActionRestart || r.CancelRequested {
				continue
			}
			// A restart that has not started will run after this change:
			// it covers it. One already running may have restarted hosts
			// before it.
			if r.State.Pending() && !r.Parked && joined.ID == 0 {
				joined = r
			} else if r.State.Running() && running.ID == 0 {
				running = r
			}
		}
		var reqID poolbot.RequestID
		switch {
		case w.dryRun:
		case joined.ID != 0:
			reqID = joined.ID
			if err := requests.Note(tx, poolbotActor, joined, "drift", reason); err != nil {
				return err
			}
		case mode == ModeAuto:
			created, err = requests.Insert(tx, poolbotActor, poolbot.Request{Action: poolbot.ActionRestart, Service: sd.name,
				Reason: reason, Task: poolbot.TaskFromReason(reason), Operator: w.cfg.Operator,
				Origin: originPoolbot})
			if err != nil {
				return err
			}
			reqID = created.ID
		}
		for _, d := range dds {
			if _, err := tx.AddDrift(store.Drift{Service: sd.name, Datacenter: d.dc, PooledFrom: d.from, PooledTo: d.to,
				Deleted: d.deleted, Changes: d.changes, Who: d.who, Mode: mode, RequestID: reqID,
				Detail: d.describe(sd.name)}); err != nil {
				return err
			}
			if w.dryRun {
				continue
			}
			line := "drift: " + d.describe(sd.name)
			switch {
			case joined.ID != 0:
				line += fmt.Sprintf("; covered by queued restart %s", joined.ID)
			case created.ID != 0:
				line += fmt.Sprintf("; restart queued as %s", created.ID)
			default:
				line += "; restart proposed to operators"
			}
			if err := w.changes.SAL(tx, poolbot.Notice{Request: reqID, Kind: poolbot.NoticeDrift, Text: line}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		w.log.Error("recording drift", "service", sd.name, "err", err)
		w.say(ctx, poolbot.Notice{Kind: poolbot.NoticeDrift, Text: fmt.Sprintf("drift: %s — but recording it failed (%v); check and run %srestart %s <reason> if needed",
			strings.Join(sentences, "; "), err, w.prefix, sd.name)})
		return
	}
	for _, d := range dds {
		dc := d.dc
		if !slices.Contains(sd.dcs, dc) {
			dc = "other"
		}
		w.metrics.drifts.WithLabelValues(sd.name, dc).Add(float64(d.changes))
	}
	if !w.dryRun {
		w.salWritten()
	}
	if created.ID != 0 {
		w.notify(sd.name)
	}

	text := "drift: " + strings.Join(sentences, "; ") + " at " + poolbot.FormatSince(dds[0].firstSeen, now)
	// The notice is about the request that restarts the registries, if
	// there is one: it follows that request's SAL lines.
	n := poolbot.Notice{Request: max(created.ID, joined.ID), Kind: poolbot.NoticeDrift}
	switch {
	case w.dryRun:
		text = "DRY-RUN " + text + " — would queue a restart of " + sd.name
		n.DryRun = true
	case joined.ID != 0:
		text += fmt.Sprintf(" — the restart already queued as %s (%s) covers it", joined.ID, joined.State)
	case created.ID != 0:
		text += fmt.Sprintf(" — queued %s %s (as %s) to restart the registries; it waits for the usual gates (%scancel %d <reason> to drop it)",
			created.ID, created.Summary(), created.Operator, w.prefix, int64(created.ID))
	case running.ID != 0:
		text += fmt.Sprintf(" — the registries need restarting again: %s started before this change; when it ends, an operator runs: %s",
			running.ID, w.proposal(sd.name, dds))
	default:
		text += " — the registries need restarting; an operator runs: " + w.proposal(sd.name, dds)
	}
	n.Text = text
	w.say(ctx, n)
}

// proposal is the one command that queues the restarts a drift needs.
func (w *DriftWatcher) proposal(service string, dds []dcDrift) string {
	var parts []string
	for _, d := range dds {
		p := fmt.Sprintf("%s/%s pooled=%t", service, d.dc, d.to)
		if d.deleted {
			p = fmt.Sprintf("%s/%s deleted", service, d.dc)
		}
		if d.who != "" {
			p += " by " + d.who
		}
		parts = append(parts, p)
	}
	return truncate(fmt.Sprintf("%srestart %s registries after drift: %s outside poolbot", w.prefix, service, strings.Join(parts, ", ")), maxReasonBytes)
}

func (w *DriftWatcher) say(ctx context.Context, n poolbot.Notice) {
	w.log.Info("notice", "text", n.String())
	if w.announce != nil {
		w.announce.Announce(ctx, n)
	}
}

// watchError returns the latest watch error of service if recent.
func (w *DriftWatcher) watchError(service string) (error, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sd := w.svc[service]
	if sd == nil || sd.watchErr == nil || w.clock.Since(sd.watchErrAt) > watchErrorShown {
		return nil, time.Time{}
	}
	return sd.watchErr, sd.watchErrAt
}

// pendingSince reports changes of service waiting for the debounce that
// are not (by now) known to be poolbot's own writes, and when the first
// was seen.
func (w *DriftWatcher) pendingSince(service string) (int, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sd := w.svc[service]
	if sd == nil {
		return 0, time.Time{}
	}
	n := 0
	var first time.Time
	for _, o := range sd.pending {
		if w.own.mayOwn(o.raw, o.seen) {
			continue
		}
		if n == 0 {
			first = o.seen
		}
		n++
	}
	return n, first
}

// pendingLine is the !status line for changes waiting for the debounce:
// when they were seen and when the watch rules on them, a time that is
// never in the past (a batch held for a switching request's own write is
// ruled on when that write is known).
func (w *DriftWatcher) pendingLine(service string, now time.Time) (string, bool) {
	n, first := w.pendingSince(service)
	if n == 0 {
		return "", false
	}
	s := fmt.Sprintf("drift: %d pooled change(s) not made by poolbot as far as known, seen %s ago", n, ago(now.Sub(first)))
	if at := first.Add(w.cfg.Debounce); at.After(now) {
		return s + "; ruled on at " + poolbot.FormatClock(at, now), true
	}
	return s + "; held while a request is switching (it may be that request's own write)", true
}

// Run watches every service until ctx ends. Changes still waiting for
// their debounce window when it ends are acted on at once, so a drift
// seen just before a restart of poolbot is not lost.
func (w *DriftWatcher) Run(ctx context.Context) error {
	w.mu.Lock()
	w.runCtx = ctx
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, sd := range w.svc {
		ch, err := w.watcher.Watch(ctx, sd.name)
		if err != nil {
			return fmt.Errorf("watch: drift: %w", err)
		}
		wg.Go(func() {
			for c := range ch {
				w.observe(c)
			}
		})
	}
	wg.Wait()
	// ctx ended: rule on what is pending now.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, sd := range w.svc {
		w.mu.Lock()
		pending := len(sd.pending) > 0
		if sd.timer != nil {
			sd.timer.Stop()
		}
		w.mu.Unlock()
		if pending {
			w.flush(ctx, sd, true)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
