// Package requests is the one place where a request is created or
// changed from outside its worker: queued by an operator or by the drift
// watch, cancelled, forced, confirmed, resumed. Each change is one store
// transaction holding the request's new state, its audit event and the
// SAL line that reports it, so no caller can store one without the
// others; and the dry-run rule (nothing goes to SAL) is written once.
//
// It lives apart from procedure (the worker that acts on requests) so
// that the command handlers and the watchers can change requests without
// linking the lifecycle's scheduler and outside systems, and the worker
// can call it without an import cycle.
package requests

import (
	"context"
	"fmt"
	"slices"
	"time"

	"poolbot"
	"poolbot/store"
)

// Policy is how changes are made and worded.
type Policy struct {
	// DryRun: nothing goes to SAL.
	DryRun bool
	// ForceNeedsConfirm: a force takes effect only once another
	// operator confirms it within ConfirmWindow.
	ForceNeedsConfirm bool
	ConfirmWindow     time.Duration
	// Prefix is the chat command prefix, for replies that name a command.
	Prefix string
}

// Actor is who makes a change and where they asked for it.
type Actor struct {
	Name   string
	Origin poolbot.Origin
}

// Refusal is a change that was refused: its text is the reply, and
// nothing was stored.
type Refusal string

func (r Refusal) Error() string { return string(r) }

// Changes makes request changes in st under a policy.
type Changes struct {
	st *store.Store
	p  Policy
}

// New returns the request changes on st.
func New(st *store.Store, p Policy) *Changes { return &Changes{st: st, p: p} }

// Queue stores a new request of actor in state queued, unless the same
// action on the same datacenter is already open (a Refusal). position is
// its place in the service's queue, from 1.
func (c *Changes) Queue(ctx context.Context, a Actor, req poolbot.Request) (created poolbot.Request, position int, err error) {
	err = c.st.Tx(ctx, func(tx *store.Tx) error {
		open, err := tx.OpenRequests(req.Service)
		if err != nil {
			return err
		}
		for _, o := range open {
			if o.Action == req.Action && o.Datacenter == req.Datacenter {
				return Refusal(fmt.Sprintf("%s is already open as %s (%s, requested by %s)", req.Summary(), o.ID, o.State, o.Operator))
			}
		}
		position = len(open) + 1
		created, err = Insert(tx, a, req)
		return err
	})
	return created, position, err
}

// Insert stores req as a new queued request with its "created" event, in
// the caller's transaction (the drift watch records the drift with it).
// The audit actor of a request poolbot queued itself is poolbot.
func Insert(tx *store.Tx, a Actor, req poolbot.Request) (poolbot.Request, error) {
	req.State = poolbot.StateQueued
	created, err := tx.InsertRequest(req)
	if err != nil {
		return created, err
	}
	return created, tx.AddEvent(poolbot.Event{RequestID: created.ID, Actor: a.Name, Origin: a.Origin,
		Kind: "created", ToState: poolbot.StateQueued, Detail: created.Summary() + ": " + req.Reason})
}

// SAL queues the SAL line n in tx, except in dry-run mode.
func (c *Changes) SAL(tx *store.Tx, n poolbot.Notice) error {
	if c.p.DryRun {
		return nil
	}
	return tx.QueueSALNotice(n)
}

// change loads request id in one transaction and lets decide look at it.
// decide returns the reply and, when it changed the request, the audit
// event: the request as decide left it is then stored with that event
// (and any SAL line decide queued) in the same transaction.
func (c *Changes) change(ctx context.Context, a Actor, id poolbot.RequestID,
	decide func(tx *store.Tx, cur *poolbot.Request) (reply string, ev *poolbot.Event, err error)) (string, error) {
	var reply string
	err := c.st.Tx(ctx, func(tx *store.Tx) error {
		cur, err := tx.Request(id)
		if err != nil {
			return err
		}
		from := cur.State
		var ev *poolbot.Event
		if reply, ev, err = decide(tx, &cur); err != nil || ev == nil {
			return err
		}
		if _, err := tx.UpdateRequest(cur, from); err != nil {
			return err
		}
		ev.RequestID, ev.Actor, ev.Origin, ev.FromState, ev.ToState = cur.ID, a.Name, a.Origin, from, cur.State
		return tx.AddEvent(*ev)
	})
	return reply, err
}

