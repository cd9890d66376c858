package procedure

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"poolbot"
	"poolbot/integrations/conftool"
)

// blocker is one reason a request cannot start now.
type blocker struct {
	// gate is "calendar", "scap", "conftool" or "queue".
	gate string
	// key identifies the blocker for "did the blockers change?": the
	// window id, the scap holder, the error text.
	key string
	// text is what the notice says.
	text string
	// clearsAt is when the blocker is known to go away (a window's end);
	// zero when nobody can say (a scap run, an unreadable source).
	clearsAt time.Time
}

// verdict is the outcome of evaluating every gate for one request.
type verdict struct {
	blockers []blocker
	// eta is the estimated start: when every blocker with a known end has
	// ended. Zero when some blocker has no known end.
	eta time.Time
	// nextCheck is when the verdict may change by the clock alone (a
	// window ends or starts); zero when only an event can change it.
	nextCheck time.Time
	// scapOnly is true when scap is among the blockers, so a periodic
	// lock probe should wake the request.
	scapBlocked bool
	estimate    time.Duration
	// now is when the gates were evaluated.
	now time.Time
}

func (v verdict) clear() bool { return len(v.blockers) == 0 }

// signature identifies the set of blockers regardless of wording, so a
// new notice is sent only when it changes.
func (v verdict) signature() string {
	keys := make([]string, len(v.blockers))
	for i, b := range v.blockers {
		keys[i] = b.gate + "=" + b.key
	}
	slices.Sort(keys)
	return strings.Join(keys, "|")
}

// blockerTexts is what each blocker says, in order.
func (v verdict) blockerTexts() []string {
	texts := make([]string, len(v.blockers))
	for i, b := range v.blockers {
		texts[i] = b.text
	}
	return texts
}

// summary is the blockers in one line, with the estimated start.
func (v verdict) summary() string {
	s := strings.Join(v.blockerTexts(), "; ")
	if !v.eta.IsZero() {
		s += "; estimated start " + poolbot.FormatClock(v.eta, v.now)
	} else {
		s += "; start time unknown"
	}
	return s
}

// forceEffective reports whether a !force lets the request skip the
// calendar and scap gates.
func (e *Engine) forceEffective(r poolbot.Request) bool {
	return r.Forced && (r.ConfirmedBy != "" || !e.cfg.ForceNeedsConfirm)
}

// evaluate asks every gate about request r at time now. A gate that
// cannot be read counts as closed, and its blocker says why. It only
// reads; nothing changes.
func (e *Engine) evaluate(ctx context.Context, svc *Service, r poolbot.Request, now time.Time) verdict {
	v := verdict{estimate: e.estimate(ctx, svc), now: now}

	// Safety first, and never skipped by !force: do not depool the last
	// pooled datacenter.
	if r.Action == poolbot.ActionDepool {
		states, err := e.deps.Conftool.List(ctx, r.Service)
		switch {
		case err != nil:
			v.blockers = append(v.blockers, blocker{gate: "conftool", key: "unreadable:" + causeKey(err),
				text: "conftool unreadable (" + err.Error() + ")"})
		default:
			if err := conftool.CheckDepool(r.Service, r.Datacenter, states); err != nil {
				v.blockers = append(v.blockers, blocker{gate: "conftool", key: "last-pooled", text: err.Error()})
			}
		}
	}

	if !e.forceEffective(r) {
		e.calendarGate(now, &v)
		e.scapGate(ctx, &v)
		if r.Forced {
			v.blockers = append(v.blockers, blocker{gate: "force", key: "unconfirmed",
				text: fmt.Sprintf("!force by %s awaits !confirm %d from another operator", r.ForcedBy, int64(r.ID))})
		}
	}
	// After the calendar, whose next check it may bring forward.
	e.lockGate(ctx, r, &v)

	var latest time.Time
	known := true
	for _, b := range v.blockers {
		if b.clearsAt.IsZero() {
			known = false
		} else if b.clearsAt.After(latest) {
			latest = b.clearsAt
		}
	}
	if known {
		v.eta = latest
		if v.eta.Before(now) {
			v.eta = now
		}
	}
	return v
}