// Cancel ends a pending request now, or asks the worker to stop a running
// or parked one at its next safe point.
func (c *Changes) Cancel(ctx context.Context, a Actor, id poolbot.RequestID, reason string) (string, error) {
	return c.change(ctx, a, id, func(_ *store.Tx, cur *poolbot.Request) (string, *poolbot.Event, error) {
		switch {
		case cur.State.Terminal():
			return fmt.Sprintf("%s is already %s; nothing to cancel", cur.ID, cur.State), nil, nil
		case cur.CancelRequested:
			return fmt.Sprintf("%s: cancel already requested by %s; it stops %s", cur.ID, cur.CancelledBy, CancelPoint(cur.State)), nil, nil
		}
		detail := "cancelled"
		if reason != "" {
			detail += ": " + reason
		}
		cur.CancelledBy = a.Name
		ev := &poolbot.Event{Kind: "cancel", Detail: detail}
		if cur.State.Pending() {
			cur.State = poolbot.StateCancelled
			cur.Error = detail + " by " + a.Name
			return fmt.Sprintf("%s cancelled: %s", cur.ID, cur.Summary()), ev, nil
		}
		cur.CancelRequested = true
		if cur.Parked {
			return fmt.Sprintf("%s: cancel requested; %s is parked at %s and ends now (deploys are not blocked by it)",
				cur.ID, cur.Summary(), cur.State), ev, nil
		}
		return fmt.Sprintf("%s: cancel requested; %s stops %s", cur.ID, cur.Summary(), CancelPoint(cur.State)), ev, nil
	})
}

// CancelPoint says where the procedure honours a cancel of a running
// request in state s: before the conftool change while the deploy block is
// being taken, during the DNS wait (dns), otherwise before the next host.
func CancelPoint(s poolbot.State) string {
	if s == poolbot.StateBlockingDeploys || s == poolbot.StateSwitching {
		return "before conftool is changed"
	}
	if s == poolbot.StateDNS {
		return "during the DNS wait, before any host is restarted"
	}
	return "before the next host"
}

// Force marks a pending request to skip the calendar and scap gates (at
// once, or once confirmed when the policy asks for a second operator),
// with its SAL line.
func (c *Changes) Force(ctx context.Context, a Actor, id poolbot.RequestID, reason string) (string, error) {
	return c.change(ctx, a, id, func(tx *store.Tx, cur *poolbot.Request) (string, *poolbot.Event, error) {
		if !cur.State.Pending() {
			return fmt.Sprintf("%s is %s; only a queued or waiting request can be forced", cur.ID, cur.State), nil, nil
		}
		cur.Forced, cur.ForcedBy, cur.ForceReason, cur.ConfirmedBy = true, a.Name, reason, ""
		ev := &poolbot.Event{Kind: "force", Detail: reason}
		if c.p.ForceNeedsConfirm {
			line := "FORCE requested (skip calendar and scap gates) - " + cur.Summary() + ": " + reason
			return fmt.Sprintf("%s FORCE requested by %s for %s: needs %sconfirm %d from another operator within %s",
					cur.ID, a.Name, cur.Summary(), c.p.Prefix, int64(cur.ID), poolbot.FormatDuration(c.p.ConfirmWindow)), ev,
				c.SAL(tx, poolbot.Notice{Request: cur.ID, Operator: a.Name, Text: line})
		}
		line := "FORCE (calendar and scap gates skipped) - " + cur.Summary() + ": " + reason
		return fmt.Sprintf("%s FORCED by %s: %s will skip the calendar and scap gates (the last-datacenter guard still applies)",
			cur.ID, a.Name, cur.Summary()), ev, c.SAL(tx, poolbot.Notice{Request: cur.ID, Operator: a.Name, Text: line})
	})
}