// calendarGate: no window may be active, nor start before the estimated
// end plus the tail margin.
func (e *Engine) calendarGate(now time.Time, v *verdict) {
	if e.deps.Calendar == nil {
		return
	}
	sched, _, err := e.deps.Calendar.Schedule()
	if err != nil {
		v.blockers = append(v.blockers, blocker{gate: "calendar", key: "unreadable:" + causeKey(err),
			text: "deployment calendar unreadable (" + err.Error() + ")"})
		return
	}
	blocking := sched.Blocking(now, v.estimate, e.cfg.LeadMargin, e.cfg.TailMargin)
	if len(blocking) == 0 {
		// The verdict changes when the next window comes close enough.
		if next, ok := sched.Next(now); ok {
			v.nextCheck = next.Start.Add(-v.estimate - e.cfg.TailMargin)
		}
		return
	}
	gap, ok := sched.FirstGap(now, v.estimate, e.cfg.LeadMargin, e.cfg.TailMargin)
	for _, w := range blocking {
		b := blocker{gate: "calendar", key: w.ID, text: describeWindow(w, now)}
		if ok {
			b.clearsAt = gap
		}
		v.blockers = append(v.blockers, b)
	}
	if ok {
		v.nextCheck = gap
	}
}

// scapGate: no scap run may be active, and every scap source must be
// readable.
func (e *Engine) scapGate(ctx context.Context, v *verdict) {
	if e.deps.Scap == nil {
		return
	}
	act, _ := e.deps.Scap.Check(ctx)
	for _, f := range act.Failed {
		v.blockers = append(v.blockers, blocker{gate: "scap", key: "unreadable-" + string(f.Source) + ":" + causeKey(f.Err),
			text: "scap " + string(f.Source) + " unreadable (" + f.Err.Error() + ")"})
		v.scapBlocked = true
	}
	for _, r := range act.Reasons {
		v.blockers = append(v.blockers, blocker{gate: "scap", key: string(r.Source) + ":" + r.Who + ":" + r.What,
			text: "scap: " + r.String()})
		v.scapBlocked = true
	}
}

// estimate is how long the operation is expected to take: hosts × time
// per host (the median of the last successful hosts when there is
// history), plus the pauses between hosts.
func (e *Engine) estimate(ctx context.Context, svc *Service) time.Duration {
	perHost := e.perHost(ctx, svc)
	n := len(svc.Plan.Hosts)
	if n == 0 {
		return perHost + e.dnsEstimate(ctx, svc)
	}
	return e.dnsEstimate(ctx, svc) + time.Duration(n)*perHost + time.Duration(n-1)*svc.Plan.Pace
}

// perHost is the time one host is expected to take: the median of the
// last successful hosts when there is history, else PerHostEstimate.
func (e *Engine) perHost(ctx context.Context, svc *Service) time.Duration {
	perHost := e.cfg.PerHostEstimate
	if secs, err := e.deps.Store.RecentHostDurations(ctx, svc.Name, 20); err == nil && len(secs) >= 3 {
		slices.Sort(secs)
		perHost = time.Duration(secs[len(secs)/2] * float64(time.Second))
	}
	return perHost
}

// causeKey identifies why a source cannot be read, for "did the blockers
// change?": the innermost errors' texts without their digits. A cause that
// changes (the calendar unreachable, then answering HTTP 500, then timing
// out) is a new blocker and announced once; the same cause seen again with
// a new age, count, port or status code is not.
func causeKey(err error) string {
	var leaves []string
	var walk func(error)
	walk = func(err error) {
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			if inner := u.Unwrap(); inner != nil {
				walk(inner)
				return
			}
			leaves = append(leaves, err.Error())
		default:
			leaves = append(leaves, err.Error())
		}
	}
	if err != nil {
		walk(err)
	}
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, strings.Join(leaves, "|"))
}