// Confirm confirms another operator's force request made within the
// confirm window.
func (c *Changes) Confirm(ctx context.Context, a Actor, id poolbot.RequestID) (string, error) {
	if !c.p.ForceNeedsConfirm {
		return fmt.Sprintf("%s: confirmation is not required in this poolbot; !force takes effect at once", id), nil
	}
	// The force request's age comes from the audit trail.
	events, err := c.st.Events(ctx, id)
	if err != nil {
		return "", err
	}
	var forcedAt time.Time
	for _, e := range events {
		if e.Kind == "force" {
			forcedAt = e.At
		}
	}
	return c.change(ctx, a, id, func(tx *store.Tx, cur *poolbot.Request) (string, *poolbot.Event, error) {
		switch {
		case !cur.Forced:
			return fmt.Sprintf("%s has no force request to confirm", cur.ID), nil, nil
		case cur.ConfirmedBy != "":
			return fmt.Sprintf("%s was already confirmed by %s", cur.ID, cur.ConfirmedBy), nil, nil
		case !cur.State.Pending():
			return fmt.Sprintf("%s is %s; nothing to confirm", cur.ID, cur.State), nil, nil
		case cur.ForcedBy == a.Name:
			return fmt.Sprintf("refused: %s was forced by %s; the confirmation must come from a different operator", cur.ID, cur.ForcedBy), nil, nil
		case !forcedAt.IsZero() && tx.Now().Sub(forcedAt) > c.p.ConfirmWindow:
			return fmt.Sprintf("%s: the force request of %s expired (older than %s); %sforce again",
				cur.ID, forcedAt.UTC().Format("15:04 UTC"), poolbot.FormatDuration(c.p.ConfirmWindow), c.p.Prefix), nil, nil
		}
		cur.ConfirmedBy = a.Name
		line := "FORCE confirmed by " + a.Name + " - " + cur.Summary()
		return fmt.Sprintf("%s FORCE confirmed by %s: %s will skip the calendar and scap gates (the last-datacenter guard still applies)",
				cur.ID, a.Name, cur.Summary()), &poolbot.Event{Kind: "confirm", Detail: "force by " + cur.ForcedBy},
			c.SAL(tx, poolbot.Notice{Request: cur.ID, Operator: cur.ForcedBy, Text: line})
	})
}

// Resume continues a request parked after a crash, or a request that
// failed on a host, from its stored step. service is the request's
// service, whose worker the caller wakes.
func (c *Changes) Resume(ctx context.Context, a Actor, id poolbot.RequestID) (reply, service string, err error) {
	err = c.st.Tx(ctx, func(tx *store.Tx) error {
		r, err := tx.Request(id)
		if err != nil {
			return err
		}
		service = r.Service
		from := r.State
		switch {
		case r.CancelRequested && !r.State.Terminal():
			reply = fmt.Sprintf("%s: cancel requested by %s; it is ending, not resuming", r.ID, r.CancelledBy)
			return nil
		case r.Parked:
			r.Parked, r.Step = false, ""
			reply = fmt.Sprintf("%s resuming %s at %s", r.ID, r.Summary(), r.State)
		case r.State == poolbot.StateFailed:
			steps, err := tx.HostSteps(r.ID)
			if err != nil {
				return err
			}
			failed := slices.IndexFunc(steps, func(s poolbot.HostStep) bool { return s.State == poolbot.HostFailed })
			if failed < 0 {
				reply = fmt.Sprintf("%s failed before its restarts (%s); queue a new request instead", r.ID, r.Error)
				return nil
			}
			if err := tx.UpdateHostStep(r.ID, steps[failed].Position, poolbot.HostPending, "resumed by "+a.Name); err != nil {
				return err
			}
			r.State, r.Error, r.FinishedAt = poolbot.StateRestarting, "", time.Time{}
			reply = fmt.Sprintf("%s resuming %s at host %d/%d %s", r.ID, r.Summary(), steps[failed].Position, len(steps), steps[failed].Host)
			// Attributed to the request's operator, like every SAL line
			// of the request.
			if err := c.SAL(tx, poolbot.Notice{Request: r.ID, Operator: r.Operator, Kind: poolbot.NoticeInfo,
				Text: fmt.Sprintf("RESUME by %s - %s from host %d/%d %s",
					a.Name, r.Summary(), steps[failed].Position, len(steps), steps[failed].Host)}); err != nil {
				return err
			}
		default:
			reply = fmt.Sprintf("%s is %s; only a parked request or one that failed on a host can be resumed", r.ID, r.State)
			return nil
		}
		if _, err := tx.UpdateRequest(r, from); err != nil {
			return err
		}
		return tx.AddEvent(poolbot.Event{RequestID: r.ID, Actor: a.Name, Origin: a.Origin, Kind: "resume",
			FromState: from, ToState: r.State, Detail: reply})
	})
	return reply, service, err
}

// Note records an event about r that leaves it as it is (a drift that a
// queued restart covers), in the caller's transaction.
func Note(tx *store.Tx, a Actor, r poolbot.Request, kind, detail string) error {
	return tx.AddEvent(poolbot.Event{RequestID: r.ID, Actor: a.Name, Origin: a.Origin,
		Kind: kind, FromState: r.State, ToState: r.State, Detail: detail})
}
